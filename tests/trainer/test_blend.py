"""`trainer blend`: weights fitted on the members' validation predictions, applied to their test predictions,
published as a run of its own; the test part never moves the weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from typer.testing import CliRunner

from trainer.blend import BlendOptions, blend, fit_weights
from trainer.cli import app
from trainer.config import resolve
from trainer.train import run

MEMBERS = {
    "autoencoder": {"epochs": 15, "learning_rate": 0.05, "eval_every": 1, "patience": 4},
    "mf": {"hidden": (4,), "epochs": 15, "patience": 4},
}


def train(warehouse: Path, runs_dir: Path, **overrides) -> list[str]:
    """One run of each member model (served whatever the audit says: the data is tiny)."""
    return [
        run(
            resolve(
                {
                    "warehouse": str(warehouse),
                    "runs_dir": str(runs_dir),
                    "device": "cpu",
                    "top_n": 5,
                    "publish_anyway": True,
                    "model": model,
                    **settings,
                    **overrides,
                }
            )
        ).run_id  # fmt: skip
        for model, settings in MEMBERS.items()
    ]


def query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def members(small_warehouse, tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("blend")
    warehouse = folder / "warehouse.duckdb"
    shutil.copyfile(small_warehouse, warehouse)
    return warehouse, train(warehouse, folder / "runs")


@pytest.fixture
def warehouse_with_members(members, tmp_path) -> tuple[Path, list[str]]:
    warehouse, run_ids = members
    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(warehouse, copy)
    return copy, run_ids


def test_fit_weights_recovers_a_known_combination() -> None:
    rng = np.random.default_rng(0)
    predicted = rng.normal(3.5, 1.0, size=(5000, 3))
    actual = 0.3 + predicted @ np.array([0.5, 0.2, 0.25])
    weights, intercept = fit_weights(predicted, actual, ridge=0.0)
    assert np.allclose(weights, [0.5, 0.2, 0.25]) and intercept == pytest.approx(0.3)
    # The penalty pulls towards an equal average, not towards 0.
    heavy, _ = fit_weights(predicted, actual, ridge=1e6)
    assert np.allclose(heavy, 1 / 3, atol=1e-4)


def test_a_blend_is_published_as_a_run_with_its_members_and_predictions(warehouse_with_members, tmp_path) -> None:
    warehouse, run_ids = warehouse_with_members
    result = CliRunner().invoke(app, ["blend", *run_ids, "--warehouse", str(warehouse), "--runs-dir",
                                      str(tmp_path / "runs"), "--device", "cpu", "--top-n", "5", "--publish-anyway"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "weights fitted on the validation slice" in result.output and "blend " in result.output
    ((run_id, kind, members, test_rmse, n_test),) = query(
        warehouse, "SELECT run_id, kind, members, test_rmse, n_test FROM runs WHERE kind = 'blend'"
    )
    assert json.loads(members)["runs"] == run_ids and len(json.loads(members)["weights"]) == 2
    kinds = dict(query(warehouse, "SELECT kind, count(*) FROM predictions WHERE run_id = ? GROUP BY kind", [run_id]))
    member_kinds = dict(
        query(warehouse, "SELECT kind, count(*) FROM predictions WHERE run_id = ? GROUP BY kind", [run_ids[0]])
    )
    assert kinds["test"] == member_kinds["test"] == n_test and kinds["validation"] == member_kinds["validation"]
    assert 0 < kinds["top_n"] <= 5 * query(warehouse, "SELECT n_users FROM dataset")[0][0]
    (recomputed,) = query(warehouse, "SELECT sqrt(avg((predicted_rating - actual_rating) ^ 2)) FROM predictions "
                                     "WHERE run_id = ? AND kind = 'test'", [run_id])[0]  # fmt: skip
    assert recomputed == pytest.approx(test_rmse, rel=1e-5)
    # Its top-N never holds a movie the user rated, and the serving views show it.
    rated = "SELECT count(*) FROM predictions p SEMI JOIN ratings r USING (user_id, movie_id) WHERE run_id = ? AND kind = 'top_n'"
    assert query(warehouse, rated, [run_id]) == [(0,)]
    assert query(warehouse, "SELECT run_id, kind FROM latest_run") == [(run_id, "blend")]
    result = CliRunner().invoke(app, ["score", run_id, "--warehouse", str(warehouse)])
    assert result.exit_code == 1 and "is a blend of several models, not one model" in result.output


def test_flipped_test_ratings_leave_the_blend_weights_unchanged(
    small_warehouse, tmp_path, corrupt_test_ratings
) -> None:
    weights = {}
    for name in ("clean", "corrupt"):
        warehouse = tmp_path / f"{name}.duckdb"
        shutil.copyfile(small_warehouse, warehouse)
        if name == "corrupt":
            corrupt_test_ratings(warehouse)
        run_ids = train(warehouse, tmp_path / name)
        summary = blend(BlendOptions(tuple(run_ids), warehouse, runs_dir=tmp_path / name, device="cpu", top_n=0,
                                     publish_anyway=True))  # fmt: skip
        weights[name] = (list(summary.weights.values()), summary.intercept, summary.validation_rmse, summary.metrics)
    (clean_weights, clean_intercept, clean_validation, clean_test) = weights["clean"]
    (corrupt_weights, corrupt_intercept, corrupt_validation, corrupt_test) = weights["corrupt"]
    assert (clean_weights, clean_intercept, clean_validation) == (
        corrupt_weights,
        corrupt_intercept,
        corrupt_validation,
    )
    assert clean_test["rmse"] != corrupt_test["rmse"]  # while the test score does see the flip


def test_what_cannot_be_blended_is_refused(warehouse_with_members, tmp_path) -> None:
    warehouse, run_ids = warehouse_with_members
    other_split = run(resolve({"warehouse": str(warehouse), "runs_dir": str(tmp_path), "device": "cpu", "split": "temporal",
                               "epochs": 2, "publish_anyway": True})).run_id  # fmt: skip
    unvalidated = run(resolve({"warehouse": str(warehouse), "runs_dir": str(tmp_path), "device": "cpu", "epochs": 2,
                               "validation": False, "publish_anyway": True})).run_id  # fmt: skip
    for members, message in [
        ([run_ids[0]], "a blend takes two or more different training runs"),
        ([run_ids[0], run_ids[0]], "a blend takes two or more different training runs"),
        ([run_ids[0], other_split], "were trained on different splits (random, temporal)"),
        ([run_ids[0], unvalidated], f"run {unvalidated} has no validation predictions"),
        ([run_ids[0], "20990101-000000-beef"], "no run '20990101-000000-beef' in the warehouse"),
    ]:
        result = CliRunner().invoke(app, ["blend", *members, "--warehouse", str(warehouse), "--device", "cpu"])
        assert result.exit_code == 1 and message in result.output, (members, result.output)
