"""The --version option both command lines share."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

import typer

DISTRIBUTION = "movielens-ae"


def package_version() -> str:
    """The installed distribution's version; a checkout used from PYTHONPATH has no metadata to read."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed: run from a checkout)"


def print_version(program: str) -> Callable[[bool], None]:
    """A Typer callback printing "<program> <version>" and exiting, for an eager --version flag."""

    def callback(value: bool) -> None:
        if value:
            typer.echo(f"{program} {package_version()}")
            raise typer.Exit()

    return callback
