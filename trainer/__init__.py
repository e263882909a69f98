"""Trainer: streams rating matrices out of the DuckDB warehouse, trains a model, writes predictions back.

`app` is what `typer trainer run ...` runs: the `trainer run` command itself (trainer/cli.py).
"""

from trainer.cli import run_app as app

__all__ = ["app"]
