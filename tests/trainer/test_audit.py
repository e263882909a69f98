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

from trainer.cli import app
from trainer.config import resolve
from trainer.errors import TrainerError
from trainer.train import run

SERVED = "SELECT * FROM recommendations ORDER BY user_id, rank"


def settings(warehouse: Path, runs: Path, **overrides):
    return resolve({"warehouse": str(warehouse), "runs_dir": str(runs), **overrides})


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
    result = CliRunner().invoke(
        app, ["run", "--warehouse", str(warehouse), "--runs-dir", str(tmp_path / "r"), "--learning-rate", "nan"]
    )
    assert result.exit_code == 2 and "--learning-rate" in result.output and "finite" in result.output
    assert not (tmp_path / "r").exists()
    assert query(warehouse, SERVED) == before


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
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--warehouse",
            str(warehouse),
            "--runs-dir",
            str(tmp_path / "r"),
            "--model",
            "mf",
            "--optimizer",
            "sgd",
            "--learning-rate",
            "1e6",
            "--epochs",
            "5",
        ],
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
        f"SELECT audit, audit_reason, served, baseline_rmse, validation_rmse FROM run_metrics "
        f"WHERE run_id = '{weak.run_id}'",
    )[0]
    assert (audit, served) == ("failed", False) and validation > baseline and "training mean" in reason
    assert query(warehouse, "SELECT run_id FROM latest_run") != [(weak.run_id,)]
    assert [row[0] for row in query(warehouse, Path("sql/examples/failed_runs.sql").read_text())] == [weak.run_id]


def test_a_huge_learning_rate_never_reaches_the_analysts(warehouse, tmp_path) -> None:
    """The issue's case: lr 1000 stays finite here but is far worse than the mean, so the audit stops it."""
    before = query(warehouse, SERVED)
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--warehouse",
            str(warehouse),
            "--runs-dir",
            str(tmp_path / "r"),
            "--learning-rate",
            "1000",
            "--epochs",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Not promoted: the audit failed" in result.output
    assert query(warehouse, SERVED) == before


def test_publish_anyway_serves_a_failing_run_and_records_the_override(warehouse, tmp_path) -> None:
    weak = run(settings(warehouse, tmp_path / "r", epochs=1, learning_rate=1e-6, publish_anyway=True))
    assert weak.published.promoted and not weak.published.audit_passed
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
