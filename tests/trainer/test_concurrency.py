"""Analysts beside the trainer: several processes reading the warehouse during training and publishing are
served, and never see part of a run; several holding it open never make the writer wait (it writes a new
version of the file beside it). (One reader, and a writer holding the file: tests/trainer/test_locks.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from trainer.cli import NOT_SERVED, app
from trainer.config import resolve
from trainer.train import run
from warehouse import results

# An analyst's loop: open read-only (retrying while a writer holds the file, as any client must), check
# that every run visible is whole, close, pause. Prints "ready" after its first read; at the end, a report.
ANALYST = """
import duckdb, json, os, sys, time
warehouse, stop_file = sys.argv[1:3]
reads, refused, partial = [], 0, []
while not os.path.exists(stop_file):
    try:
        con = duckdb.connect(warehouse, read_only=True)
    except duckdb.IOException:
        refused += 1
        time.sleep(0.01)
        continue
    tables = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    runs = []
    if tables & {"runs", "epoch_metrics", "predictions"}:
        # All three or none: they are created in the publishing transaction. Then per run: its epochs
        # against its learning curve, its test ratings against its test predictions; and no orphans.
        runs = con.execute('''
            SELECT r.run_id, r.epochs, (SELECT count(*) FROM epoch_metrics e WHERE e.run_id = r.run_id),
                   r.n_test, (SELECT count(*) FROM predictions p WHERE p.run_id = r.run_id AND p.kind = 'test'),
                   (SELECT count(*) FROM predictions p WHERE p.run_id NOT IN (SELECT run_id FROM runs))
            FROM runs r''').fetchall()
        if tables < {"runs", "epoch_metrics", "predictions"} or any(
                r[1] != r[2] or r[3] != r[4] or r[5] for r in runs):
            partial.append([sorted(tables), runs])
    con.close()
    reads.append([time.time(), len(runs)])
    if len(reads) == 1:
        print("ready", flush=True)
    time.sleep(0.2)  # an eager analyst: five queries a second
print(json.dumps({"reads": reads, "refused": refused, "partial": partial}), flush=True)
"""


def settings(warehouse: Path, tmp_path: Path, **overrides):
    return resolve({"warehouse": str(warehouse), "runs_dir": str(tmp_path / "runs"), "device": "cpu", **overrides})


@pytest.mark.slow
def test_analysts_reading_during_training_and_publishing_never_see_part_of_a_run(warehouse, tmp_path) -> None:
    stop_file = tmp_path / "stop"
    analysts = [
        subprocess.Popen(
            [sys.executable, "-c", ANALYST, str(warehouse), str(stop_file)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    try:
        for analyst in analysts:
            assert analyst.stdout.readline().strip() == "ready"
        started = time.time()
        # Each epoch pauses, so that training lasts a second however fast the machine: every analyst reads in it.
        first = run(
            settings(warehouse, tmp_path, epochs=20, lock_wait_seconds=60.0), on_epoch=lambda m: time.sleep(0.05)
        )
        trained = time.time()
        # More moments for a reader to catch a write half done: republishing replaces the run's rows.
        for _ in range(2):
            results.publish(first.run_dir, warehouse, 60.0)
        run(settings(warehouse, tmp_path, epochs=5, seed=1, lock_wait_seconds=60.0))
        time.sleep(0.5)  # let every analyst read the final state
    finally:
        stop_file.touch()
        reports = [json.loads(analyst.communicate(timeout=60)[0].splitlines()[-1]) for analyst in analysts]
    for report in reports:
        assert report["partial"] == []
        assert any(started <= at <= trained for at, _ in report["reads"]), "not served during training"
        assert report["reads"][-1][1] == 2  # in the end each saw both runs, whole
    # The check has teeth only if the analysts read between the writes, not just before and after them.
    assert {n_runs for report in reports for _, n_runs in report["reads"]} == {0, 1, 2}


@pytest.mark.slow
def test_several_analysts_holding_the_warehouse_never_make_the_writer_wait(warehouse, tmp_path) -> None:
    """Three read-only sessions held open across a run: it publishes at once (no lock wait allowed), and the
    results are those it staged."""
    hold = (
        "import duckdb, sys, time; con = duckdb.connect(sys.argv[1], read_only=True); print('open', flush=True); "
        "time.sleep(120)"
    )
    holders = [
        subprocess.Popen([sys.executable, "-c", hold, str(warehouse)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        for holder in holders:
            assert holder.stdout.readline().strip() == "open"
        started = time.monotonic()
        result = CliRunner().invoke(
            app,
            [
                "run",
                "--warehouse",
                str(warehouse),
                "--epochs",
                "3",
                "--device",
                "cpu",
                "--runs-dir",
                str(tmp_path / "runs"),
                "--lock-wait",
                "0",
            ],
        )
        elapsed = time.monotonic() - started
        assert all(holder.poll() is None for holder in holders)  # still open, reading their snapshot
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    assert result.exit_code in (0, NOT_SERVED), result.output  # finished: tiny data need not be served
    assert elapsed < 60
    (run_dir,) = (tmp_path / "runs").iterdir()
    staged = json.loads((run_dir / "run.json").read_text())
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT run_id, test_rmse FROM runs").fetchall() == [(staged["run_id"], staged["test_rmse"])]
