"""Write, audit, publish: bad settings are refused, a diverging run stops and publishes nothing, and a run
that fails the audit is recorded but never replaces the served results."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import pytest
import torch
from typer.testing import CliRunner

from trainer.cli import NOT_SERVED, app
from trainer.config import resolve
from trainer.errors import TrainerError
from trainer.train import run
from warehouse.sql import EXAMPLES_DIR

SERVED = "SELECT * FROM recommendations ORDER BY user_id, rank"


def settings(warehouse: Path, runs: Path, **overrides):
    return resolve({"warehouse": str(warehouse), "runs_dir": str(runs), **overrides})


def trainer_run(warehouse: Path, tmp_path: Path, *options: str):
    """`trainer run` on the warehouse through the CLI, its runs under tmp_path."""
    return CliRunner().invoke(app, ["run", "--warehouse", str(warehouse), "--runs-dir", str(tmp_path / "r"), *options])


def query(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def served(small_warehouse, tmp_path_factory) -> Path:
    """A warehouse whose serving views show a good run (the default model, which passes its audit)."""
    path = tmp_path_factory.mktemp("served") / "warehouse.duckdb"
    shutil.copyfile(small_warehouse, path)
    summary = run(settings(path, path.parent / "runs"))
    assert summary.published and summary.published.promoted and summary.published.audit_passed
    return path


@pytest.fixture
def warehouse(served, tmp_path) -> Path:
    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(served, copy)
    return copy


def test_a_nan_learning_rate_is_refused_before_any_work(warehouse, tmp_path) -> None:
    before = query(warehouse, SERVED)
    result = trainer_run(warehouse, tmp_path, "--learning-rate", "nan")
    assert result.exit_code == 2 and "--learning-rate" in result.output and "finite" in result.output
    assert not (tmp_path / "r").exists()
    assert query(warehouse, SERVED) == before


@pytest.mark.slow
def test_a_diverging_run_stops_keeps_its_last_good_checkpoint_and_publishes_nothing(warehouse, tmp_path) -> None:
    before, runs_before = query(warehouse, SERVED), query(warehouse, "SELECT run_id FROM runs")
    huge = settings(
        warehouse, tmp_path / "r", model="mf", optimizer="sgd", learning_rate=1e6, epochs=5, checkpoint_seconds=0
    )
    with pytest.raises(TrainerError, match=r"training diverged at epoch (\d+).*Nothing was published") as raised:
        run(huge)
    assert "--learning-rate" in str(raised.value)
    epoch = int(re.search(r"epoch (\d+)", str(raised.value)).group(1))
    (run_dir,) = (tmp_path / "r").iterdir()
    if epoch > 1:  # the checkpoint from the epoch before, with finite weights
        state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
        assert state["epoch"] == epoch - 1
        assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert not (run_dir / "run.json").exists()
    assert query(warehouse, "SELECT run_id FROM runs") == runs_before
    assert query(warehouse, SERVED) == before


def test_the_cli_exits_non_zero_on_divergence(warehouse, tmp_path) -> None:
    result = trainer_run(
        warehouse, tmp_path, "--model", "mf", "--optimizer", "sgd", "--learning-rate", "1e6", "--epochs", "5"
    )
    assert result.exit_code == 1 and "training diverged at epoch" in result.output


def test_a_weak_run_is_recorded_but_not_served(warehouse, tmp_path) -> None:
    before = query(warehouse, SERVED)
    weak = run(settings(warehouse, tmp_path / "r", epochs=1, learning_rate=1e-6))
    assert weak.published and not weak.published.promoted and not weak.published.audit_passed
    assert "worse than predicting the training mean" in weak.published.audit_reason
    assert query(warehouse, SERVED) == before  # row for row
    audit, reason, served, baseline, validation = query(
        warehouse,
        f"SELECT audit, audit_reason, passed, baseline_rmse, validation_rmse FROM run_metrics "
        f"WHERE run_id = '{weak.run_id}'",
    )[0]
    assert (audit, served) == ("failed", False) and validation > baseline and "training mean" in reason
    assert query(warehouse, "SELECT run_id FROM latest_run") != [(weak.run_id,)]
    assert [row[0] for row in query(warehouse, (EXAMPLES_DIR / "failed_runs.sql").read_text())] == [weak.run_id]


def test_a_huge_learning_rate_never_reaches_the_analysts(warehouse, tmp_path) -> None:
    """The issue's case: lr 1000 stays finite here but is far worse than the mean, so the audit stops it."""
    before = query(warehouse, SERVED)
    result = trainer_run(warehouse, tmp_path, "--learning-rate", "1000", "--epochs", "3")
    assert result.exit_code == NOT_SERVED, result.output  # finished and recorded, not served
    assert "Not served: the audit failed" in result.output
    assert query(warehouse, SERVED) == before


def test_publish_anyway_lets_a_failing_run_be_served_and_records_the_override(warehouse, tmp_path) -> None:
    before = query(warehouse, "SELECT run_id FROM latest_run")
    weak = run(settings(warehouse, tmp_path / "r", epochs=1, learning_rate=1e-6, publish_anyway=True))
    assert weak.published.promoted and not weak.published.audit_passed
    # it may be served, but does not replace a run that validates better: trainer promote serves it
    assert query(warehouse, "SELECT run_id FROM latest_run") == before
    promoted = CliRunner().invoke(app, ["promote", weak.run_id, "--as", "predictions", "--warehouse", str(warehouse)])
    assert promoted.exit_code == 0, promoted.output
    assert query(warehouse, "SELECT run_id FROM latest_run") == [(weak.run_id,)]
    assert query(warehouse, f"SELECT audit FROM run_metrics WHERE run_id = '{weak.run_id}'") == [
        ("failed, published anyway",)
    ]


def test_unclipped_predictions_outside_the_scale_fail_the_audit(warehouse, tmp_path) -> None:
    before = query(warehouse, SERVED)
    wild = run(settings(warehouse, tmp_path / "r", clip=False, learning_rate=1000, epochs=2))
    assert not wild.published.promoted
    assert "outside the rating scale" in wild.published.audit_reason
    assert query(warehouse, SERVED) == before


def restaged(run_dir: Path, tmp_path: Path, run_id: str, predictions_sql: str) -> Path:
    """A copy of a staged run under another id (in every staged file: a file holding another run's rows is refused),
    its predictions rewritten by ``predictions_sql`` (over p)."""
    import json

    copy = tmp_path / run_id
    shutil.copytree(run_dir, copy)
    run = json.loads((copy / "run.json").read_text()) | {"run_id": run_id}
    (copy / "run.json").write_text(json.dumps(run))
    with duckdb.connect() as con:
        for table in ("epoch_metrics", "run_index", "ranking_metrics", "predictions"):
            con.execute(
                f"CREATE TABLE p AS SELECT * REPLACE ('{run_id}' AS run_id) FROM read_parquet(?)",
                [str(run_dir / f"{table}.parquet")],
            )
            rows = predictions_sql if table == "predictions" else "SELECT * FROM p"
            con.execute(f"COPY ({rows}) TO '{copy / f'{table}.parquet'}' (FORMAT parquet)")
            con.execute("DROP TABLE p")
    return copy


@pytest.fixture
def served_run(served) -> Path:
    """The staged folder of the run the served warehouse shows (it passed its audit)."""
    (run_dir,) = (served.parent / "runs").iterdir()
    return run_dir


def test_users_left_without_recommendations_fail_the_audit(warehouse, served_run, tmp_path) -> None:
    from warehouse import results

    before = query(warehouse, SERVED)
    (user,) = query(warehouse, "SELECT min(user_id) FROM ratings")[0]
    holed = restaged(served_run, tmp_path, "holed", f"SELECT * FROM p WHERE NOT (kind = 'top_n' AND user_id = {user})")
    published = results.publish(holed, warehouse)
    assert not published.promoted and "1 users with movies left to recommend got no recommendations" in (
        published.audit_reason
    )
    assert query(warehouse, SERVED) == before


def test_a_nan_recommendation_fails_the_audit(warehouse, served_run, tmp_path) -> None:
    from warehouse import results

    nan_first = (
        "SELECT * REPLACE (CASE WHEN kind = 'top_n' AND rank = 1 THEN 'nan'::FLOAT ELSE predicted_rating "
        "END AS predicted_rating) FROM p"
    )
    poisoned = restaged(served_run, tmp_path, "poisoned", nan_first)
    published = results.publish(poisoned, warehouse)
    assert not published.promoted and "not finite" in published.audit_reason


def test_a_run_is_published_only_into_a_warehouse_built_from_its_data(warehouse, tmp_path, make_movielens_1m) -> None:
    from etl.build import build_warehouse
    from warehouse import results
    from warehouse.errors import WarehouseError

    staged = run(settings(warehouse, tmp_path / "r", epochs=2)).run_dir
    with pytest.raises(WarehouseError, match="no warehouse here"):
        results.publish(staged, tmp_path / "absent.duckdb")
    other = tmp_path / "other.duckdb"
    build_warehouse(make_movielens_1m(tmp_path / "other-files", n_users=30, seed=11), other)
    before = other.read_bytes()
    with pytest.raises(WarehouseError, match="holds other data than run .* was trained on"):
        results.publish(staged, other)
    assert other.read_bytes() == before
