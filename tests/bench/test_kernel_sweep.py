"""bench/kernel_sweep.py: each setting trained once, reported with its validation RMSE, ranked on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "bench" / "kernel_sweep.py"

pytestmark = pytest.mark.slow  # the script in a child process, training a model per setting


def sweep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "ignore", str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )


def test_each_setting_is_trained_and_ranked_on_validation(warehouse) -> None:
    grid = [{}, {"l2": 1.0}, {"hidden": [4, 4], "kernel_l2": 0.5}]
    done = sweep(
        "--warehouse",
        str(warehouse),
        "--device",
        "cpu",
        "--grid",
        json.dumps(grid),
        "--set",
        "epochs=2",
        "--set",
        "lbfgs_iterations=2",
        "--set",
        "hidden=3,3",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    results = [line for line in lines if " epoch " in line]
    assert [line.split()[0] for line in results] == ["preset", "l2=1.0", "hidden=(4,"]  # one line each, in order
    ranked = lines[lines.index("by validation RMSE:") + 1 :]
    scores = [float(line.split()[0]) for line in ranked]
    assert len(scores) == 3 and scores == sorted(scores)
    assert sorted(scores) == sorted(float(line.split("validation ")[1].split()[0]) for line in results)


def test_a_setting_without_validation_is_refused(warehouse) -> None:
    done = sweep("--warehouse", str(warehouse), "--set", "validation=false")
    assert done.returncode == 2 and "validation cannot be turned off" in done.stderr
