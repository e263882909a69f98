"""The real ml-100k u1 split: the seed model does as well as the original notebook or better, and
I-AutoRec does better than every baseline."""

from __future__ import annotations

import pytest

from etl.build import EtlOptions, build_warehouse
from trainer.config import resolve
from trainer.train import run

pytestmark = pytest.mark.slow

# The original notebook re-run on this project's machines (../shared/docs/anchors.md).
NOTEBOOK_GLOBAL_RMSE = 0.9765
NOTEBOOK_USER_RMSE = 0.9557


def test_default_beats_the_notebook_on_u1(shared_data, tmp_path) -> None:
    warehouse = tmp_path / "ml-100k.duckdb"
    build_warehouse(shared_data("ml-100k"), warehouse, EtlOptions())
    summary = run(resolve({"warehouse": str(warehouse), "split": "u1", "runs_dir": str(tmp_path / "runs")}))
    assert summary.metrics["n"] == 20_000  # every u1.test rating is scored
    assert summary.metrics["rmse"] <= NOTEBOOK_GLOBAL_RMSE
    assert summary.metrics["user_rmse"] <= NOTEBOOK_USER_RMSE


def test_i_autorec_beats_the_baselines_on_u1(shared_data, tmp_path) -> None:
    warehouse = tmp_path / "ml-100k.duckdb"
    build_warehouse(shared_data("ml-100k"), warehouse, EtlOptions(split_seed=0))
    summary = run(
        resolve(
            {
                "warehouse": str(warehouse),
                "split": "u1",
                "model": "i-autorec",
                "l2": 100.0,
                "runs_dir": str(tmp_path / "runs"),
                "top_n": 0,
            }
        )
    )
    assert summary.metrics["n"] == 20_000
    # 0.9027 when measured (README "Accuracy"); biased MF gets 0.935, damped biases 0.954
    assert summary.metrics["rmse"] < 0.91
    assert summary.best_epoch < len(summary.history)  # stopped early, on validation
