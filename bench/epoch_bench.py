"""Epoch benchmark: the default model's training epochs on a warehouse (the 32 M-rating synthetic set of
bench/scale_bench.py), without the validation, scoring and top-N passes around them.

Each run is a child process that reads the training matrix as `trainer run` does (cached), then times
``--epochs`` epochs of the loop's steps: the first epoch also builds each batch's transpose, the later ones
reuse them; the optimiser's updates are timed apart from the forward and backward passes. With ``--baseline
REV`` the same runs of revision REV's code alternate with this checkout's, and the medians are compared as a
ratio: on a shared machine both move alike. The training RMSE of every epoch is printed too: code that leaves
the arithmetic alone gives the same figures to the last digit.

    etl generate --output D --ratings 32000000 --movies 87585 --seed 0 && etl build --input D --warehouse D.duckdb
    python bench/epoch_bench.py --warehouse D.duckdb --baseline main
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from revisions import checkout

ROOT = Path(__file__).resolve().parents[1]


def child(warehouse: Path, epochs: int, threads: int) -> None:
    """Time ``epochs`` epochs of the default model in this process; print them as one JSON line."""
    import torch

    from trainer import notebook
    from trainer.config import TrainConfig
    from trainer.data import CachedRows, dataset_info, open_warehouse
    from trainer.models.base import build_model
    from trainer.optim import build_optimizer
    from trainer.predict import fit_biases
    from trainer.train import Step

    torch.set_num_threads(threads)
    config, fit_parts, device = TrainConfig(), ("train",), torch.device("cpu")
    con = open_warehouse(warehouse, 10.0)
    info = dataset_info(con)
    mean = fit_biases(con, config.split, fit_parts, info).mean
    torch.manual_seed(config.seed)
    model = build_model(config, info.n_users, info.n_movies, mean)
    optimizer = build_optimizer(model.parameters(), config)
    data = CachedRows(con, config, info, fit_parts, device, rows=model.rows, sparse=True)  # as a run holds it
    l2_scale = config.l2 / 2 / max(data.n_ratings, 1)
    reset = notebook.gradient_reset(optimizer, config)
    update = [0.0]  # the seconds of the optimiser's updates, apart from the forward and backward passes
    take_step = optimizer.step

    def timed_step(objective: Callable[[], Any]) -> None:
        objective()
        started = time.perf_counter()
        take_step(None)  # the update from the gradients the objective left
        update[0] += time.perf_counter() - started

    optimizer.step = timed_step  # type: ignore[method-assign,assignment]
    step = Step(model, model, optimizer, config, True, l2_scale, data.shard_weight, reset)
    seconds, updates, rmse = [], [], []
    for epoch in range(1, epochs + 1):  # the training loop's steps (trainer/train.py _train), nothing else
        started, update[0] = time.perf_counter(), 0.0
        model.train()
        squared, count = torch.zeros(()), 0
        for batch in data.batches(epoch):
            _, batch_error = step(batch)
            squared += batch_error.detach()
            count += batch.targets.numel()
        rmse.append((squared.item() / count) ** 0.5)
        seconds.append(time.perf_counter() - started)
        updates.append(update[0])
    con.close()
    print(json.dumps({"seconds": seconds, "update": updates, "rmse": rmse}))


def run(code: Path, warehouse: Path, epochs: int, threads: int) -> dict:
    """One child process running the trainer code in ``code``."""
    path = os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-W", "ignore", __file__, "--child", "--warehouse", str(warehouse)]
    command += ["--epochs", str(epochs), "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": path})
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True, help="a warehouse built by `etl build`")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each revision (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: what `trainer run` picks for it)")
    parser.add_argument("--baseline", default=None, help="a git revision to alternate with this checkout")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.warehouse, args.epochs, args.threads)
        return

    def rounds(codes: dict[str, Path]) -> dict[str, list[dict]]:
        runs: dict[str, list[dict]] = {name: [] for name in codes}
        for round_ in range(1, args.rounds + 1):
            for name, code in codes.items():
                result = run(code, args.warehouse, args.epochs, args.threads)
                runs[name].append(result)
                epochs = "  ".join(f"{s:.2f}" for s in result["seconds"])
                rmse = ", ".join(f"{r!r}" for r in result["rmse"])
                print(f"round {round_}  {name:<9}  epochs (s): {epochs}   train RMSE: {rmse}", flush=True)
        return runs

    print(f"{args.warehouse}: {args.epochs} epochs a run, {args.threads} thread(s), {args.rounds} round(s)")
    if args.baseline:
        with checkout(args.baseline) as tree:
            runs = rounds({"this": ROOT, "baseline": tree})
    else:
        runs = rounds({"this": ROOT})
    medians = {}
    for name, results in runs.items():
        first = statistics.median(r["seconds"][0] for r in results)
        rest = [s for r in results for s in r["seconds"][1:]]
        medians[name] = (first, statistics.median(rest) if rest else None)
        update = statistics.median(u for r in results for u in r["update"][1:] or r["update"])
        print(
            f"{name:<9}  first epoch (builds the batches' transposes): {first:.2f} s"
            + (f"; later epochs: median {medians[name][1]:.2f} s" if rest else "")
            + f", of which the optimiser's updates {update:.2f} s"
        )
    if args.baseline:
        (first, later), (base_first, base_later) = medians["this"], medians["baseline"]
        print(f"this / baseline: first epoch {first / base_first:.2f}", end="")
        print(f", later epochs {later / base_later:.2f}" if later and base_later else "")
        same = [r["rmse"] for r in runs["this"]] == [r["rmse"] for r in runs["baseline"]]
        print("train RMSE of every epoch: " + ("the same as the baseline's" if same else "DIFFERS from the baseline's"))


if __name__ == "__main__":
    main()
