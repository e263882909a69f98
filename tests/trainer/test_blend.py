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

from trainer.blend import Activity, BlendOptions, blend, choose, fit_weights
from trainer.cli import NOT_SERVED, app
from trainer.config import MachineSettings, resolve
from trainer.train import run
from warehouse.sql import SQL_DIR

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
        ).run_id
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


def test_cross_validation_lets_the_weights_follow_activity_where_that_helps() -> None:
    """Member 0 is right for users with few ratings, member 1 for the others: weights that vary with a user's
    activity win out of fold, clearly."""
    rng = np.random.default_rng(1)
    n = 4000
    users, movies = rng.integers(0, 200, n), rng.integers(0, 100, n)
    counts = {int(u): int(u) * 5 + 1 for u in range(200)}  # user u has 5u + 1 training ratings
    activity = Activity(counts, dict.fromkeys(range(100), 10), (0.0, 0.0), (1.0, 1.0))
    actual = rng.normal(3.5, 1.0, n)
    few = np.log1p(np.array([counts[int(u)] for u in users])) < 5
    noise = rng.normal(0, 1.0, (n, 2))
    predicted = actual[:, None] + noise * np.where(few[:, None], [0.2, 1.0], [1.0, 0.2])
    blender, out_of_fold = choose(predicted, actual, users, movies, activity, None, None)
    plain, plain_out_of_fold = choose(predicted, actual, users, movies, activity, None, False)
    assert blender.activity and not plain.activity and out_of_fold < plain_out_of_fold - 0.05


def test_a_blend_is_published_as_a_run_with_its_members_and_predictions(warehouse_with_members, tmp_path) -> None:
    warehouse, run_ids = warehouse_with_members
    result = CliRunner().invoke(
        app,
        ["blend", *run_ids, "--warehouse", str(warehouse), "--runs-dir", str(tmp_path / "runs")]
        + ["--device", "cpu", "--top-n", "5", "--publish-anyway", "--activity"],
    )
    assert result.exit_code in (0, NOT_SERVED), result.output  # on tiny data it need not beat its best member
    assert "blend chosen by 5-fold cross-validation on the validation slice" in result.output
    failed = query(warehouse, "SELECT run_id FROM runs WHERE NOT audit_passed AND list_contains(?, run_id)", [run_ids])
    assert failed  # tiny data: the members fail their audit (published anyway) ...
    for (member,) in failed:  # ... and are named, and taken as asked
        assert f"run {member} failed its audit" in result.output
    ((run_id, kind, members, test_rmse, n_test),) = query(
        warehouse, "SELECT run_id, kind, members, test_rmse, n_test FROM runs WHERE kind = 'blend'"
    )
    assert json.loads(members)["runs"] == run_ids and len(json.loads(members)["weights"]) == 2
    assert json.loads(members)["activity"] is True  # --activity: weights that vary with activity, top-N included
    kinds = dict(query(warehouse, "SELECT kind, count(*) FROM predictions WHERE run_id = ? GROUP BY kind", [run_id]))
    member_kinds = dict(
        query(warehouse, "SELECT kind, count(*) FROM predictions WHERE run_id = ? GROUP BY kind", [run_ids[0]])
    )
    assert kinds["test"] == member_kinds["test"] == n_test and kinds["validation"] == member_kinds["validation"]
    assert 0 < kinds["top_n"] <= 5 * query(warehouse, "SELECT n_users FROM dataset")[0][0]
    (recomputed,) = query(
        warehouse,
        "SELECT sqrt(avg((predicted_rating - actual_rating) ^ 2)) FROM predictions WHERE run_id = ? AND kind = 'test'",
        [run_id],
    )[0]
    assert recomputed == pytest.approx(test_rmse, rel=1e-5)
    # Its held-out lists, as a training run's: metrics that sql/examples/ranking_quality.sql recomputes from its
    # test_top_n rows, and no list holding a movie its user rated in the parts ranked from.
    con = duckdb.connect(str(warehouse), read_only=True)
    con.execute("SET VARIABLE run_id = ?", [run_id])
    relation = con.sql((SQL_DIR / "examples" / "ranking_quality.sql").read_text())
    recomputed_ranking = dict(zip(relation.columns, relation.fetchall()[0]))
    stored = dict(
        con.execute("SELECT metric, value FROM ranking_metrics WHERE run_id = ? AND part = 'test'", [run_id]).fetchall()
    )
    assert stored["users"] > 0 and stored == pytest.approx(recomputed_ranking, abs=1e-9)
    parts = con.execute("SELECT DISTINCT part FROM ranking_metrics WHERE run_id = ?", [run_id]).fetchall()
    leaks = con.execute(
        """SELECT count(*) FROM predictions AS p JOIN split_ratings AS s
                           ON s.split = 'random' AND s.user_id = p.user_id AND s.movie_id = p.movie_id
                           WHERE p.run_id = ? AND (p.kind = 'test_top_n' AND s.part <> 'test'
                                                   OR p.kind = 'validation_top_n' AND s.part = 'train')""",
        [run_id],
    ).fetchall()
    con.close()
    assert sorted(parts) == [("test",), ("validation",)] and leaks == [(0,)]
    assert "Its top 10s: nDCG@10" in result.output
    # Its top-N never holds a movie the user rated, and the serving views show it.
    rated = "SELECT count(*) FROM predictions p SEMI JOIN ratings r USING (user_id, movie_id) WHERE run_id = ? AND kind = 'top_n'"
    assert query(warehouse, rated, [run_id]) == [(0,)]
    promoted = CliRunner().invoke(app, ["promote", run_id, "--as", "predictions", "--warehouse", str(warehouse)])
    assert promoted.exit_code == 0, promoted.output
    assert query(warehouse, "SELECT run_id, kind FROM latest_run") == [(run_id, "blend")]
    result = CliRunner().invoke(app, ["score", run_id, "--warehouse", str(warehouse)])
    assert result.exit_code == 1 and "is a blend of several models, not one model" in result.output


@pytest.mark.slow
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
        summary = blend(
            BlendOptions(
                tuple(run_ids),
                warehouse,
                top_n=0,
                machine=MachineSettings(runs_dir=str(tmp_path / name), device="cpu", publish_anyway=True),
            )
        )
        weights[name] = (summary.blender.to_dict(), summary.validation_rmse, summary.metrics["rmse"])
    assert weights["clean"][:2] == weights["corrupt"][:2]  # the same penalty, features, weights and validation RMSE
    assert weights["clean"][2] != weights["corrupt"][2]  # while the test score does see the flip


def test_what_cannot_be_blended_is_refused(warehouse_with_members, tmp_path) -> None:
    warehouse, run_ids = warehouse_with_members
    other_split = run(
        resolve(
            {
                "warehouse": str(warehouse),
                "runs_dir": str(tmp_path),
                "device": "cpu",
                "split": "temporal",
                "epochs": 2,
                "publish_anyway": True,
            }
        )
    ).run_id
    unvalidated = run(
        resolve(
            {
                "warehouse": str(warehouse),
                "runs_dir": str(tmp_path),
                "device": "cpu",
                "epochs": 2,
                "validation": False,
                "publish_anyway": True,
            }
        )
    ).run_id
    ranking = run(
        resolve(
            {
                "warehouse": str(warehouse),
                "runs_dir": str(tmp_path),
                "device": "cpu",
                "model": "popular",
                "publish_anyway": True,
            }
        )
    ).run_id
    for members, message in [
        ([run_ids[0]], "a blend takes two or more different training runs"),
        ([run_ids[0], run_ids[0]], f"run {run_ids[0]} named more than once: a blend takes each run once"),
        ([*run_ids, *run_ids, run_ids[0]], f"runs {', '.join(sorted(run_ids))} named more than once"),
        ([run_ids[0], ranking], f"run {ranking} (popular) ranks movies and predicts no ratings"),
        ([run_ids[0], other_split], "were trained on different splits (random, temporal)"),
        ([run_ids[0], unvalidated], f"run {unvalidated} has no validation predictions"),
        ([run_ids[0], "20990101-000000-beef"], "no run '20990101-000000-beef' in the warehouse"),
    ]:
        result = CliRunner().invoke(app, ["blend", *members, "--warehouse", str(warehouse), "--device", "cpu"])
        assert result.exit_code == 1 and message in result.output, (members, result.output)
