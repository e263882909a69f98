"""`trainer run --resume` of a run that finished (issue #27): published, it says so and does nothing; staged with
--no-publish, it names `trainer publish`; stopped while it published, it publishes the staged results as they are,
without training or predicting again. A --warehouse given with --resume is where the run publishes (refused when it
holds other data), never silently ignored; a folder holding another run's checkpoint is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from etl.build import EtlOptions, build_warehouse
from trainer import checkpoint
from trainer.cli import NOT_SERVED, app
from warehouse import results

SETTINGS = [
    "--model",
    "mf",
    "--hidden",
    "4",
    "--epochs",
    "3",
    "--batch-size",
    "16",
    "--device",
    "cpu",
    "--top-n",
    "3",
    "--publish-anyway",
]


def trainer(*args: str):
    return CliRunner().invoke(app, list(args))


def runs(warehouse: Path) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "runs" not in tables:
            return []
        return con.execute("SELECT run_id, finished_at, wall_seconds FROM runs ORDER BY run_id").fetchall()


def trained(warehouse: Path, tmp_path: Path, *options: str) -> Path:
    """A finished run of SETTINGS (and ``options``) on ``warehouse``: its folder."""
    result = trainer("run", "--warehouse", str(warehouse), "--runs-dir", str(tmp_path / "runs"), *SETTINGS, *options)
    assert result.exit_code in (0, NOT_SERVED), result.output
    (run_dir,) = [folder for folder in (tmp_path / "runs").iterdir() if folder.name in result.stdout]
    return run_dir


def resume(run_dir: Path, *options: str):
    return trainer("run", "--resume", str(run_dir), "--device", "cpu", *options)


@pytest.fixture
def elsewhere(small_warehouse, tmp_path) -> Path:
    """Another copy of the same data, at another path."""
    path = tmp_path / "elsewhere" / "warehouse.duckdb"
    path.parent.mkdir()
    shutil.copyfile(small_warehouse, path)
    return path


def test_a_published_run_says_so_and_does_nothing(warehouse, tmp_path, elsewhere) -> None:
    run_dir = trained(warehouse, tmp_path)
    before, staged = runs(warehouse), (run_dir / results.RUN_FILE).read_text()
    result = resume(run_dir)
    assert result.exit_code == 0, result.output
    assert "published already" in result.output and "nothing to resume" in result.output
    assert "epoch" not in result.output.replace("epochs", "")  # no training, no report of one
    assert runs(warehouse) == before  # not re-published: finished_at as it was
    assert (run_dir / results.RUN_FILE).read_text() == staged
    # Into another warehouse: nothing either, and the command that does it
    result = resume(run_dir, "--warehouse", str(elsewhere))
    assert result.exit_code == 0 and f"trainer publish {run_dir} --warehouse" in result.output, result.output
    assert runs(elsewhere) == [] and runs(warehouse) == before


def test_a_run_staged_with_no_publish_names_trainer_publish(warehouse, tmp_path) -> None:
    run_dir = trained(warehouse, tmp_path, "--no-publish")
    result = resume(run_dir)
    assert result.exit_code == 1, result.output
    said = [line for line in result.output.strip().splitlines() if not line.startswith("torch threads: ")]
    assert len(said) == 1 and f"trainer publish {run_dir} --warehouse {warehouse}" in said[0]
    assert runs(warehouse) == []


def test_a_run_stopped_while_publishing_publishes_its_staged_results_as_they_are(warehouse, tmp_path) -> None:
    run_dir = trained(warehouse, tmp_path)
    ((run_id, finished_at, wall_seconds),) = runs(warehouse)
    with duckdb.connect(str(warehouse)) as con:  # as if killed before its swap: nothing of it in the warehouse
        for table in results.RESULT_TABLES + (results.SERVING_TABLE,):
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
    (run_dir / results.PUBLISHED_MARKER).unlink()
    result = resume(run_dir)
    assert result.exit_code in (0, NOT_SERVED), result.output
    assert "publishing them" in result.output and "epoch 1/" not in result.output  # no training again
    assert runs(warehouse) == [(run_id, finished_at, wall_seconds)]  # the staged row: not stamped again
    assert (run_dir / results.PUBLISHED_MARKER).exists()
    assert resume(run_dir).exit_code == 0  # and now it is published


def test_warehouse_given_with_resume_is_where_the_run_publishes(warehouse, tmp_path, elsewhere) -> None:
    run_dir = trained(warehouse, tmp_path)
    before = runs(warehouse)
    for staged in [results.RUN_FILE, results.PUBLISHED_MARKER, "predictions.parquet"]:  # as if killed while staging
        (run_dir / staged).unlink()
    result = resume(run_dir, "--warehouse", str(elsewhere))
    assert result.exit_code in (0, NOT_SERVED), result.output
    assert [row[0] for row in runs(elsewhere)] == [run_dir.name]
    assert runs(warehouse) == before  # the warehouse it started with is left alone
    with duckdb.connect(str(elsewhere), read_only=True) as con:
        assert con.execute("SELECT json_extract_string(config, '$.warehouse') FROM runs").fetchall() == [
            (str(elsewhere),)
        ]


def test_warehouse_given_with_resume_holding_other_data_is_refused(warehouse, tmp_path, make_movielens_1m) -> None:
    run_dir = trained(warehouse, tmp_path, "--no-publish")
    (run_dir / results.RUN_FILE).unlink()
    other = tmp_path / "other.duckdb"
    build_warehouse(make_movielens_1m(tmp_path / "other", seed=11), other, EtlOptions(validation_fraction=0.1))
    result = resume(run_dir, "--warehouse", str(other))
    assert result.exit_code == 1 and "holds other data" in result.output, result.output
    assert runs(other) == []


def test_a_folder_holding_another_runs_checkpoint_is_refused_naming_both(warehouse, tmp_path) -> None:
    first = trained(warehouse, tmp_path / "a", "--no-publish")
    second = trained(warehouse, tmp_path / "b", "--no-publish", "--seed", "4")
    shutil.copyfile(first / checkpoint.FILE_NAME, second / checkpoint.FILE_NAME)
    result = resume(second)  # staged: its run.json names the run
    assert result.exit_code == 1 and first.name in result.output and second.name in result.output, result.output
    (second / results.RUN_FILE).unlink()
    result = resume(second)  # only the folder's name does
    assert result.exit_code == 1, result.output
    assert f"holds run {first.name}'s checkpoint, not run {second.name}'s" in result.output
    assert runs(warehouse) == []
