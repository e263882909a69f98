"""Training benchmark: the default, the notebook preset and the original notebook's loop side by side on
ml-100k u1, then ml-1m.

Each run is a whole `trainer run` process, timed from outside (start-up, imports, reading, training,
evaluating, writing predictions) and from inside (the training loop alone, as the run records it). The
original loop (bench/original_loop.py, the notebook's code path without this project's) times itself.
Figures are compared as ratios measured in this one run, because these machines are shared and noisy.

    python bench/train_bench.py                      # everything (the notebook preset takes minutes)
    python bench/train_bench.py --skip-notebook      # the default runs only (neither notebook loop)
    python bench/train_bench.py --device cuda        # the GPU path, on a CUDA machine
    python bench/train_bench.py --data-dir DIR       # ml-100k and ml-1m from DIR, not ../shared/data
    python bench/train_bench.py --baseline REV       # the default on u1 and ml-1m, alternating with revision REV's
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from revisions import checkout

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
# The commands as modules of this interpreter: the same with the project installed in a venv, or only on
# PYTHONPATH (bench/gpu_check.sh on a machine without a package index).
ETL, TRAINER = [sys.executable, "-m", "etl"], [sys.executable, "-m", "trainer"]


def build(data_dir: Path, dataset: str, folder: Path) -> Path:
    warehouse = folder / f"{dataset}.duckdb"
    subprocess.run([*ETL, "build", "-q", "--input", str(data_dir / dataset), "--warehouse", str(warehouse)], check=True)
    return warehouse


def train(warehouse: Path, runs: Path, *args: str, code: Path = ROOT) -> dict:
    """One `trainer run` process of the code in ``code``: its wall time, peak RSS, and the row it wrote to `runs`."""
    command = [*TRAINER, "run", "--warehouse", str(warehouse), "--runs-dir", str(runs), *args]
    # ``code`` ahead of the installed (editable) package, and of whatever else PYTHONPATH holds (gpu_check.sh's
    # bundled packages on a machine without a package index).
    path = os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")]))
    environment = os.environ | {"PYTHONPATH": path}
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stderr = process.stderr.read() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(command)} failed:\n{stderr}")
    con = duckdb.connect(str(warehouse), read_only=True)
    # The run just written, whether or not its audit let it into the serving views.
    row = con.execute(
        "SELECT train_seconds, test_rmse, test_user_rmse, test_mae, device FROM runs ORDER BY finished_at DESC LIMIT 1"
    ).fetchall()[0]
    con.close()
    return {
        "args": " ".join(args),
        "process_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "train_s": row[0],
        "rmse": row[1],
        "user_rmse": row[2],
        "mae": row[3],
        "device": row[4],
    }


def original_loop(data_dir: Path, threads: int) -> dict:
    """bench/original_loop.py on ml-100k u1, in a process of its own (with ``threads`` torch threads when not 0)."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "original_loop.py"), str(data_dir / "ml-100k")],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        sys.exit(f"bench/original_loop.py failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def show(label: str, r: dict) -> None:
    print(
        f"{label:<34} train {r['train_s']:8.2f} s  process {r['process_s']:7.2f} s  "
        f"peak {r['peak_rss_mb']:6.0f} MB  RMSE {r['rmse']:.4f}  per-user RMSE {r['user_rmse']:.4f}  "
        f"MAE {r['mae']:.4f}  [{r['device']}]",
        flush=True,
    )


def compare(revision: str, warehouse: Path, folder: Path, args: list[str], repeat: int) -> None:
    """The default on ``warehouse`` (with ``args``), this checkout's runs alternating with ``revision``'s, each on
    its own copy of the warehouse; the medians and their ratios."""
    with checkout(revision) as tree:
        codes = {"this checkout": ROOT, revision: tree}
        copies = {name: folder / f"{warehouse.stem}-{i}.duckdb" for i, name in enumerate(codes)}
        runs: dict[str, list[dict]] = {name: [] for name in codes}
        for copy in copies.values():
            copy.write_bytes(warehouse.read_bytes())
        for _ in range(repeat):
            for name, code in codes.items():
                runs[name].append(train(copies[name], folder / "runs", *args, code=code))
                show(name, runs[name][-1])
    medians = {
        name: {key: statistics.median(r[key] for r in done) for key in ("train_s", "process_s")}
        for name, done in runs.items()
    }
    for key, label in (("train_s", "training loop"), ("process_s", "whole process")):
        ratio = medians["this checkout"][key] / medians[revision][key]
        ours, theirs = medians["this checkout"][key], medians[revision][key]
        print(f"{label}: this checkout {ours:.2f} s, {revision} {theirs:.2f} s (medians of {repeat}): {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--repeat",
        type=int,
        default=7,
        help="Runs of each default configuration (medians are quoted); with the notebook loops, a "
        "third of them run between and after those.",
    )
    parser.add_argument(
        "--skip-notebook", action="store_true", help="Do not run the (slow) notebook preset, nor the original loop."
    )
    parser.add_argument("--skip-ml1m", action="store_true", help="Do not run ml-1m.")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda.")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for every run, notebook and default alike (default 0: as trainer run chooses, "
        "trainer/threads.py; the original loop then keeps torch's default).",
    )
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="Only time the default on u1 (and ml-1m, unless --skip-ml1m), alternating with the code of git "
        "revision REV, and print the ratios.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=SHARED,
        help="The folder holding ml-100k and ml-1m (default: ../shared/data beside the repository).",
    )
    args = parser.parse_args()
    if not (args.data_dir / "ml-100k").is_dir():
        sys.exit(f"{args.data_dir / 'ml-100k'} is missing: the benchmark needs the MovieLens copies (--data-dir)")

    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ml100k = build(args.data_dir, "ml-100k", folder)
        device = ["--device", args.device, "--threads", str(args.threads)]
        print(
            f"ml-100k split u1 (943 users x 1,682 movies, 80,000 training ratings), 200 epochs, "
            f"{args.threads or 'default'} CPU thread(s)",
            flush=True,
        )

        if args.baseline:
            compare(args.baseline, ml100k, folder, ["--split", "u1", *device], args.repeat)
            if not args.skip_ml1m and (args.data_dir / "ml-1m").is_dir():
                print("\nml-1m split random (6,040 users x 3,650 movies), 200 epochs", flush=True)
                compare(args.baseline, build(args.data_dir, "ml-1m", folder), folder, device, args.repeat)
            return

        def run_defaults(count: int) -> list[dict]:
            runs = [train(ml100k, folder / "runs", "--split", "u1", *device) for _ in range(count)]
            for r in runs:
                show("default (seed autoencoder)", r)
            return runs

        # The machine's speed drifts over the minutes the notebook loops take: the default's runs are spread
        # before, between and after them, so that the medians span the same stretch of time.
        if args.skip_notebook:
            defaults = run_defaults(args.repeat)
        else:
            defaults = run_defaults(args.repeat - 2 * (args.repeat // 3))
            notebook = train(ml100k, folder / "runs", "--split", "u1", "--model", "notebook", *device)
            show("notebook preset (the original)", notebook)
            figures["ml-100k notebook"] = notebook
            defaults += run_defaults(args.repeat // 3)
            original = original_loop(args.data_dir, args.threads)
            print(
                f"{'original notebook loop':<34} train {original['train_s']:8.2f} s  {'':38}"
                f"RMSE {original['rmse']:.4f}  "
                f"per-user RMSE {original['user_rmse']:.4f}  (bench/original_loop.py)",
                flush=True,
            )
            figures["ml-100k original loop"] = original
            defaults += run_defaults(args.repeat // 3)
        default = {
            key: statistics.median([d[key] for d in defaults])
            for key in ("train_s", "process_s", "peak_rss_mb", "rmse", "user_rmse", "mae")
        }
        figures["ml-100k default (median)"] = default
        print(
            f"default, median of {len(defaults)}: training {default['train_s']:.2f} s, "
            f"process {default['process_s']:.2f} s"
        )
        if not args.skip_notebook:
            for name, reference in (("the notebook preset's", notebook), ("the original notebook's", original)):
                print(f"\nagainst {name} training loop ({reference['train_s']:.1f} s):")
                print(
                    f"  speed-up, default training loop: {reference['train_s'] / default['train_s']:6.1f}x "
                    "(target 100x)"
                )
                print(
                    f"  speed-up, whole default process: {reference['train_s'] / default['process_s']:6.1f}x "
                    "(target 30x)"
                )
                print(
                    f"  accuracy, default minus it: RMSE {default['rmse'] - reference['rmse']:+.4f}, per-user RMSE "
                    f"{default['user_rmse'] - reference['user_rmse']:+.4f} (negative is better)"
                )
            print(
                f"(against the original's documented 120 s: training {120 / default['train_s']:.1f}x, "
                f"whole process {120 / default['process_s']:.1f}x)"
            )

        if not args.skip_ml1m and (args.data_dir / "ml-1m").is_dir():
            ml1m = build(args.data_dir, "ml-1m", folder)
            print("\nml-1m split random (6,040 users x 3,650 movies), 200 epochs", flush=True)
            r = train(ml1m, folder / "runs", *device)
            show("default (seed autoencoder)", r)
            figures["ml-1m default"] = r
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
