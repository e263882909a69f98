"""The --version option both command lines share."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version

import typer


def print_version(program: str) -> Callable[[bool], None]:
    """A Typer callback printing "<program> <version>" and exiting, for an eager --version flag."""

    def callback(value: bool) -> None:
        if value:
            typer.echo(f"{program} {version('movielens-ae')}")
            raise typer.Exit()

    return callback
