"""A full disk or a read-only one under the warehouse or the run folder: `trainer run` stops with a plain error
(exit 1, no traceback), the warehouse holds no part of the run, and what was computed is kept: `trainer
publish` or `trainer run --resume` finishes the job once there is room. Needs root to mount small tmpfs
disks (skips elsewhere; the ETL's RLIMIT_FSIZE test in tests/etl/test_disk.py runs everywhere)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from trainer.cli import NOT_SERVED, app


def train(warehouse: Path, runs_dir: Path, *extra: str):
    where = ["--warehouse", str(warehouse), "--runs-dir", str(runs_dir)]
    return CliRunner().invoke(app, ["run", *where, *["--epochs", "2", "--device", "cpu", "--lock-wait", "0"], *extra])


def runs(warehouse: Path) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        return con.execute("SELECT run_id, test_rmse FROM runs").fetchall() if "runs" in tables else []


def remount(point: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(point)], check=True)


def failed_plainly(result, *phrases: str) -> None:
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in result.output, result.output


def test_warehouse_disk_full_then_publish(warehouse, tmp_path, small_disk) -> None:
    # Room for the warehouse and a little, not for every (user, movie) prediction.
    disk = small_disk(
        warehouse.stat().st_size + 16 * 1024, fill=lambda point: shutil.copyfile(warehouse, point / "w.duckdb")
    )
    full = disk / "w.duckdb"
    result = train(full, tmp_path / "runs", "--full-matrix")
    failed_plainly(
        result, "could not write the results", "No space left on device", "Nothing is lost", "trainer publish"
    )
    assert runs(full) == []  # opens, and holds none of the run
    (run_dir,) = (tmp_path / "runs").iterdir()
    remount(disk, f"size={4 * warehouse.stat().st_size}")
    published = CliRunner().invoke(app, ["publish", str(run_dir), "--warehouse", str(full)])
    assert published.exit_code in (0, NOT_SERVED), published.output
    staged = json.loads((run_dir / "run.json").read_text())
    assert runs(full) == [(staged["run_id"], staged["test_rmse"])]


def test_read_only_warehouse_then_publish(warehouse, tmp_path, small_disk) -> None:
    disk = small_disk(
        4 * warehouse.stat().st_size, fill=lambda point: shutil.copyfile(warehouse, point / "w.duckdb"), read_only=True
    )
    locked = disk / "w.duckdb"
    result = train(locked, tmp_path / "runs")  # reading works: training does not need to write
    failed_plainly(result, "could not write the results", "Read-only file system", "Nothing is lost")
    (run_dir,) = (tmp_path / "runs").iterdir()
    remount(disk, "rw")
    assert CliRunner().invoke(app, ["publish", str(run_dir), "--warehouse", str(locked)]).exit_code in (0, NOT_SERVED)
    assert [run_id for run_id, _ in runs(locked)] == [run_dir.name]


def test_read_only_runs_folder(warehouse, tmp_path, small_disk) -> None:
    disk = small_disk(1 << 20, read_only=True)
    failed_plainly(train(warehouse, disk / "runs"), "cannot create the run's folder", "Read-only file system")
    assert runs(warehouse) == []


def test_runs_disk_full_at_the_checkpoint(warehouse, small_disk) -> None:
    disk = small_disk(8 * 1024)  # less than one checkpoint
    failed_plainly(train(warehouse, disk / "runs"), "cannot write the checkpoint")
    (run_dir,) = (disk / "runs").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == []  # no partial checkpoint left to trip a resume
    assert runs(warehouse) == []


def test_runs_disk_full_while_staging_then_resume(warehouse, tmp_path, small_disk) -> None:
    # Room for the checkpoint (its size measured on a first run), not for every (user, movie) prediction.
    sizing = tmp_path / "sizing.duckdb"
    shutil.copyfile(warehouse, sizing)
    assert train(sizing, tmp_path / "sizing").exit_code in (0, NOT_SERVED)
    (checkpoint,) = (tmp_path / "sizing").glob("*/checkpoint.pt")
    disk = small_disk(checkpoint.stat().st_size + 8 * 1024)
    failed_plainly(train(warehouse, disk / "runs", "--full-matrix"), "cannot stage the results", "trainer run --resume")
    (run_dir,) = (disk / "runs").iterdir()
    assert not (run_dir / "run.json").exists()  # staged results without it are incomplete, and never published
    assert runs(warehouse) == []
    remount(disk, f"size={1 << 24}")
    resumed = CliRunner().invoke(app, ["run", "--resume", str(run_dir), "--device", "cpu"])
    assert resumed.exit_code in (0, NOT_SERVED), resumed.output
    assert [run_id for run_id, _ in runs(warehouse)] == [run_dir.name]
