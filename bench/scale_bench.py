"""Scale benchmark: synthetic MovieLens data at about 1 M, 10 M and 32 M ratings, each step a child process.

For each size: `etl generate` writes an ml-32m-like CSV folder, `etl build` loads it, `trainer run
--epochs 1` trains one epoch of the default model, scores the test ratings and writes every user's top-N,
and `trainer publish` writes that run's results into the warehouse once more, alone.
Each step runs as its own process, so its wall time and peak resident memory (os.wait4's ru_maxrss, that
child alone) are its own. The catalogue is ml-32m's 87,585 movies at every size and the users grow with
the ratings (one per 160), so the figures show how each step grows with the data; per-rating costs are
printed alongside. Acceptance: each step's peak under 6 GB at 32 M.

    python bench/scale_bench.py                                # 1 M, 10 M, 32 M
    python bench/scale_bench.py --sizes 1000000,10000000       # a quicker look
    python bench/scale_bench.py --workdir /big/disk --keep     # keep the files (32 M: about 3 GB)
    python bench/scale_bench.py --train-args='--cache-budget-mb 64'   # the trainer streaming every epoch
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ML_32M_MOVIES = 87_585
PEAK_TARGET_MIB = 6 * 1024


def measure(command: list[str], log: Path) -> tuple[float, float]:
    """Run one step as a child process: (wall seconds, peak RSS in MiB). Its output goes to ``log``."""
    with log.open("w") as out:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    if child.returncode != 0:
        sys.exit(f"{' '.join(command)} failed (exit {child.returncode}):\n{log.read_text()[-4000:]}")
    return wall, usage.ru_maxrss / 1024  # Linux reports KiB


def steps(ratings: int, movies: int, folder: Path, train_args: list[str]) -> dict[str, list[str]]:
    data, warehouse = folder / "data", folder / "warehouse.duckdb"
    return {
        "generate": [
            str(BIN / "etl"),
            "generate",
            "--output",
            str(data),
            "--ratings",
            str(ratings),
            "--movies",
            str(movies),
            "--seed",
            "0",
        ],
        "etl build": [str(BIN / "etl"), "build", "--input", str(data), "--warehouse", str(warehouse)],
        "train 1 epoch": [
            str(BIN / "trainer"),
            "run",
            "--warehouse",
            str(warehouse),
            "--epochs",
            "1",
            "--runs-dir",
            str(folder / "runs"),
            *train_args,
        ],
        # Writing the run's results into the warehouse once more (idempotent): a copy of the warehouse file,
        # the run's rows and their audit written into it, and the swap (warehouse/swap.py).
        "publish": ["sh", "-c", f'exec "{BIN / "trainer"}" publish "{folder / "runs"}"/* --warehouse "{warehouse}"'],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000,32000000", help="ratings per size, comma-separated")
    parser.add_argument("--movies", type=int, default=ML_32M_MOVIES, help="catalogue size (default ml-32m's)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go (default: a temporary folder)")
    parser.add_argument("--train-args", default="", help="more trainer options, e.g. '--cache-budget-mb 64' (streamed)")
    parser.add_argument("--keep", action="store_true", help="keep each size's files (default: delete after it)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    root = Path(args.workdir or tempfile.mkdtemp(prefix="scale-bench-"))
    root.mkdir(parents=True, exist_ok=True)

    memory_gib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    print(
        f"machine  {platform.machine()}, {os.cpu_count()} CPUs, {memory_gib:.0f} GiB; "
        f"Python {platform.python_version()}; files in {root}"
    )
    print(f"\n{'ratings':>12}  {'step':<14}  {'wall s':>8}  {'us/rating':>9}  {'peak RSS MiB':>12}", flush=True)
    rows = []
    for ratings in sizes:
        folder = root / f"ratings-{ratings}"
        folder.mkdir(exist_ok=True)
        for step, command in steps(ratings, args.movies, folder, args.train_args.split()).items():
            wall, rss = measure(command, folder / f"{step.split()[0]}.log")
            rows.append((ratings, step, wall, rss))
            print(f"{ratings:>12,}  {step:<14}  {wall:>8.1f}  {wall / ratings * 1e6:>9.2f}  {rss:>12,.0f}", flush=True)
        print(f"{'':>12}  {(folder / 'train.log').read_text().strip().splitlines()[-1][:150]}", flush=True)
        if not args.keep:
            shutil.rmtree(folder)

    print("\ngrowth from the smallest size (time ratio / ratings ratio; 1.0 is linear):")
    for step in dict.fromkeys(step for _, step, _, _ in rows):
        runs = [(ratings, wall) for ratings, s, wall, _ in rows if s == step]
        base_ratings, base_wall = runs[0]
        print(
            f"  {step:<14}  "
            + "  ".join(
                f"{ratings / base_ratings:.0f}x ratings: {wall / base_wall / (ratings / base_ratings):.2f}"
                for ratings, wall in runs[1:]
            )
        )
    peak = max(rows, key=lambda row: row[3])
    verdict = "under" if peak[3] < PEAK_TARGET_MIB else "OVER"
    print(f"highest peak RSS: {peak[3]:,.0f} MiB ({peak[1]}, {peak[0]:,} ratings): {verdict} the 6 GiB target")
    if not args.keep and args.workdir is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
