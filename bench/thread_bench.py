"""Thread benchmark: torch's CPU thread settings against busy neighbours, on ml-100k u1 and ml-1m.

Rows are thread settings (`trainer run --threads 1`, `--threads 2`, and the default, `--threads 0`, which
chooses: trainer/threads.py); columns are 0, 1 and 2 busy neighbour processes. A neighbour is a child process
spinning a pure-Python arithmetic loop (one core's worth of work, no threads of its own, little memory
traffic), started before the column's runs and stopped after them. Each cell is the median training-loop time
(`runs.train_seconds`) of ``--repeat`` whole `trainer run` processes, the settings interleaved (each repeat
starting with the next one) so that the machine's drift moves them alike; the default's cell also says how many
threads it chose. The next row is the default's median over the best setting's, per column (acceptance: within
1.2x everywhere).

    python bench/thread_bench.py                           # make bench-threads: both data sets, 3 repeats
    python bench/thread_bench.py --datasets ml-100k        # u1 only (a third of the time)
    python bench/thread_bench.py --env OMP_WAIT_POLICY=    # OpenMP's own waiting (spinning a while), as before
    python bench/thread_bench.py --extra "--model i-autorec" --epochs 10

The runs train for a fixed number of epochs (--patience 0: no early stop, no learning-rate drop) and write no
top-N (--top-n 0). Other work on the machine (other people's tests, builds) is a neighbour too, that the
columns do not count: the last row says how many cores it kept busy in the second before and after each
column (trainer/threads.py's measure). Run the bench twice when a figure looks odd. `--env OMP_WAIT_POLICY=`
(a value OpenMP does not understand, so it keeps its own default) times the runs without the entry point's
OMP_WAIT_POLICY=PASSIVE.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from trainer import threads as machine

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
ETL, TRAINER = [sys.executable, "-m", "etl"], [sys.executable, "-m", "trainer"]
SPLITS = {"ml-100k": "u1", "ml-1m": "random"}
# About a second and 4 s of training on one idle thread: long enough to time, short enough to repeat.
EPOCHS = {"ml-100k": 200, "ml-1m": 50}
# One core's worth of work: pure-Python arithmetic, no threads, no memory traffic to speak of.
SPIN = "x = 0\nwhile True:\n    x = (x * 7 + 3) % 1000003\n"


def build(data_dir: Path, dataset: str, folder: Path) -> Path:
    warehouse = folder / f"{dataset}.duckdb"
    subprocess.run([*ETL, "build", "-q", "--input", str(data_dir / dataset), "--warehouse", str(warehouse)], check=True)
    return warehouse


def train(
    warehouse: Path, runs: Path, split: str, threads: int, epochs: int, extra: list[str], env: dict[str, str]
) -> tuple[float, int]:
    """One `trainer run` process: its training-loop seconds and the thread count it recorded."""
    command = [
        *TRAINER,
        "run",
        "--warehouse",
        str(warehouse),
        "--runs-dir",
        str(runs),
        "--split",
        split,
        "--epochs",
        str(epochs),
        "--patience",
        "0",
        "--top-n",
        "0",
        "--device",
        "cpu",
        "--threads",
        str(threads),
        *extra,
    ]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=os.environ | env)
    if done.returncode != 0:
        sys.exit(f"{shlex.join(command)} failed:\n{done.stderr}")
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        query = "SELECT train_seconds, config FROM runs ORDER BY finished_at DESC LIMIT 1"
        seconds, config = con.execute(query).fetchall()[0]
    finally:
        con.close()
    return seconds, json.loads(config)["threads"]


def background() -> float:
    """The cores other processes (not this bench's) keep busy, over a second while the bench is idle."""
    machine.mark()
    time.sleep(1.0)
    return machine.busy_elsewhere() or 0.0


def start_neighbours(count: int) -> list[subprocess.Popen[bytes]]:
    neighbours = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(count)]
    time.sleep(1.0)  # running, and past their start-up
    return neighbours


def stop(neighbours: list[subprocess.Popen[bytes]]) -> None:
    for neighbour in neighbours:
        neighbour.kill()
        neighbour.wait()


def label(threads: int) -> str:
    return "default (`--threads 0`)" if threads == 0 else f"`--threads {threads}`"


def table(
    dataset: str,
    cells: dict[tuple[int, int], list[tuple[float, int]]],
    settings: list[int],
    columns: list[int],
    others: dict[int, list[float]],
) -> tuple[str, list[float]]:
    """The Markdown table of one data set, and the default's ratio to the best setting per column."""
    head = "| " + dataset + " | " + " | ".join(f"{n} busy neighbour{'s' if n != 1 else ''}" for n in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    medians = {key: statistics.median(s for s, _ in runs) for key, runs in cells.items()}
    for threads in settings:
        row = []
        for n in columns:
            runs = cells[threads, n]
            text = f"{medians[threads, n]:.2f} s ({min(s for s, _ in runs):.2f}–{max(s for s, _ in runs):.2f})"
            if threads == 0:
                chosen = sorted({t for _, t in runs})
                text += f", chose {'/'.join(map(str, chosen))}"
            row.append(text)
        lines.append(f"| {label(threads)} | " + " | ".join(row) + " |")
    ratios = []
    if 0 in settings and len(settings) > 1:
        for n in columns:
            ratios.append(medians[0, n] / min(medians[t, n] for t in settings))
        lines.append("| default / best | " + " | ".join(f"**{r:.2f}x**" for r in ratios) + " |")
    loads = [" / ".join(f"{load:.1f}" for load in others[n]) for n in columns]
    lines.append("| other work, before / after (cores) | " + " | ".join(loads) + " |")
    return "\n".join(lines), ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=SHARED, help="The folder holding ml-100k and ml-1m.")
    parser.add_argument("--datasets", default="ml-100k,ml-1m", help="Comma-separated: ml-100k (split u1), ml-1m.")
    parser.add_argument("--threads", default="1,2,0", help="The settings, the rows (0: the default, chosen).")
    parser.add_argument("--neighbours", default="0,1,2", help="Busy neighbour processes, the columns.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per cell (medians are shown).")
    parser.add_argument("--epochs", type=int, help="Epochs per run, no early stop (default: ml-100k 200, ml-1m 50).")
    parser.add_argument("--extra", default="", help='More `trainer run` options, e.g. "--model i-autorec".')
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="For the runs only.")
    args = parser.parse_args()
    settings = [int(t) for t in args.threads.split(",")]
    columns = [int(n) for n in args.neighbours.split(",")]
    env = dict(item.split("=", 1) for item in args.env)
    extra = shlex.split(args.extra)
    print(
        f"{os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} usable; load average {os.getloadavg()[0]:.2f} "
        f"before the bench; medians of {args.repeat} runs' training-loop seconds",
        flush=True,
    )
    started = time.perf_counter()
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for dataset in args.datasets.split(","):
            warehouse = build(args.data_dir, dataset, folder)
            epochs = args.epochs or EPOCHS[dataset]
            cells: dict[tuple[int, int], list[tuple[float, int]]] = {(t, n): [] for t in settings for n in columns}
            others: dict[int, list[float]] = {}
            for n in columns:
                others[n] = [background()]
                neighbours = start_neighbours(n)
                try:
                    for repeat in range(args.repeat):
                        for threads in settings[repeat % len(settings) :] + settings[: repeat % len(settings)]:
                            result = train(warehouse, folder / "runs", SPLITS[dataset], threads, epochs, extra, env)
                            cells[threads, n].append(result)
                            print(
                                f"  {dataset} {label(threads)} {n} neighbours: {result[0]:.2f} s ({result[1]} threads)",
                                flush=True,
                            )
                finally:
                    stop(neighbours)
                others[n].append(background())
            text, ratios = table(f"{dataset} ({SPLITS[dataset]}, {epochs} epochs)", cells, settings, columns, others)
            verdicts += ratios
            print(f"\n{text}\n", flush=True)
    if verdicts:
        worst = max(verdicts)
        print(f"default / best: at most {worst:.2f}x ({'within' if worst <= 1.2 else 'NOT within'} 1.2x)")
    print(f"the bench took {(time.perf_counter() - started) / 60:.1f} minutes")


if __name__ == "__main__":
    main()
