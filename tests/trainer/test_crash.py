"""Crashes: `trainer run` killed with SIGKILL mid-epoch or while it writes its results leaves a warehouse that
opens and holds the state before the run's results or after them, never part of them; and `trainer run
--resume` then finishes the run with exactly the results of an uninterrupted one (on the CPU)."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
import torch
from typer.testing import CliRunner

from trainer import checkpoint
from trainer.cli import NOT_SERVED, app
from trainer.config import resolve
from trainer.train import run

# Small and quick, with a checkpoint after every epoch, so that a kill in epoch 5 resumes from epoch 4.
# One thread everywhere: the killed run, its resume and the uninterrupted run add up in the same order.
SETTINGS = {
    "epochs": 6,
    "checkpoint_seconds": 0,
    "eval_every": 2,
    "batch_size": 16,
    "seed": 3,
    "device": "cpu",
    "threads": 1,
}

# The run's results as analysts see them, without what differs from one run to another (ids, times).
RESULTS = {
    "runs": "SELECT epochs, validation_rmse, test_rmse, test_mae, test_user_rmse, n_test, n_cold_start FROM runs "
    "WHERE run_id = $run",
    "epoch_metrics": "SELECT epoch, train_rmse, validation_rmse FROM epoch_metrics WHERE run_id = $run ORDER BY epoch",
    "predictions": "SELECT kind, user_id, movie_id, rank, predicted_rating, actual_rating, cold_start "
    "FROM predictions WHERE run_id = $run ORDER BY ALL",
}

# Where the child is stopped and killed while it writes its results, and what the warehouse must then hold.
PUBLISH_POINTS = {
    # Staging: the parquet files written into the run folder, run.json (which vouches for them) not yet.
    "staging": (
        "import pathlib\n"
        "write_text = pathlib.Path.write_text\n"
        "def stopping_write_text(self, *args, **kwargs):\n"
        "    if self.name == 'run.json': stop()\n"
        "    return write_text(self, *args, **kwargs)\n"
        "pathlib.Path.write_text = stopping_write_text\n",
        "before",
    ),
    # Results staged in the run folder, the warehouse not yet opened for writing.
    "staged": ('stop_around("warehouse.results", "publish", "before")\n', "before"),
    # Mid-write, in the copy of the warehouse: runs and epoch_metrics inserted, predictions not yet.
    "mid-transaction": ('stop_at_insert("predictions")\n', "before"),
    # Committed, the run folder not yet marked as published.
    "committed": ('stop_around("warehouse.results", "publish", "after")\n', "after"),
}


def results(warehouse: Path, run_id: str) -> dict[str, list[tuple]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        return {
            table: con.execute(sql, {"run": run_id}).fetchall() if table in tables else []
            for table, sql in RESULTS.items()
        }


def etl_tables(warehouse: Path) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("SELECT table_name, estimated_size FROM duckdb_tables() ORDER BY 1").fetchall()


@pytest.fixture(scope="module")
def uninterrupted(small_warehouse, tmp_path_factory) -> dict[str, list[tuple]]:
    """The results of the run, trained without a break."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    warehouse = folder / "warehouse.duckdb"
    shutil.copyfile(small_warehouse, warehouse)
    threads = torch.get_num_threads()
    torch.set_num_threads(SETTINGS["threads"])  # what the command line does for the runs it starts
    try:
        summary = run(resolve({**SETTINGS, "warehouse": str(warehouse), "runs_dir": str(folder / "runs")}))
    finally:
        torch.set_num_threads(threads)
    return results(warehouse, summary.run_id)


def config_file(warehouse: Path, tmp_path: Path) -> Path:
    path = tmp_path / "run.toml"
    lines = [f"{key} = {value!r}".replace("'", '"') for key, value in SETTINGS.items()]
    path.write_text("\n".join([*lines, f'warehouse = "{warehouse}"', f'runs_dir = "{tmp_path / "runs"}"']) + "\n")
    return path


def resume(run_dir: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--resume", str(run_dir), "--device", "cpu", "--threads", "1"])
    assert result.exit_code in (0, NOT_SERVED), result.output  # tiny data: finished, whether its audit passes or not


@pytest.mark.slow
def test_killed_mid_epoch_then_resumed(warehouse, tmp_path, kill_at, uninterrupted):
    before = etl_tables(warehouse)
    patch = (
        "import trainer.data as data\n"
        "original = data.CachedRows.batches  # the small warehouse fits the cache\n"
        "def batches(self, epoch):\n"
        "    for i, batch in enumerate(original(self, epoch)):\n"
        "        if epoch == 5 and i == 1: stop()  # one optimiser step into epoch 5\n"
        "        yield batch\n"
        "data.CachedRows.batches = batches\n"
    )
    kill_at(patch, ["trainer", "run", "--config", str(config_file(warehouse, tmp_path))])

    (run_dir,) = (tmp_path / "runs").iterdir()
    assert checkpoint.load(run_dir, torch.device("cpu"))["epoch"] == 4
    assert not (run_dir / "run.json").exists()
    assert etl_tables(warehouse) == before  # training only reads the warehouse
    resume(run_dir)
    assert results(warehouse, run_dir.name) == uninterrupted


@pytest.mark.slow
@pytest.mark.parametrize("point", PUBLISH_POINTS)
def test_killed_while_writing_results_then_resumed(warehouse, tmp_path, kill_at, uninterrupted, point):
    patch, expected = PUBLISH_POINTS[point]
    kill_at(patch, ["trainer", "run", "--config", str(config_file(warehouse, tmp_path))])

    (run_dir,) = (tmp_path / "runs").iterdir()
    # The results are staged in full before the warehouse is touched.
    assert (run_dir / "predictions.parquet").exists() and (run_dir / "run.json").exists() == (point != "staging")
    # The warehouse opens and holds the whole run or none of it.
    assert results(warehouse, run_dir.name) == (uninterrupted if expected == "after" else dict.fromkeys(RESULTS, []))
    resume(run_dir)
    assert results(warehouse, run_dir.name) == uninterrupted
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchall() == [(1,)]
