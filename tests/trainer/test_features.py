"""Training from the Parquet export (`etl export`, `trainer run --features`) gives what training from the
warehouse gives, cached and streamed."""

from __future__ import annotations

import pytest

from etl.export import export_features
from trainer.config import resolve
from trainer.train import run


def config(warehouse, tmp_path, **overrides):
    return resolve({"warehouse": str(warehouse), "runs_dir": str(tmp_path / "runs"), "epochs": 6, **overrides})


@pytest.mark.parametrize("cache_budget_mb", [2048, 1e-9], ids=["cached", "streamed"])
def test_training_from_parquet_matches_training_from_the_warehouse(warehouse, tmp_path, query, cache_budget_mb):
    features = tmp_path / "features"
    export_features(warehouse, features)
    from_warehouse = run(config(warehouse, tmp_path / "a", cache_budget_mb=cache_budget_mb))
    # No warehouse beside the Parquet files: a trainer on another machine. Results stay in the run folder.
    messages: list[str] = []
    from_parquet = run(
        config(tmp_path / "absent.duckdb", tmp_path / "b", features=str(features), cache_budget_mb=cache_budget_mb),
        log=messages.append,
    )
    assert from_parquet.metrics == from_warehouse.metrics
    assert [h["train_rmse"] for h in from_parquet.history] == [h["train_rmse"] for h in from_warehouse.history]
    assert not (tmp_path / "absent.duckdb").exists()
    assert (from_parquet.run_dir / "predictions.parquet").exists()
    assert any("the results stay in" in m for m in messages)
    assert from_warehouse.published and not from_parquet.published


def test_training_from_parquet_publishes_into_the_warehouse_when_there_is_one(warehouse, tmp_path, query):
    features = tmp_path / "features"
    export_features(warehouse, features)
    summary = run(config(warehouse, tmp_path, features=str(features), epochs=1))
    assert query(warehouse, "SELECT run_id, test_rmse FROM runs") == [(summary.run_id, summary.metrics["rmse"])]
