"""Sharing the warehouse: readers beside a run, a writer's lock, and results that survive a locked warehouse."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pytest
from typer.testing import CliRunner

from trainer.cli import app
from trainer.config import resolve
from trainer.errors import TrainerError
from trainer.train import run


@contextmanager
def held(warehouse, read_only: bool) -> Iterator[subprocess.Popen]:
    """Another process holding the warehouse open (an analyst's session) for the duration."""
    code = (f"import duckdb, sys, time; con = duckdb.connect({str(warehouse)!r}, read_only={read_only}); "
            "print('open', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def settings(warehouse, tmp_path, **overrides):
    return resolve({"warehouse": str(warehouse), "runs_dir": str(tmp_path / "runs"), "epochs": 3, **overrides})


def test_a_reader_during_training_then_publish_later(warehouse, tmp_path) -> None:
    with held(warehouse, read_only=True) as reader, pytest.raises(TrainerError) as raised:
        run(settings(warehouse, tmp_path, lock_wait_seconds=1.0))
    message = str(raised.value)
    assert f"PID {reader.pid}" in message and "trainer publish" in message and "Nothing is lost" in message
    (run_dir,) = (tmp_path / "runs").iterdir()
    for staged in ("checkpoint.pt", "run.json", "predictions.parquet", "epoch_metrics.parquet"):
        assert (run_dir / staged).exists()
    assert not (run_dir / "published").exists()

    result = CliRunner().invoke(app, ["publish", str(run_dir), "--warehouse", str(warehouse)])
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("SELECT run_id FROM runs").fetchall() == [(run_dir.name,)]
    assert con.execute("SELECT count(*) FROM predictions").fetchall()[0][0] > 0


def test_publishing_twice_does_not_duplicate(warehouse, tmp_path) -> None:
    summary = run(settings(warehouse, tmp_path))
    result = CliRunner().invoke(app, ["publish", str(summary.run_dir), "--warehouse", str(warehouse)])
    assert result.exit_code == 0
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("SELECT count(*) FROM runs").fetchall()[0][0] == 1
    assert con.execute("SELECT count(*) FROM epoch_metrics").fetchall()[0][0] == 3


def test_a_writer_holding_the_warehouse_stops_the_run_with_its_pid(warehouse, tmp_path) -> None:
    started = time.monotonic()
    with held(warehouse, read_only=False) as writer, pytest.raises(TrainerError) as raised:
        run(settings(warehouse, tmp_path, lock_wait_seconds=1.0))
    assert f"PID {writer.pid}" in str(raised.value) and "locked" in str(raised.value)
    assert time.monotonic() - started < 30  # bounded wait


def test_publish_without_staged_results(tmp_path, warehouse) -> None:
    result = CliRunner().invoke(app, ["publish", str(tmp_path), "--warehouse", str(warehouse)])
    assert result.exit_code == 1 and "no staged results" in result.output
