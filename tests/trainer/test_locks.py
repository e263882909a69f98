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

from trainer.cli import NOT_SERVED, app
from trainer.config import resolve
from trainer.train import run
from warehouse.errors import WarehouseError


@contextmanager
def held(warehouse, read_only: bool) -> Iterator[subprocess.Popen]:
    """Another process holding the warehouse open (an analyst's session) for the duration."""
    code = (
        f"import duckdb, sys, time; con = duckdb.connect({str(warehouse)!r}, read_only={read_only}); "
        "print('open', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def settings(warehouse, tmp_path, **overrides):
    return resolve({"warehouse": str(warehouse), "runs_dir": str(tmp_path / "runs"), "epochs": 3, **overrides})


@pytest.mark.slow  # the reader is another process
def test_a_reader_held_open_neither_blocks_the_run_nor_loses_its_snapshot(warehouse, tmp_path) -> None:
    """An analyst's read-only session open across a run: the run publishes without waiting for it, the
    session keeps reading the snapshot it opened, and a session opened afterwards sees the run."""
    code = (
        f"import duckdb, sys; con = duckdb.connect({str(warehouse)!r}, read_only=True)\n"
        "runs = \"SELECT count(*) FROM duckdb_tables() WHERE table_name = 'runs'\"\n"
        "print(con.execute(runs).fetchall()[0][0], flush=True)\n"
        "sys.stdin.readline()\n"
        "print(con.execute(runs).fetchall()[0][0], con.execute('SELECT count(*) FROM ratings').fetchall()[0][0],"
        " flush=True)\n"
    )
    reader = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "0"
        started = time.monotonic()
        summary = run(settings(warehouse, tmp_path, lock_wait_seconds=0.0))
        assert summary.published and time.monotonic() - started < 60
        reader.stdin.write("\n")
        reader.stdin.flush()
        tables, ratings = reader.stdout.readline().split()
        assert tables == "0" and int(ratings) > 0  # its snapshot: no runs table, every rating still readable
    finally:
        reader.kill()
        reader.wait()
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("SELECT run_id FROM runs").fetchall() == [(summary.run_id,)]


def test_publishing_twice_does_not_duplicate(warehouse, tmp_path) -> None:
    summary = run(settings(warehouse, tmp_path))
    result = CliRunner().invoke(app, ["publish", str(summary.run_dir), "--warehouse", str(warehouse)])
    assert result.exit_code in (0, NOT_SERVED)
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("SELECT count(*) FROM runs").fetchall()[0][0] == 1
    assert con.execute("SELECT count(*) FROM epoch_metrics").fetchall()[0][0] == 3


@pytest.mark.slow  # the writer is another process
def test_a_writer_holding_the_warehouse_stops_the_run_with_its_pid(warehouse, tmp_path) -> None:
    started = time.monotonic()
    with held(warehouse, read_only=False) as writer, pytest.raises(WarehouseError) as raised:
        run(settings(warehouse, tmp_path, lock_wait_seconds=1.0))
    assert f"PID {writer.pid}" in str(raised.value) and "locked" in str(raised.value)
    assert time.monotonic() - started < 30  # bounded wait


def test_publish_without_staged_results(tmp_path, warehouse) -> None:
    result = CliRunner().invoke(app, ["publish", str(tmp_path), "--warehouse", str(warehouse)])
    assert result.exit_code == 1 and "no staged results" in result.output
