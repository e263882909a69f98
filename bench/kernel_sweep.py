"""A settings sweep of one model on one warehouse, chosen on the validation slice: each setting trains once, in
this one process (no start-up per run), and prints its selected epoch, validation RMSE and train time, a line
each as it finishes, then the settings ordered by validation RMSE. Test RMSE is printed for the record only;
nothing here is chosen on it.

    python bench/kernel_sweep.py --warehouse W                       # kernel-ae's grid below, on the CPU
    python bench/kernel_sweep.py --warehouse W --device cuda --budget-seconds 200
    python bench/kernel_sweep.py --warehouse W --set hidden=8,8 --set epochs=2   # every setting, smaller
    python bench/kernel_sweep.py --warehouse W --grid '[{}, {"kernel_l2": 0.03}, {"hidden": [1000, 1000]}]'

The warehouse is one `etl build`; pick its split with --split (default random). bench/gpu_check.sh's
sweep step runs it on a GPU, where a kernel-ae run takes seconds rather than minutes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

from trainer.config import resolve
from trainer.threads import configure, step_work
from trainer.train import run

# kernel-ae's preset first, then one change at a time around it: the penalties (Sparse FC's own included), the
# width, and the L-BFGS iterations per epoch (the unit that patience and the selected epoch count in).
GRID: list[dict[str, Any]] = [
    {},
    {"l2": 90.0},
    {"l2": 150.0},
    {"kernel_l2": 0.005},
    {"kernel_l2": 0.02},
    {"l2": 60.0, "kernel_l2": 0.013},
    {"lbfgs_iterations": 20, "patience": 3},
    {"hidden": (700, 700)},
    {"hidden": (1000, 1000), "l2": 150.0},
]


def parse_value(text: str) -> Any:
    """A --set value as the config field wants it: true or false, a comma list of ints, an int, a float, or the
    text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "," in text:
        return tuple(int(part) for part in text.split(","))
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", required=True, help="The warehouse to train on (one `etl build`).")
    parser.add_argument("--model", default="kernel-ae", help="The preset every setting starts from.")
    parser.add_argument("--split", default="random", help="The split to train and validate on.")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda.")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: as trainer run chooses).")
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=float("inf"),
        help="Start no further setting once this many seconds have passed.",
    )
    parser.add_argument(
        "--grid",
        type=json.loads,
        default=GRID,
        help="The settings: a JSON list of objects of changes (default: GRID above).",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="Set a field in every setting, over the grid's (e.g. hidden=8,8); repeatable",
    )
    args = parser.parse_args()
    common: dict[str, Any] = {
        "warehouse": args.warehouse,
        "model": args.model,
        "split": args.split,
        "device": args.device,
        "top_n": 0,
        "publish_anyway": True,
    }
    overrides = {name: parse_value(value) for name, _, value in (item.partition("=") for item in args.set)}
    if any(change.get("validation", True) is False for change in [overrides, *args.grid]):
        parser.error("every setting is chosen on the validation slice: validation cannot be turned off")

    started = time.perf_counter()
    rows: list[tuple[float, str]] = []
    with tempfile.TemporaryDirectory() as runs_dir:
        for change in args.grid:
            if time.perf_counter() - started > args.budget_seconds:
                print(f"budget of {args.budget_seconds:.0f} s spent: {len(args.grid) - len(rows)} setting(s) not run")
                break
            change = {key: tuple(value) if isinstance(value, list) else value for key, value in change.items()}
            config = resolve({**common, "runs_dir": runs_dir, **change, **overrides})
            configure(args.threads, step_work(config))  # this script is the process's command line
            summary = run(config)
            label = " ".join(f"{key}={value}" for key, value in change.items()) or "preset"
            assert summary.validation_rmse is not None  # every setting holds the validation slice out
            rows.append((summary.validation_rmse, label))
            print(
                f"{label:<40} epoch {summary.best_epoch!s:>4}  validation {summary.validation_rmse:.4f}  "
                f"test {summary.metrics['rmse']:.4f}  train {summary.train_seconds:.1f} s",
                flush=True,
            )
    print("\nby validation RMSE:")
    for validation, label in sorted(rows):
        print(f"  {validation:.4f}  {label}")


if __name__ == "__main__":
    main()
