"""`trainer bench`: the published protocols end to end, every model with its preset settings.

- ml-100k, split u1 (u1.base / u1.test), one split;
- ml-1m, split random (90/10), one warehouse per seed: the ETL's split seed and the model's seed.

Each (data set, seed) gets its own warehouse, built by the ETL into the bench folder; each model is
one ordinary `trainer run` on it (model selection on the validation slice, the test scored once). With
``refit``, each is then refitted (`trainer refit`: trained again on train + validation for the epochs it chose),
a row '<model> refit' of its own, and the blend ('blend refit') takes the refits.
The rows go into `bench_results` in the results warehouse, and a Markdown table is written.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from trainer.blend import BlendOptions, blend
from trainer.config import MachineSettings, TrainConfig, resolve
from trainer.errors import TrainerError
from trainer.models.registry import REGISTRY
from trainer.protocols import BENCH_MODELS, PARENTS, PROTOCOLS
from trainer.refit import RefitOptions, refit_config
from trainer.train import run
from warehouse.errors import WarehouseError
from warehouse.results import latest_summary, publish_bench


def bench(
    data_dir: Path,
    work_dir: Path,
    results_warehouse: Path,
    markdown: Path,
    *,
    models: tuple[str, ...] = BENCH_MODELS,
    datasets: tuple[str, ...] = tuple(PROTOCOLS),
    n_seeds: int | None = None,
    max_epochs: int | None = None,
    with_blend: bool = False,
    refit: bool = False,
    log: Callable[[str], None] = lambda message: None,
    before_run: Callable[[TrainConfig], object] = lambda config: None,
) -> list[dict[str, Any]]:
    """Run every model on every data set's protocol, with ``refit`` refit each (model '<model> refit'; a model
    that fine-tunes a parent, from the parent's refit, unless it kept the parent's weights), and with
    ``with_blend`` blend them on each seed (model 'blend', or 'blend refit' of the refits where there are
    any); returns the rows written to bench_results. ``before_run(config)`` is called before each training run:
    the command line sets the process's threads for it there (trainer/threads.py), as `trainer run` does."""
    if with_blend and len(models) < 2:
        raise TrainerError("--blend needs two or more --models to blend")
    unknown = [model for model in models if model not in REGISTRY]
    if unknown or not models:
        raise TrainerError(f"--models takes model names from {', '.join(REGISTRY)}, not {', '.join(unknown) or 'none'}")
    for name in datasets:
        if name not in PROTOCOLS:
            raise TrainerError(f"no benchmark protocol for data set {name!r}: choose from {', '.join(PROTOCOLS)}")
        if not (data_dir / name).is_dir():
            raise TrainerError(f"{data_dir / name}: no such folder (the MovieLens {name} files)")
    started = time.perf_counter()
    bench_id = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"
    used: set[int] = set()  # torch's threads in the runs: CPU timings depend on them (see docs/accuracy.md)
    rows: list[dict[str, Any]] = []
    work_dir.mkdir(parents=True, exist_ok=True)
    machine = MachineSettings(runs_dir=str(work_dir / "runs"))
    for name in datasets:
        protocol = PROTOCOLS[name]
        for seed in protocol.seeds[:n_seeds]:
            warehouse = work_dir / f"{name}-seed{seed}.duckdb"
            _build_warehouse(data_dir / name, warehouse, seed)
            trained: dict[str, dict[str, Any]] = {}  # this seed's rows, by model
            refits: dict[str, dict[str, Any]] = {}  # and its refits' rows, by the model refitted
            own_seconds = 0.0  # this seed's training, each run counted once
            for model in [*(PARENTS[m] for m in models if m in PARENTS), *models]:  # parents first
                if model in trained:
                    continue
                parent = trained.get(PARENTS.get(model, ""))
                config = resolve(
                    {
                        **protocol.settings.get(model, {}),
                        "model": model,
                        "warehouse": str(warehouse),
                        "split": protocol.split,
                        "seed": seed,
                        "runs_dir": machine.runs_dir,
                        "top_n": 0,
                        "init_from": parent["run_id"] if parent else None,
                    }
                )
                if max_epochs:
                    config = config.replaced(epochs=min(config.epochs, max_epochs))
                before_run(config)
                summary = run(config)
                threads = torch.get_num_threads()
                used.add(threads)
                m = summary.metrics
                own_seconds += summary.train_seconds
                # a fine-tuning run's train time includes its parent's training
                seconds = summary.train_seconds + (parent["train_seconds"] if parent else 0.0)
                trained[model] = row = {
                    "bench_id": bench_id,
                    "finished_at": datetime.now(UTC).replace(tzinfo=None),
                    "model": model,
                    "dataset": name,
                    "protocol": protocol.description,
                    "split": protocol.split,
                    "seed": seed,
                    "run_id": summary.run_id,
                    "test_rmse": m["rmse"],
                    "test_mae": m["mae"],
                    "validation_rmse": summary.validation_rmse,
                    "best_epoch": summary.best_epoch,
                    **_ranking_columns(summary.ranking),
                    "epochs_run": len(summary.history),
                    "train_seconds": seconds,
                    "device": summary.device + (_threads(threads) if summary.device.startswith("cpu") else ""),
                    "config": json.dumps(config.to_dict(), sort_keys=True),
                }
                rows.append(row)
                log(
                    f"{name} seed {seed} {model}: {_figures(m, summary.ranking)}, best epoch {summary.best_epoch}/"
                    f"{len(summary.history)}, {seconds:.1f} s"
                )
                # a fine-tuned model's refit fine-tunes its parent's refit; one that kept its parent's weights has none
                start = refits.get(PARENTS.get(model, ""))
                if refit and (not parent or (start and summary.best_epoch)):
                    settings = refit_config(
                        RefitOptions(summary.run_id, warehouse, machine, init_from=start["run_id"] if start else None)
                    )
                    before_run(settings)
                    again = run(settings)
                    own_seconds += again.train_seconds
                    # its train time: its own, the runs' that chose its epochs, and its parent's refit's
                    before = start["train_seconds"] - parent["train_seconds"] if start and parent else 0.0
                    refits[model] = row | {
                        "finished_at": datetime.now(UTC).replace(tzinfo=None),
                        "model": f"{model} refit",
                        "run_id": again.run_id,
                        "test_rmse": again.metrics["rmse"],
                        "test_mae": again.metrics["mae"],
                        **_ranking_columns(again.ranking),
                        "best_epoch": settings.epochs,
                        "epochs_run": len(again.history),
                        "train_seconds": seconds + before + again.train_seconds,
                        "config": json.dumps(settings.to_dict(), sort_keys=True),
                    }
                    rows.append(refits[model])
                    figures = _figures(again.metrics, again.ranking)
                    log(
                        f"{name} seed {seed} {model} refit: {figures}, {settings.epochs} epochs on train + "
                        f"validation, {refits[model]['train_seconds']:.1f} s"
                    )
            if with_blend:
                members = [refits.get(model, trained[model]) for model in models]
                blend_name = "blend refit" if refits else "blend"
                options = BlendOptions(tuple(r["run_id"] for r in members), warehouse, top_n=0, machine=machine)
                mixed = blend(options)
                # its train time: its members' and their parents' (fitting the weights takes a fraction of a second)
                rows.append(
                    members[-1]
                    | {
                        "finished_at": datetime.now(UTC).replace(tzinfo=None),
                        "model": blend_name,
                        "run_id": mixed.run_id,
                        "test_rmse": mixed.metrics["rmse"],
                        "test_mae": mixed.metrics["mae"],
                        "validation_rmse": mixed.validation_rmse,
                        "best_epoch": None,
                        "epochs_run": None,
                        **_ranking_columns(mixed.ranking),
                        "train_seconds": own_seconds,
                        "config": json.dumps({"members": list(models), **mixed.blender.to_dict()}),
                    }
                )
                log(
                    f"{name} seed {seed} {blend_name} of {', '.join(models)}: test RMSE {mixed.metrics['rmse']:.4f}, "
                    f"MAE {mixed.metrics['mae']:.4f}"
                )
    # Kept beside the runs first: a warehouse that cannot be written now must not cost the bench's hours.
    kept = work_dir / f"bench-{bench_id}.json"
    kept.write_text(json.dumps(rows, indent=1, default=str))
    try:
        publish_bench(rows, results_warehouse)
    except WarehouseError as error:
        raise TrainerError(
            f"could not write the bench results into {results_warehouse}: {error}\nThey are kept in {kept}."
        ) from error
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(markdown_table(latest_summary(results_warehouse)))
    minutes = (time.perf_counter() - started) / 60
    counts = "/".join(map(str, sorted(used))) or "no"
    log(
        f"the bench took {minutes:.1f} minutes in all (ETL, training, scoring and blends, {counts} "
        f"thread{'s' if counts != '1' else ''})"
    )
    return rows


def _ranking_columns(ranking: dict[str, dict[str, float]]) -> dict[str, float | None]:
    """A bench row's ranking figures (bench_results), from a run's ranking metrics by held-out part."""
    test, validation = ranking.get("test", {}), ranking.get("validation", {})
    return {
        "test_ndcg_10": test.get("ndcg@10"),
        "test_recall_10": test.get("recall@10"),
        "test_coverage_10": test.get("coverage@10"),
        "validation_ndcg_10": validation.get("ndcg@10"),
    }


def _figures(metrics: dict[str, float | None], ranking: dict[str, dict[str, float]]) -> str:
    """A run's test figures for the bench's log: RMSE and MAE where it predicts ratings, and nDCG@10."""
    said = [f"test RMSE {metrics['rmse']:.4f}, MAE {metrics['mae']:.4f}"] if metrics["rmse"] is not None else []
    if "ndcg@10" in ranking.get("test", {}):
        said.append(f"nDCG@10 {ranking['test']['ndcg@10']:.4f}")
    return ", ".join(said)


def _threads(count: int) -> str:
    return f", {count} thread{'s' if count > 1 else ''}"


def _build_warehouse(data: Path, warehouse: Path, split_seed: int) -> None:
    """Run the ETL as its own command: the trainer never imports the ETL's code (docs/development.md)."""
    command = [
        sys.executable,
        "-m",
        "etl",
        "build",
        "--quiet",
        "--input",
        str(data),
        "--warehouse",
        str(warehouse),
        "--seed",
        str(split_seed),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise TrainerError(f"the ETL failed on {data}: {done.stderr.strip()}")


def markdown_table(summary: list[dict[str, Any]]) -> str:
    def figure(s: dict[str, Any], key: str) -> str:
        if s[key] is None:  # a model that ranks only has no RMSE; a blend no ranking
            return "–"
        return f"{s[key]:.4f} ± {s[key + '_std']:.4f}" if s["n_seeds"] > 1 else f"{s[key]:.4f}"

    lines = [
        "| model | data set | protocol | RMSE | MAE | nDCG@10 | top-10 coverage | train time (per seed) | device | "
        "regenerate with |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        seeds = f", {s['n_seeds']} seeds" if s["n_seeds"] > 1 else ""
        coverage = "–" if s["coverage_10"] is None else f"{s['coverage_10']:,.0f}"
        lines.append(
            f"| {s['model']} | {s['dataset']} | {s['protocol']}{seeds} | {figure(s, 'rmse')} | "
            f"{figure(s, 'mae')} | {figure(s, 'ndcg_10')} | {coverage} | {s['train_seconds']:.1f} s | {s['device']} | "
            f"`{_command(s)}` |"
        )
    return "\n".join(lines) + "\n"


def _command(summary: dict[str, Any]) -> str:
    """The command that regenerates a row of the table."""
    model, refit = summary["model"].removesuffix(" refit"), summary["model"].endswith(" refit")
    tail = " --refit" if refit else ""
    if model == "blend":
        members = ",".join(json.loads(summary["config"])["members"])
        return f"trainer bench --datasets {summary['dataset']} --models {members} --blend{tail}"
    return f"trainer bench --datasets {summary['dataset']} --models {model}{tail}"
