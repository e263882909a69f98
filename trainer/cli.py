"""`trainer`: the command line. Commands parse and check their options, then call trainer.train."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from trainer.config import PRESETS, TrainConfig, resolve
from trainer.errors import TrainerError
from trainer.protocols import BENCH_MODELS, PROTOCOLS
from warehouse import results
from warehouse.errors import WarehouseError
from warehouse.version import print_version

app = typer.Typer(
    help="Train autoencoders on the warehouse's rating matrices and write predictions back for analysts.",
    no_args_is_help=True,
    add_completion=False,
)
DEFAULTS = TrainConfig()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=print_version("trainer"), is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train autoencoders on the warehouse's rating matrices and write predictions back for analysts."""


def _fail(error: Exception) -> None:
    typer.echo(f"trainer: error: {error}", err=True)
    raise typer.Exit(1)


@app.command("run")
def run_command(
    warehouse: Annotated[Optional[Path], typer.Option(envvar="WAREHOUSE", help=f"The DuckDB warehouse built by `make etl`; it is only read until the results are written. Default: {DEFAULTS.warehouse}.", show_default=False)] = None,
    features: Annotated[Optional[Path], typer.Option(help="Read the rating matrices from this folder of Parquet files, written by `etl export`, instead of the warehouse (the results are still written into --warehouse when it exists, else kept in the run folder).", show_default=False)] = None,
    split: Annotated[Optional[str], typer.Option(help=f"The split to train and test on, by name, as listed in the warehouse's `splits` table (random, temporal, and u1..u5 for ml-100k). Default: {DEFAULTS.split}.", show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option(help=f"The model preset: {', '.join(PRESETS)}. 'autoencoder' is the seed design tuned for batched training; 'notebook' reproduces the original notebook exactly (one user per step, its optimiser and quirks); 'i-autorec' is the item-based autoencoder of Sedhain et al. 2015; 'global-mean', 'biases' (damped user and movie biases) and 'mf' (biased matrix factorisation) are baselines. Each preset carries its chosen settings; options override them. Default: {DEFAULTS.model}.", show_default=False)] = None,
    epochs: Annotated[Optional[int], typer.Option(help=f"How many passes over the training users. Default: {DEFAULTS.epochs}.", show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option(help=f"Rows per optimiser step: users, or movies for i-autorec. Default: {DEFAULTS.batch_size}, or the model preset's.", show_default=False)] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help=f"The optimiser's learning rate. Default: {DEFAULTS.learning_rate}.", show_default=False)] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help=f"L2 weight decay. Default: {DEFAULTS.weight_decay}.", show_default=False)] = None,
    l2: Annotated[Optional[float], typer.Option(help=f"L2 penalty on the model's weights, as the lambda of a sum-of-squared-errors objective (I-AutoRec's units), whatever the batch size. Default: {DEFAULTS.l2}, or the model preset's.", show_default=False)] = None,
    hidden: Annotated[Optional[str], typer.Option(help="Hidden layer widths, comma-separated (e.g. 500 or 20,10,20); for mf, the number of factors. Default: the model preset's.", show_default=False)] = None,
    patience: Annotated[Optional[int], typer.Option(help="Stop when validation RMSE has not improved for this many epochs (0: train every epoch). Default: the model preset's.", show_default=False)] = None,
    lr_drops: Annotated[Optional[int], typer.Option(help="Before stopping early, divide the learning rate by 10 this many times, each time validation RMSE has not improved for --patience epochs. Default: the model preset's.", show_default=False)] = None,
    select_best: Annotated[Optional[bool], typer.Option("--select-best/--last-epoch", help="Score the test set with the weights of the epoch that did best on the validation slice (default), or with the last epoch's.", show_default=False)] = None,
    eval_every: Annotated[Optional[int], typer.Option(help="Epochs between validation scores (and chances to select an epoch). Default: the model preset's.", show_default=False)] = None,
    optimizer: Annotated[Optional[str], typer.Option(help=f"rmsprop, adam or sgd. Default: {DEFAULTS.optimizer}.", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help=f"Seeds the weights and the order of users: the same seed on the same data gives the same run on a CPU. Default: {DEFAULTS.seed}.", show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option(help="auto (a CUDA GPU when there is one, else the CPU), cpu or cuda. Default: auto.", show_default=False)] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch's arithmetic; 0 keeps torch's default, one per core. On a machine shared with other work, 1 is often several times faster. Default: 0.", show_default=False)] = None,
    validation: Annotated[Optional[bool], typer.Option("--validation/--no-validation", help="Hold the split's validation slice out of training and report RMSE on it every 5 epochs and at the end (default), or train on the whole training side.", show_default=False)] = None,
    top_n: Annotated[Optional[int], typer.Option(help=f"How many recommendations to write per user, among movies they never rated. Default: {DEFAULTS.top_n}.", show_default=False)] = None,
    full_matrix: Annotated[Optional[bool], typer.Option("--full-matrix", help="Also write a prediction for every (user, movie) pair; refused when that would exceed 50 million rows.", show_default=False)] = None,
    cache_budget_mb: Annotated[Optional[int], typer.Option(help=f"Keep the training matrix in memory (on the GPU when training there) when it fits in this many MB; otherwise stream it from DuckDB every epoch. Default: {DEFAULTS.cache_budget_mb}.", show_default=False)] = None,
    runs_dir: Annotated[Optional[Path], typer.Option(help=f"Where each run keeps its checkpoint and staged results, in a folder named after the run. Default: {DEFAULTS.runs_dir}.", show_default=False)] = None,
    checkpoint_seconds: Annotated[Optional[float], typer.Option(help=f"Write a checkpoint (for --resume) once this many seconds of training have passed since the last one, and after the last epoch; 0 writes one after every epoch. Default: {DEFAULTS.checkpoint_seconds:.0f}.", show_default=False)] = None,
    lock_wait: Annotated[Optional[float], typer.Option(help=f"Seconds to wait for another process holding the warehouse before giving up (results are kept and can be written later with `trainer publish`). Default: {DEFAULTS.lock_wait_seconds:.0f}.", show_default=False)] = None,
    config_file: Annotated[Optional[Path], typer.Option("--config", help="A TOML file of settings (same names as the options, with underscores); options given on the command line override it.", show_default=False)] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the interrupted run in this folder (e.g. runs/20261128-101500-ab12) from its last checkpoint, with the settings and warehouse it started with (only --device, --threads and --lock-wait apply).", show_default=False)] = None,
) -> None:
    """Train a model on one split of the warehouse, score it on the held-out ratings, and write runs, per-epoch metrics and predictions into the warehouse."""
    overrides: dict[str, Any] = {
        "warehouse": str(warehouse) if warehouse else None, "features": str(features) if features else None,
        "split": split, "model": model, "epochs": epochs,
        "batch_size": batch_size, "learning_rate": learning_rate, "weight_decay": weight_decay,
        "optimizer": optimizer, "l2": l2, "hidden": _widths(hidden), "patience": patience, "lr_drops": lr_drops,
        "select_best": select_best, "eval_every": eval_every, "seed": seed, "device": device, "threads": threads, "validation": validation, "top_n": top_n,
        "full_matrix": full_matrix, "cache_budget_mb": cache_budget_mb,
        "runs_dir": str(runs_dir) if runs_dir else None, "checkpoint_seconds": checkpoint_seconds,
        "lock_wait_seconds": lock_wait,
    }
    from trainer.train import run as train_run  # torch is imported only by the commands that train

    try:
        config = resolve(overrides, config_file)
        if resume is not None and not resume.is_dir():
            raise TrainerError(f"{resume}: no such run folder to resume")
        with _EpochReporter(config.epochs) as report:
            summary = train_run(config, resume_dir=resume, on_epoch=report, log=_log)
    except WarehouseError as error:
        _fail(error)
    if not summary.metrics:  # a torchrun rank other than 0, which reports for all
        return
    m = summary.metrics
    _log(
        f"run {summary.run_id}: test RMSE {m['rmse']:.4f}, MAE {m['mae']:.4f}, mean per-user RMSE "
        f"{m['user_rmse']:.4f} on {m['n']:,} ratings ({m['n_cold_start']:,} cold start); trained in "
        f"{summary.train_seconds:.2f} s, {summary.wall_seconds:.2f} s in all. "
        + ("Results are in the warehouse: SELECT * FROM run_metrics; SELECT * FROM recommendations;"
           if summary.published else f"Results are staged in {summary.run_dir} (trainer publish writes them).")
    )


@app.command("bench")
def bench_command(
    data_dir: Annotated[Path, typer.Option(help="The folder holding the MovieLens data sets, one sub-folder per data set (ml-100k, ml-1m), as unpacked from GroupLens.")] = Path("data"),
    models: Annotated[str, typer.Option(help="Comma-separated models to run, each with its preset settings.")] = ",".join(BENCH_MODELS),
    datasets: Annotated[str, typer.Option(help=f"Comma-separated data sets, each run with its protocol: {'; '.join(f'{k}: {p.description}, {len(p.seeds)} seed(s)' for k, p in PROTOCOLS.items())}.")] = ",".join(PROTOCOLS),
    seeds: Annotated[Optional[int], typer.Option(min=1, help="Run only the first N seeds of each protocol (default: all of them), e.g. 1 for a quick look.", show_default=False)] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Train no model for more than this many epochs (default: each preset's own number), for a quick smoke run; such figures are not the benchmark's.", show_default=False)] = None,
    work_dir: Annotated[Path, typer.Option(help="Where the bench builds one warehouse per data set and seed, and keeps the runs' folders.")] = Path("bench-runs"),
    warehouse: Annotated[Path, typer.Option(envvar="WAREHOUSE", help="The warehouse the results table (bench_results, and the view bench_summary) is written into.")] = Path(DEFAULTS.warehouse),
    markdown: Annotated[Path, typer.Option(help="Where to write the results as a Markdown table.")] = Path("docs/bench-results.md"),
) -> None:
    """Run the published protocols end to end (ml-100k u1; ml-1m random 90/10 over 5 seeds) for each model, and write the results table into the warehouse and as Markdown."""
    from trainer.bench import bench  # imports torch

    try:
        bench(
            data_dir, work_dir, warehouse, markdown, models=_names(models), datasets=_names(datasets),
            n_seeds=seeds, max_epochs=epochs, log=_log,
        )
    except WarehouseError as error:
        _fail(error)
    _log(f"results: {markdown} and SELECT * FROM bench_summary in {warehouse}")
    typer.echo(markdown.read_text())


@app.command("report")
def report_command(
    run_id: Annotated[str, typer.Argument(help="The run whose learning curve to draw (SELECT run_id FROM run_metrics lists them).", show_default=False)],
    warehouse: Annotated[Path, typer.Option(envvar="WAREHOUSE", help="The warehouse holding the run.")] = Path(DEFAULTS.warehouse),
    bench_warehouse: Annotated[Optional[Path], typer.Option(help="The warehouse holding bench_results, for the model comparison chart. Default: the run's warehouse.", show_default=False)] = None,
    out_dir: Annotated[Path, typer.Option(help="Where to write the PNG files.")] = Path("reports"),
) -> None:
    """Draw a run's learning curve (train and validation RMSE per epoch) and the latest bench's model comparison, as PNG files."""
    from trainer.report import report  # matplotlib is imported only by this command

    try:
        written = report(run_id, warehouse, out_dir, bench_warehouse)
    except WarehouseError as error:
        _fail(error)
    for path in written:
        _log(f"wrote {path}")
    if len(written) == 1:
        _log("no bench results in that warehouse yet (trainer bench writes them): no model comparison chart")


@app.command()
def publish(
    run_dir: Annotated[Path, typer.Argument(help="The run folder whose staged results to write (printed by the run that could not write them).", show_default=False)],
    warehouse: Annotated[Path, typer.Option(envvar="WAREHOUSE", help="The warehouse to write them into.")] = Path(DEFAULTS.warehouse),
    lock_wait: Annotated[float, typer.Option(min=0, help="Seconds to wait for another process holding the warehouse.")] = DEFAULTS.lock_wait_seconds,
) -> None:
    """Write a finished run's staged results into the warehouse (after a run found it locked)."""
    try:
        published = results.publish(run_dir, warehouse, lock_wait)
    except WarehouseError as error:
        _fail(error)
    _log(f"run {published.run_id}: results written to {warehouse}")


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _widths(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(width) for width in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"--hidden takes comma-separated whole numbers, like 500 or 20,10,20, not {text!r}") from None


def _log(message: str) -> None:
    typer.echo(message, err=True)


class _EpochReporter:
    """A progress bar with the losses on a terminal; one plain line per epoch otherwise (logs, CI)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.progress: Progress | None = None
        if sys.stderr.isatty():
            self.progress = Progress(
                TextColumn("epoch"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[losses]}"),
                TimeRemainingColumn(), transient=False,
            )
            self.task = self.progress.add_task("train", total=epochs, losses="")

    def __enter__(self) -> "_EpochReporter":
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress:
            self.progress.stop()

    def __call__(self, metrics: dict[str, Any]) -> None:
        losses = f"train RMSE {metrics['train_rmse']:.4f}"
        if metrics["validation_rmse"] is not None:
            losses += f"  validation RMSE {metrics['validation_rmse']:.4f}"
        if self.progress:
            self.progress.update(self.task, completed=metrics["epoch"], losses=losses)
        else:
            _log(f"epoch {metrics['epoch']}/{self.epochs}  {losses}  ({metrics['seconds']:.3f} s)")


def entry_point() -> None:
    """The installed `trainer` command (and `python -m trainer`): the app, then an immediate exit.

    Python's teardown of a process that has imported torch takes about 0.35 s here, a tenth of a whole
    ml-100k run (README "Benchmarks"), and only frees memory the OS takes back anyway. Every command has
    closed what it wrote (warehouse, checkpoints, staged results) before it returns. os._exit also skips
    atexit handlers, so a profiler should run the app itself through typer's runner:
    python -m cProfile -o run.prof -m typer trainer.cli run run --warehouse ...
    """
    try:
        app(prog_name="trainer")
    except SystemExit as done:
        code = done.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
