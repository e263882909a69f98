"""`trainer publish` trusts a staged folder only as far as its files bear it out (issue #27): a folder that lacks a
file its kind of run stages, whose run.json says other figures than its predictions, or whose files hold another
run's rows is refused, naming what is wrong, and the warehouse keeps every row it had (a copy of the served run
without predictions.parquet once replaced the served predictions by none)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from trainer.cli import NOT_SERVED, app
from trainer.config import resolve
from trainer.train import run
from warehouse import results

ROWS = {table: f"SELECT * FROM {table} ORDER BY ALL" for table in results.RESULT_TABLES}
SERVED = "SELECT * FROM recommendations ORDER BY ALL"


def everything(warehouse: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {table: con.execute(sql).fetchall() for table, sql in {**ROWS, "served": SERVED}.items()}


@pytest.fixture(scope="module")
def served(small_warehouse, tmp_path_factory) -> tuple[Path, Path]:
    """A warehouse serving a run (the default model, which passes its audit), and the run's folder."""
    path = tmp_path_factory.mktemp("served") / "warehouse.duckdb"
    shutil.copyfile(small_warehouse, path)
    summary = run(resolve({"warehouse": str(path), "runs_dir": str(path.parent / "runs")}))
    assert summary.published and summary.published.serves
    return path, summary.run_dir


@pytest.fixture
def copy(served, tmp_path) -> tuple[Path, Path]:
    """This test's copy of the warehouse, and a copy of the served run's folder."""
    warehouse, run_dir = served
    shutil.copyfile(warehouse, tmp_path / "warehouse.duckdb")
    return tmp_path / "warehouse.duckdb", Path(shutil.copytree(run_dir, tmp_path / run_dir.name))


def publish(folder: Path, warehouse: Path):
    return CliRunner().invoke(app, ["publish", str(folder), "--warehouse", str(warehouse)])


def refused(result, *said: str) -> None:
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert all(words in result.output for words in said), result.output


def edit(folder: Path, **changes: object) -> None:
    staged = json.loads((folder / results.RUN_FILE).read_text())
    (folder / results.RUN_FILE).write_text(json.dumps({**staged, **changes}))


def test_an_untouched_copy_of_the_served_run_publishes_again_and_changes_nothing(copy) -> None:
    warehouse, folder = copy
    before = everything(warehouse)
    assert publish(folder, warehouse).exit_code in (0, NOT_SERVED)
    after = everything(warehouse)
    assert {table: rows for table, rows in after.items() if table != "runs"} == {
        table: rows for table, rows in before.items() if table != "runs"
    }


@pytest.mark.parametrize("table", ["predictions", "epoch_metrics", "run_index", "ranking_metrics"])
def test_a_training_run_missing_a_staged_file_is_refused_and_its_rows_kept(copy, table) -> None:
    warehouse, folder = copy
    before = everything(warehouse)
    (folder / f"{table}.parquet").unlink()
    refused(publish(folder, warehouse), "incomplete", f"{table}.parquet missing", "trainer run --resume")
    assert everything(warehouse) == before


def test_each_kind_of_run_needs_its_own_files(copy) -> None:
    _, folder = copy
    assert results.missing_files(folder, {"kind": "train"}) == []
    for table in ("epoch_metrics", "run_index", "ranking_metrics"):
        (folder / f"{table}.parquet").unlink()
    assert results.missing_files(folder, {"kind": None}) == [  # a run.json from before kinds: a training run
        "epoch_metrics.parquet",
        "run_index.parquet",
        "ranking_metrics.parquet",
    ]
    assert results.missing_files(folder, {"kind": "score"}) == []
    assert results.missing_files(folder, {"kind": "blend"}) == ["ranking_metrics.parquet"]
    (folder / "predictions.parquet").unlink()
    assert results.missing_files(folder, {"kind": "score"}) == ["predictions.parquet"]
    assert results.missing_files(folder, {"kind": "blend"}) == ["predictions.parquet", "ranking_metrics.parquet"]
    assert results.missing_files(folder, {"kind": "mystery"}) == ["run.json of a known kind (not 'mystery')"]


@pytest.mark.parametrize(
    "field, change",
    [
        ("test_rmse", lambda value: value * 0.9),
        ("test_rmse", lambda value: None),
        ("n_test", lambda value: value + 1),
        ("validation_rmse", lambda value: value * 0.9),  # a better figure than its predictions can give
        ("validation_rmse", lambda value: value * 1.1),
        ("audit_rmse", lambda value: value * 0.5),  # one that would pass the audit
    ],
)
def test_figures_other_than_the_predictions_give_are_refused(copy, field, change) -> None:
    warehouse, folder = copy
    before = everything(warehouse)
    edit(folder, **{field: change(json.loads((folder / results.RUN_FILE).read_text())[field])})
    refused(publish(folder, warehouse), "does not match the staged predictions", field)
    assert everything(warehouse) == before


def test_float_noise_in_the_figures_is_no_mismatch(copy) -> None:
    warehouse, folder = copy
    staged = json.loads((folder / results.RUN_FILE).read_text())
    edit(folder, test_rmse=staged["test_rmse"] * (1 + 1e-9), validation_rmse=staged["validation_rmse"] * (1 - 1e-9))
    assert publish(folder, warehouse).exit_code in (0, NOT_SERVED)


def test_a_staged_file_holding_another_runs_rows_is_refused(copy) -> None:
    warehouse, folder = copy
    before = everything(warehouse)
    staged = str(folder / "predictions.parquet")
    other = duckdb.sql(f"SELECT * REPLACE ('20260101-000000-beef' AS run_id) FROM read_parquet('{staged}')")
    other.write_parquet(staged)
    refused(publish(folder, warehouse), "predictions.parquet: rows of run 20260101-000000-beef")
    assert everything(warehouse) == before
