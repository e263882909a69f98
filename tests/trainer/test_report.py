import subprocess
import sys
from datetime import datetime

import pytest
from typer.testing import CliRunner

from trainer.cli import app
from trainer.config import resolve
from trainer.train import run
from warehouse.results import publish_bench

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_draws_the_learning_curve_and_the_bench_comparison(warehouse, tmp_path) -> None:
    summary = run(
        resolve(
            {"warehouse": str(warehouse), "runs_dir": str(tmp_path / "runs"), "epochs": 4, "eval_every": 1, "top_n": 0}
        )
    )
    outcome = CliRunner().invoke(
        app, ["report", summary.run_id, "--warehouse", str(warehouse), "--out-dir", str(tmp_path / "out")]
    )
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "out" / f"learning-curve-{summary.run_id}.png").read_bytes().startswith(PNG)
    assert "no model comparison chart" in outcome.output

    # bench rows as `trainer bench` writes them (tests/trainer/test_bench.py runs the real thing)
    rows = [
        {
            "bench_id": "b1",
            "finished_at": datetime(2026, 1, 1),
            "model": model,
            "dataset": "ml-1m",
            "protocol": "random 90/10",
            "split": "random",
            "seed": seed,
            "run_id": f"r{seed}",
            "test_rmse": rmse,
            "test_mae": rmse * 0.8,
            "validation_rmse": rmse,
            "best_epoch": 1,
            "epochs_run": 1,
            "train_seconds": 1.0,
            "device": "cpu",
            "config": "{}",
        }
        for model, rmse in (("biases", 0.9), ("i-autorec", 0.84))
        for seed in (1, 2)
    ]
    publish_bench(rows, warehouse)
    outcome = CliRunner().invoke(
        app, ["report", summary.run_id, "--warehouse", str(warehouse), "--out-dir", str(tmp_path / "out")]
    )
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "out" / "model-comparison.png").read_bytes().startswith(PNG)


def test_report_of_an_unknown_run_says_where_to_look(warehouse, tmp_path) -> None:
    outcome = CliRunner().invoke(app, ["report", "nope", "--warehouse", str(warehouse), "--out-dir", str(tmp_path)])
    assert outcome.exit_code == 1 and "has no run 'nope'" in outcome.output


@pytest.mark.slow  # a child process imports trainer.report, and with it matplotlib
def test_report_imports_no_torch() -> None:
    """Drawing charts from the warehouse needs neither torch nor the trainer's models."""
    code = "import sys, trainer.report; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
