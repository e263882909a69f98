"""`trainer report`: PNG charts from the warehouse, for people rather than SQL.

- a run's learning curve (train and validation RMSE per epoch, from epoch_metrics), with the epoch
  model selection chose;
- the models compared (from the latest `trainer bench` in bench_summary), next to published figures.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
from matplotlib.figure import Figure

from trainer.errors import TrainerError
from warehouse.connect import connect
from warehouse.results import latest_summary

# Published RMSE on the same protocols (anchors: docs/accuracy.md), drawn as reference lines.
PUBLISHED = {
    "ml-100k": {"GLocal-K (epoch chosen on test)": 0.8889, "GC-MC": 0.905},
    "ml-1m": {"GLocal-K (epoch chosen on test)": 0.8227, "I-AutoRec (paper)": 0.831, "BiasedMF (AutoRec paper)": 0.845},
}


def report(run_id: str, warehouse: Path, out_dir: Path, bench_warehouse: Path | None = None) -> list[Path]:
    """Write the run's learning curve, and the bench comparison when there is one; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [learning_curve(run_id, warehouse, out_dir / f"learning-curve-{run_id}.png")]
    comparison = model_comparison(bench_warehouse or warehouse, out_dir / "model-comparison.png")
    if comparison:
        written.append(comparison)
    return written


def _read(warehouse: Path, query: str, params: list | None = None) -> list[tuple]:
    con = connect(warehouse, read_only=True, lock_wait_seconds=10)
    try:
        return con.execute(query, params or []).fetchall()
    except duckdb.CatalogException:
        return []  # the table is not there: nothing of that kind has been written yet
    finally:
        con.close()


def learning_curve(run_id: str, warehouse: Path, path: Path) -> Path:
    run = _read(
        warehouse, "SELECT model, dataset_name, split, best_epoch, test_rmse FROM runs WHERE run_id = ?", [run_id]
    )
    if not run:
        raise TrainerError(f"{warehouse} has no run {run_id!r}: SELECT run_id FROM run_metrics lists them")
    model, dataset, split, best_epoch, test_rmse = run[0]
    epochs = _read(
        warehouse,
        "SELECT epoch, train_rmse, validation_rmse FROM epoch_metrics WHERE run_id = ? ORDER BY epoch",
        [run_id],
    )
    if not epochs:
        raise TrainerError(
            f"run {run_id} has no learning curve in epoch_metrics: a scoring run (trainer score) "
            "or a blend trains nothing; draw its training runs' (parent_run_id, members)"
        )
    # A Figure of its own rather than pyplot's: drawn to files by Agg, with no process-wide backend to choose
    # and no display, the same output on every machine.
    figure = Figure(figsize=(7, 4.2), dpi=100)
    axes = figure.subplots()
    axes.plot([e[0] for e in epochs], [e[1] for e in epochs], label="train RMSE", color="tab:blue")
    scored = [(e[0], e[2]) for e in epochs if e[2] is not None]
    if scored:
        axes.plot(*zip(*scored), label="validation RMSE", color="tab:orange", marker="." if len(scored) < 60 else None)
    if best_epoch:
        axes.axvline(best_epoch, color="grey", linestyle="--", label=f"selected epoch {best_epoch} (on validation)")
    values = [e[1] for e in epochs] + [rmse for _, rmse in scored]
    low = min(values)
    axes.set_ylim(low - 0.02, min(max(values), low + 0.6) + 0.02)  # the first epochs' large errors cut off
    axes.set(
        xlabel="epoch", ylabel="RMSE (stars)", title=f"{model} on {dataset} split {split}: test RMSE {test_rmse:.4f}"
    )
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    return path


def model_comparison(warehouse: Path, path: Path) -> Path | None:
    """Bars of each model's latest bench figures, mean test RMSE (error bars: std over seeds), per data set."""
    if not _read(warehouse, "SELECT 1 FROM bench_results LIMIT 1"):
        return None
    rows = [
        (s["dataset"], s["protocol"], s["model"], s["rmse"], s["rmse_std"], s["n_seeds"])
        for s in reversed(latest_summary(warehouse))
        if s["rmse"] is not None  # a model that only ranks has no RMSE to chart
    ]  # best at the top of each chart
    datasets = sorted({r[0] for r in rows})
    figure = Figure(figsize=(6 * len(datasets), 3.8), dpi=100)
    panels = figure.subplots(1, len(datasets), squeeze=False)
    for axes, dataset in zip(panels[0], datasets):
        mine = [r for r in rows if r[0] == dataset]
        axes.barh([r[2] for r in mine], [r[3] for r in mine], xerr=[r[4] for r in mine], color="tab:blue", capsize=3)
        for i, r in enumerate(mine):
            axes.text(r[3] + r[4] + 0.003, i, f"{r[3]:.4f}", va="center", fontsize=8)
        for (name, rmse), style in zip(PUBLISHED.get(dataset, {}).items(), (":", "--", "-.")):
            axes.axvline(rmse, color="tab:red", linestyle=style, label=f"{name} {rmse}")
        low = min([r[3] for r in mine] + list(PUBLISHED.get(dataset, {}).values()))
        axes.set_xlim(low - 0.05, max(r[3] for r in mine) + 0.06)
        seeds = f", {mine[0][5]} seeds" if mine[0][5] > 1 else ""
        axes.set(xlabel="test RMSE (lower is better)", title=f"{dataset}, {mine[0][1]}{seeds}")
        axes.legend(fontsize=7, loc="upper right")
        axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return path
