"""Benchmark `trainer score`: the time to score every user of a data set with the default model.

Builds a warehouse from the input folder and trains the default model once (its weights do not change the
time a scoring takes: --epochs keeps that short), then scores every user N times, each in a child process
as `trainer score` runs. For each: the process's wall time, split into start-up (interpreter and imports,
and exit), scoring (reading the ratings, the model, ranking, staging) and publishing (the audited write
into the warehouse); and the child's peak resident memory. Prints a table, then the medians.

    python bench/score_bench.py [--input ../shared/data/ml-1m] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO.parent / "shared" / "data" / "ml-1m"

# The child: what `trainer score RUN_ID` runs (the CLI's imports included), timed from inside.
CHILD = """
import json, os, sys
import trainer.cli
from pathlib import Path
from trainer.config import MachineSettings
from trainer.score import ScoreOptions, score
run_id, warehouse, runs_dir = sys.argv[1:]
summary = score(ScoreOptions(run_id, Path(warehouse), machine=MachineSettings(runs_dir=runs_dir, device="cpu")))
print(json.dumps({"scoring": summary.score_seconds, "publishing": summary.publish_seconds,
                  "users": summary.n_scored_users, "promoted": summary.published.promoted}), flush=True)
os._exit(0)  # as the trainer command exits (trainer/cli.py entry_point): no teardown of torch
"""


def run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} ... failed (exit {done.returncode}):\n{done.stderr}")


def score_once(run_id: str, warehouse: Path, runs_dir: Path) -> dict[str, float]:
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, run_id, str(warehouse), str(runs_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    output, errors = child.stdout.read(), child.stderr.read()  # type: ignore[union-attr]
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    if child.returncode != 0:
        sys.exit(f"trainer score failed (exit {child.returncode}):\n{errors}")
    timing = json.loads(output.strip().splitlines()[-1])
    startup = wall - timing["scoring"] - timing["publishing"]
    return {"wall": wall, "startup": startup, "rss_mib": usage.ru_maxrss / 1024, **timing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help=f"MovieLens folder (default {DEFAULT_INPUT})")
    parser.add_argument("--repeat", type=int, default=5, help="how many scorings (default 5)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the one training run (default 20)")
    args = parser.parse_args()
    input_dir = args.input.resolve()
    if not input_dir.is_dir():
        sys.exit(f"{input_dir}: no such folder (real MovieLens copies live in ../shared/data)")
    print(f"input      {input_dir}")
    print(f"machine    {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")

    with tempfile.TemporaryDirectory(prefix="score-bench-") as folder:
        work = Path(folder)
        warehouse, runs_dir = work / "warehouse.duckdb", work / "runs"
        python = [sys.executable, "-m"]
        run([*python, "etl", "build", "--input", str(input_dir), "--warehouse", str(warehouse), "--quiet"], REPO)
        run(
            [
                *python,
                "trainer",
                "run",
                "--warehouse",
                str(warehouse),
                "--runs-dir",
                str(runs_dir),
                "--epochs",
                str(args.epochs),
                "--device",
                "cpu",
            ],
            REPO,
        )
        with duckdb.connect(str(warehouse), read_only=True) as con:
            ((run_id, model),) = con.execute("SELECT run_id, model FROM runs").fetchall()
        print(f"model      {model} (the default), run {run_id}\n")
        print(
            f"{'run':>3}  {'users':>7}  {'wall s':>7}  {'start-up s':>10}  {'scoring s':>9}  {'publishing s':>12}  "
            f"{'peak RSS MiB':>12}"
        )
        done = []
        for n in range(1, args.repeat + 1):
            result = score_once(run_id, warehouse, runs_dir)
            done.append(result)
            print(
                f"{n:>3}  {result['users']:>7,}  {result['wall']:>7.2f}  {result['startup']:>10.2f}  "
                f"{result['scoring']:>9.2f}  {result['publishing']:>12.2f}  {result['rss_mib']:>12.0f}"
            )

    print(f"\nmedians over {len(done)} scorings of {done[0]['users']:,} users:")
    for key, label in (
        ("wall", "whole process"),
        ("startup", "start-up"),
        ("scoring", "scoring"),
        ("publishing", "publishing"),
    ):
        print(f"  {label:<14} {statistics.median(r[key] for r in done):6.2f} s")
    print(f"  peak RSS       {max(r['rss_mib'] for r in done):6.0f} MiB")


if __name__ == "__main__":
    main()
