"""bench/epoch_bench.py: the default model's epochs timed, this checkout against a baseline revision."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "bench" / "epoch_bench.py"

pytestmark = pytest.mark.slow  # child processes, each reading the warehouse and training


def test_this_checkout_against_its_own_revision_gives_the_same_training_rmse(warehouse) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--warehouse", str(warehouse), "--epochs", "2", "--rounds", "1"]
        + ["--baseline", "HEAD"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[2] for line in lines if line.startswith("round 1")] == ["this", "baseline"]
    assert any(line.startswith("this / baseline: first epoch ") and "later epochs" in line for line in lines)
    assert lines[-1] == "train RMSE of every epoch: the same as the baseline's"
