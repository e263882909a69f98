"""Benchmark the whole ETL: `etl build` run as a child process, N times, each into a fresh warehouse.

For each run: the wall time of the process, the build time the ETL itself records (etl_runs.seconds: from
reading the input to the finished warehouse, without interpreter start-up), and the child's CPU time (user +
system) and peak resident memory (from os.wait4, so it is that process alone). Prints a table, then the
medians and the peak. With --baseline REV, the ETL of that git revision runs too, alternating with this
checkout's, and the ratios of the two medians are printed: noise on a shared machine then moves both alike.
On a machine that other jobs keep busy, the wall time moves with their load; the CPU time moves less.

    python bench/etl_bench.py [--input ../shared/data/ml-1m] [--repeat 5] [--baseline REV] [--storage-version latest]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from revisions import checkout

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO.parent / "shared" / "data" / "ml-1m"


def run_once(input_dir: Path, workdir: Path, code: Path = REPO, extra: tuple[str, ...] = ()) -> dict[str, float]:
    """One `etl build` of the code in ``code`` in a child process; its wall time, recorded build time, CPU
    time, peak RSS and sizes."""
    warehouse = workdir / "warehouse.duckdb"
    command = [
        sys.executable,
        "-m",
        "etl",
        "build",
        "--input",
        str(input_dir),
        "--warehouse",
        str(warehouse),
        "--quiet",
        *extra,
    ]
    environment = os.environ | {"PYTHONPATH": str(code)}  # ahead of the installed (editable) package
    with (workdir / "stderr.txt").open("w+") as stderr:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=code, env=environment, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        if child.returncode != 0:
            stderr.seek(0)
            sys.exit(f"etl build failed (exit {child.returncode}):\n{stderr.read()}")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        ((seconds, layout, n_ratings),) = con.sql("SELECT seconds, layout, n_ratings FROM etl_runs").fetchall()
    return {
        "wall": wall,
        "etl": seconds,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mib": usage.ru_maxrss / 1024,  # Linux reports KiB
        "warehouse_mib": warehouse.stat().st_size / 2**20,
        "layout": layout,
        "ratings": n_ratings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help=f"MovieLens folder (default {DEFAULT_INPUT})")
    parser.add_argument("--repeat", type=int, default=5, help="how many runs (default 5)")
    parser.add_argument("--baseline", metavar="REV", help="also time this git revision's ETL, alternating runs")
    parser.add_argument(
        "--storage-version",
        help="this checkout's etl build --storage-version (the baseline's own default stays): the file format's cost",
    )
    args = parser.parse_args()
    extra = ("--storage-version", args.storage_version) if args.storage_version else ()
    input_dir = args.input.resolve()
    if not input_dir.is_dir():
        sys.exit(f"{input_dir}: no such folder (real MovieLens copies live in ../shared/data)")

    print(f"input      {input_dir}")
    print(
        f"machine    {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"DuckDB {duckdb.__version__}"
    )
    with contextlib.ExitStack() as stack:
        codes = {"this checkout": REPO}
        if args.baseline:
            codes[args.baseline] = stack.enter_context(checkout(args.baseline))
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in codes}
        print(
            f"\n{'run':>3}  {'code':<14}  {'wall s':>7}  {'ETL s':>7}  {'CPU s':>7}  {'peak RSS MiB':>12}  "
            f"{'warehouse MiB':>13}"
        )
        for n in range(1, args.repeat + 1):
            for name, code in codes.items():
                with tempfile.TemporaryDirectory(prefix="etl-bench-") as workdir:
                    run = run_once(input_dir, Path(workdir), code, extra if code == REPO else ())
                runs[name].append(run)
                print(
                    f"{n:>3}  {name:<14}  {run['wall']:>7.2f}  {run['etl']:>7.2f}  {run['cpu']:>7.2f}  "
                    f"{run['rss_mib']:>12.0f}  {run['warehouse_mib']:>13.1f}"
                )

    for name, done in runs.items():
        walls = [run["wall"] for run in done]
        print(f"\n{name}: {done[0]['layout']}, {done[0]['ratings']:,} ratings, {len(done)} runs")
        print(f"median wall time        {statistics.median(walls):.2f} s  (min {min(walls):.2f}, max {max(walls):.2f})")
        print(
            f"median ETL build time   {statistics.median(run['etl'] for run in done):.2f} s  (as recorded in etl_runs)"
        )
        print(f"median CPU time         {statistics.median(run['cpu'] for run in done):.2f} s  (user + system)")
        print(f"max peak RSS            {max(run['rss_mib'] for run in done):.0f} MiB")
    if args.baseline:
        print()
        for measure in ("wall", "cpu"):
            medians = {name: statistics.median(run[measure] for run in done) for name, done in runs.items()}
            ratio = medians[args.baseline] / medians["this checkout"]
            print(f"{measure} time, {args.baseline} / this checkout: {ratio:.2f}x")


if __name__ == "__main__":
    main()
