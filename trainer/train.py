"""One training run, top to bottom: set-up, the loop, model selection, prediction, staging and publishing.

The test part of the split is read once, after training and model selection (early stopping and the
best epoch's weights, both chosen on the validation slice), by trainer/predict.py: nothing before can
see it. The results are staged in the run's folder, then audited and published (warehouse/results.py).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch

from trainer import checkpoint, distributed, notebook, trained
from trainer.config import TrainConfig, from_dict
from trainer.coordinates import Coordinates
from trainer.data import (
    Batch,
    DatasetInfo,
    check_split,
    dataset_info,
    dense_output,
    open_warehouse,
    training_data_class,
)
from trainer.errors import Finished, Interrupted, TrainerError
from trainer.models.base import FitInputs, Model, build_model
from trainer.models.registry import REGISTRY
from trainer.optim import Optimizer, build_optimizer
from trainer.predict import fit_biases, mean_rmse, predict
from trainer.run_record import device_name, new_run_id, pick_device, run_folder, utc_now
from trainer.selection import LR_DROP, Best, validation_rmse
from trainer.trained import start_from
from warehouse import results
from warehouse.features import open_features
from warehouse.serving import split_drawn_with

FULL_MATRIX_LIMIT = 50_000_000  # (user, movie) pairs --full-matrix may write


@dataclass
class RunSummary:
    run_id: str
    run_dir: Path
    metrics: dict[str, float | None]
    train_seconds: float
    wall_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch whose weights were scored (chosen on validation)
    validation_rmse: float | None = None  # that epoch's validation RMSE
    device: str = "cpu"  # as recorded in runs.device
    published: results.Published | None = None  # None: staged only (no warehouse beside --features)
    ranking: dict[str, dict[str, float]] = field(default_factory=dict)  # ranking metrics by held-out part


def diverged(epoch: int, train_rmse: float, model: Model, config: TrainConfig) -> TrainerError | None:
    """The error that stops a run whose loss or weights are no longer finite (None while they are)."""
    if math.isfinite(train_rmse) and all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        return None
    what = f"the training RMSE is {train_rmse}" if not math.isfinite(train_rmse) else "the weights are not finite"
    return TrainerError(
        f"training diverged at epoch {epoch}: {what}. Nothing was published, and the checkpoint from before "
        f"this epoch is kept. Try a lower --learning-rate (this run's: {config.learning_rate:g}), or a larger "
        "--batch-size."
    )


def _resumed(config: TrainConfig, state: dict[str, Any] | None, named: Collection[str] = ()) -> TrainConfig:
    """A resumed run continues with the configuration it started with, machine settings aside, and the warehouse
    the user names (``named``: the settings given), where it publishes (checked to hold the data it trained on)."""
    if not state:
        return config
    now = config.machine
    machine: dict[str, Any] = {"device": now.device, "lock_wait_seconds": now.lock_wait_seconds, "threads": now.threads}
    if "warehouse" in named:
        machine["warehouse"] = config.warehouse
    return from_dict({**state["config"], **machine})


def _finish_staged(
    run_dir: Path, state: dict[str, Any], config: TrainConfig, ctx: distributed.Context, log: Callable[[str], None]
) -> RunSummary | None:
    """A resumed run whose results are staged (run.json, written last, says it trained and predicted to the end):
    nothing to train or predict again. Published: said, nothing done (Finished). Staged by --no-publish (or beside
    Parquet features with no warehouse): refused, naming `trainer publish`. Otherwise, stopped while it published:
    its staged results are published as they are. None when nothing is staged: the run goes on from its checkpoint."""
    if not (run_dir / results.RUN_FILE).exists():
        return None
    staged, run_id = results.staged_run(run_dir), state["run_id"]
    if staged["run_id"] != run_id:
        raise TrainerError(
            f"{run_dir} holds run {staged['run_id']}'s staged results but run {run_id}'s checkpoint: "
            f"a checkpoint copied or moved there; put run {staged['run_id']}'s own back"
        )
    if staged.get("checkpoint_sha256") not in (None, checkpoint.digest(run_dir)):
        raise TrainerError(
            f"{run_dir / checkpoint.FILE_NAME} is not the checkpoint run {run_id} staged its results "
            "with (its SHA-256 differs): it was changed or replaced since"
        )
    warehouse = Path(config.warehouse)
    if (run_dir / results.PUBLISHED_MARKER).exists():
        raise Finished(
            f"run {run_id} finished and its results were published already ({staged.get('finished_at')}): "
            f"nothing to resume. To write them into another warehouse: trainer publish {run_dir} "
            "--warehouse PATH"
        )
    if not config.publish or (config.features and not warehouse.exists()):
        raise TrainerError(
            f"run {run_id} finished; its results are staged in {run_dir} and were never published, "
            f"nothing to resume. Write them with: trainer publish {run_dir} --warehouse "
            f"{warehouse}"
        )
    if not ctx.is_main:  # under torchrun, rank 0 alone publishes and reports
        distributed.teardown(ctx)
        return RunSummary(run_id, run_dir, {}, 0.0, 0.0)
    log(f"run {run_id} finished and staged its results before it stopped: publishing them into {warehouse}")
    published = results.publish(run_dir, warehouse, config.machine.lock_wait_seconds, config.machine.publish_anyway)
    distributed.teardown(ctx)
    figures = {
        "rmse": "test_rmse",
        "mae": "test_mae",
        "user_rmse": "test_user_rmse",
        "n": "n_test",
        "n_cold_start": "n_cold_start",
    }
    return RunSummary(
        run_id,
        run_dir,
        {name: staged.get(field) for name, field in figures.items()},
        staged.get("train_seconds") or 0.0,
        staged.get("wall_seconds") or 0.0,
        state["history"],
        staged.get("best_epoch"),
        staged.get("validation_rmse"),
        staged.get("device") or "cpu",
        published,
    )


def _run_folder(
    config: TrainConfig, state: dict[str, Any] | None, resume_dir: Path | None, ctx: distributed.Context
) -> tuple[str, Path, str]:
    """The run's id, its folder (created before training: a read-only or full disk is said at once) and start."""
    run_id = state["run_id"] if state else distributed.broadcast(ctx, new_run_id())
    if resume_dir is not None and resume_dir.resolve().name != run_id:  # a folder is named after its run
        raise TrainerError(
            f"{resume_dir} holds run {run_id}'s checkpoint, not run {resume_dir.resolve().name}'s: "
            f"resume run {run_id} from its own folder (or, if this one was renamed, give it back the "
            "run's name)"
        )
    run_dir = run_folder(resume_dir or Path(config.machine.runs_dir) / run_id)
    return run_id, run_dir, state["started_at"] if state else utc_now()


def _check(con: Any, config: TrainConfig, info: DatasetInfo, coords: Coordinates, state: dict[str, Any] | None) -> None:
    """Refuse, before training, what the warehouse cannot give this run."""
    if state and state["fingerprint"] != info.fingerprint:
        saved = Coordinates.from_state(state)  # None: a checkpoint from before runs kept them
        changes = saved.changes(coords) if saved else ["other files"]
        what = "; ".join(changes) if changes else "the same users and movies, other ratings"
        raise TrainerError(
            f"{config.warehouse} holds other data than run {state['run_id']} was trained on (the "
            f"ETL ran again on other files: {what}); start a new run instead of resuming, or "
            f"score the new ratings with the finished run: trainer score RUN_ID"
        )
    check_split(con, config.split)
    if config.full_matrix and info.n_users * info.n_movies > FULL_MATRIX_LIMIT:
        raise TrainerError(
            f"--full-matrix would write {info.n_users * info.n_movies:,} predictions "
            f"(limit {FULL_MATRIX_LIMIT:,}); use the top-N recommendations instead"
        )


def _memory(device: torch.device) -> int:
    """The bytes of memory ``device`` has in all: the GPU's, or the machine's."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _fits_in_memory(config: TrainConfig, info: DatasetInfo, mean: float, device: torch.device) -> None:
    """Refuse, before any allocation, a model whose weights (and, for a model the loop steps, their gradients)
    cannot fit in the device's memory: --hidden widths, or bayes-fm's samples, too many for this data set. Measured
    on a model built without memory (torch's meta device), so the check costs nothing: the models draw no random
    values and multiply by no number there (a tensor's is_meta), since torch has no meta kernel for those and runs
    them through its Python reference kernels, whose first use imports sympy (hundreds of modules)."""
    with torch.device("meta"):
        probe = build_model(config, info.n_users, info.n_movies, mean)
    weights = sum(t.numel() * t.element_size() for t in probe.state_dict().values())
    fitted = REGISTRY[config.model].fit is not None
    needed, memory = weights * (1 if fitted else 2), _memory(device)
    if needed > memory:
        widths, held = ",".join(map(str, config.hidden)), "weights" if fitted else "weights and their gradients"
        raise TrainerError(
            f"a {config.model} model with --hidden {widths} on {info.n_users:,} users x "
            f"{info.n_movies:,} movies would need {needed / 2**30:,.1f} GiB for its {held}, more than "
            f"the {memory / 2**30:,.1f} GiB of memory of this {device.type.upper()}; choose smaller "
            "--hidden widths"
        )


def _restored(
    state: dict[str, Any] | None, model: Model, optimizer: Optimizer
) -> tuple[list[dict[str, Any]], int, float, Best]:
    """The learning curve, last epoch, training seconds and selection state so far: none for a new run; a
    resumed run's from its checkpoint, with its weights, optimiser and random generators restored."""
    if not state:
        return [], 0, 0.0, Best()
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    checkpoint.restore_rng(state["rng"])
    return state["history"], state["epoch"], state["train_seconds"], Best(**state.get("best", {}))


@dataclass
class Step:
    """One optimiser step on a batch: its loss (the squared error of its observed ratings, over their number,
    or, for the notebook, over all its cells; plus the L2 penalty), the gradients, and the update. Adam and
    the others evaluate the loss once a step; L-BFGS as often as its line search asks."""

    trained: Any  # the model, or its DistributedDataParallel wrapper under torchrun
    model: Model
    optimizer: Optimizer
    config: TrainConfig
    sparse: bool  # outputs at the observed ratings only (else the dense rows x columns)
    l2_scale: float
    shard_weight: float  # under torchrun, this rank's share of the batch
    reset_gradients: Callable[[], None]  # before each backward pass (trainer/notebook.py gradient_reset)

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Take the step; the outputs and the summed squared error at the weights it started from."""
        first: list[tuple[torch.Tensor, torch.Tensor]] = []

        def objective() -> torch.Tensor:
            outputs = self.trained(batch.inputs, batch.index)
            predicted = outputs if self.sparse else outputs.reshape(-1).index_select(0, batch.positions)
            batch_error = torch.nn.functional.mse_loss(predicted, batch.targets, reduction="sum")
            # "observed": mean over the observed ratings; "all_movies": the notebook's MSELoss over every
            # movie with unobserved outputs zeroed (the dense path). Same minimiser, another gradient scale.
            loss = batch_error / (batch.targets.numel() if self.config.loss == "observed" else outputs.numel())
            if self.l2_scale:
                loss = loss + self.l2_scale * sum(weight.square().sum() for weight in self.model.regularised())
            if self.shard_weight != 1.0:  # it scales the l2 term too, which DDP's mean restores
                loss = loss * self.shard_weight
            self.reset_gradients()
            loss.backward()
            if not first:
                first.append((outputs, batch_error))
            return loss

        self.optimizer.step(objective)
        return first[0]


def _train(
    config: TrainConfig,
    ctx: distributed.Context,
    con: Any,
    info: DatasetInfo,
    coords: Coordinates,
    fit_parts: tuple[str, ...],
    mean: float,
    device: torch.device,
    state: dict[str, Any] | None,
    save: Callable[..., None],
    log: Callable[[str], None],
    on_epoch: Callable[[dict[str, Any]], None],
) -> tuple[Model, list[dict[str, Any]], float, Best]:
    """Train a model with its optimiser, epoch by epoch (resumed from ``state``), choosing on validation: the
    model, its learning curve, its training seconds and the selection."""
    # -- model, optimiser and batches (restored from the checkpoint when resuming)
    model = build_model(config, info.n_users, info.n_movies, mean)
    model.to(device)
    optimizer = build_optimizer(model.parameters(), config)
    sparse = not dense_output(config, device, model.dense_on_gpu)
    held = training_data_class(con, config, fit_parts)
    data = held(con, config, info, fit_parts, device, rows=model.rows, sparse=sparse, ctx=ctx)
    log(
        f"{info.name} split {config.split}: {info.n_users:,} users x {info.n_movies:,} movies, {model.rows} rows, "
        f"training on {'+'.join(fit_parts)}, {data.held}"
    )
    trained = distributed.wrap(cast(torch.nn.Module, model), ctx, device)  # the model itself without torchrun
    history, start_epoch, train_seconds, best = _restored(state, model, optimizer)
    if state:
        log(f"resuming {state['run_id']} after epoch {start_epoch}")
    elif config.init_from:  # fine-tuning: another run's weights, themselves a candidate (epoch 0)
        start_from(model, con, config.init_from, coords, device)
        if config.validation:
            best.update(0, validation_rmse(data, model), model, config)
    checkpointed_at = train_seconds  # of training, when the last checkpoint was written
    # The L2 penalty in the units of a sum-of-squares objective, over the mean error's denominator.
    l2_scale = config.l2 / 2 / max(data.n_ratings, 1)
    reset = notebook.gradient_reset(optimizer, config)
    step = Step(trained, model, optimizer, config, sparse, l2_scale, data.shard_weight, reset)

    # -- the training loop
    for epoch in range(start_epoch + 1, config.epochs + 1):
        if best.stopped:
            break
        epoch_start = time.perf_counter()
        model.train()
        squared_error = torch.zeros((), device=device)
        n_ratings = 0
        for batch in distributed.joined(trained, ctx, data.batches(epoch)):
            outputs, batch_error = step(batch)
            if config.refeed:
                # DeepRecommender's re-feeding (dense path): the reconstruction is an example of its own.
                dense = outputs.detach()
                optimizer.zero_grad(set_to_none=True)
                (trained(dense, batch.index) - dense).square().mean().backward()
                optimizer.step()
            squared_error += batch_error.detach()
            n_ratings += batch.targets.numel()  # a number: no tensor op a step
        squared, count = distributed.all_sum(ctx, device, squared_error.item(), n_ratings)
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "train_rmse": math.sqrt(squared / max(count, 1.0)),
            "validation_rmse": None,
        }
        if failure := diverged(epoch, metrics["train_rmse"], model, config):
            raise failure
        drop = epoch in config.lr_drop_epochs  # a refit (trainer/refit.py) drops where its validation run did
        if config.scores_validation_at(epoch):
            metrics["validation_rmse"] = validation_rmse(data, model)
            drop = best.update(epoch, metrics["validation_rmse"], model, config)
        if drop:
            optimizer.defaults["lr"] *= LR_DROP
            why = "validation RMSE stalled" if config.validation else "as in the run it refits"
            log(f"epoch {epoch}: {why}, learning rate now {optimizer.defaults['lr']:g}")
        metrics["seconds"] = time.perf_counter() - epoch_start
        train_seconds += metrics["seconds"]
        history.append(metrics)
        on_epoch(metrics)
        due = train_seconds - checkpointed_at >= config.machine.checkpoint_seconds
        if ctx.is_main and (due or epoch == config.epochs or best.stopped):
            checkpointed_at = train_seconds
            save(epoch, model, optimizer.state_dict(), history, train_seconds, best)
    return model, history, train_seconds, best


def run(
    config: TrainConfig,
    *,
    resume_dir: Path | None = None,
    on_epoch: Callable[[dict[str, Any]], None] = lambda metrics: None,
    log: Callable[[str], None] = lambda message: None,
    named: Collection[str] = (),
) -> RunSummary:
    """Train ``config`` (or resume the run in ``resume_dir``, in the warehouse it started with unless ``named``, the
    settings the user gave, holds warehouse), then audit and publish its results. Resuming a run that finished says
    so and does nothing, or publishes its staged results if it stopped while publishing them (_finish_staged)."""
    wall_start = time.perf_counter()
    # -- set-up. Under torchrun: this process's rank and device; only rank 0 reports (trainer/distributed.py).
    ctx, device = distributed.setup(pick_device(config.machine.device))
    log, on_epoch = (log, on_epoch) if ctx.is_main else (lambda message: None, lambda metrics: None)
    state = checkpoint.load(resume_dir, device) if resume_dir else None
    # the process's threads, as the command line set them (trainer/threads.py), recorded in runs.config
    config = _resumed(config, state, named).replaced(threads=torch.get_num_threads())
    if resume_dir and state and (finished := _finish_staged(resume_dir, state, config, ctx, log)):
        return finished
    warehouse = Path(config.warehouse)
    features = Path(config.features) if config.features else None
    # the data first: a run that cannot read any leaves no folder behind
    con = open_features(features) if features else open_warehouse(warehouse, config.machine.lock_wait_seconds)
    try:
        run_id, run_dir, started_at = _run_folder(config, state, resume_dir, ctx)
    except BaseException:
        con.close()
        raise
    checkpointed = [state["epoch"]] if state else []  # the epochs the run's checkpoint has held, for Ctrl-C
    try:
        info = dataset_info(con)
        coords = Coordinates.read(con)  # the run's own: its model is only ever read through these
        _check(con, config, info, coords, state)
        drawn_with = split_drawn_with(con, config.split)
        fit_parts = ("train",) if config.validation else ("train", "validation")
        fallback = fit_biases(con, config.split, fit_parts, info)
        _fits_in_memory(config, info, fallback.mean, device)

        # -- the model: stepped by the training loop, or fitted by its own (bayes-fm sampled, ease in closed form)
        torch.manual_seed(config.seed)

        def save(
            epoch: int,
            model: Model,
            optimizer: dict[str, Any],
            history: list[dict[str, Any]],
            seconds: float,
            best: Best,
        ) -> None:
            with checkpoint.interrupts_deferred():  # Ctrl-C names the epoch the file on disk holds
                checkpoint.save(
                    run_dir,
                    {
                        "run_id": run_id,
                        "started_at": started_at,
                        "config": config.to_dict(),
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": optimizer,
                        "rng": checkpoint.rng_states(),
                        "history": history,
                        "train_seconds": seconds,
                        "fingerprint": info.fingerprint,
                        "best": best.to_dict(),
                        "coordinates": coords.to_state(),
                        "mean": fallback.mean,
                    },
                )
                checkpointed.append(epoch)

        fitter = REGISTRY[config.model].fit  # a model fitted outside the loop: sampled, or in closed form
        if fitter:
            if state or ctx.world_size > 1:
                raise TrainerError(
                    f"{config.model} is fitted in one go, in one process: it cannot --resume, nor run "
                    "under torchrun; train it again"
                )
            # Imported here: bayes-fm's myFM (and scipy) only when it trains; the GPU machines' bundle leaves them out.
            module, name = fitter.split(":")
            fit = getattr(importlib.import_module(module), name)
            model, history, train_seconds, best = fit(
                FitInputs(con, config, info, fit_parts, fallback.mean, log, on_epoch)
            )
            model.to(device)
            save(len(history), model, {}, history, train_seconds, replace(best, weights=None))  # model is the best
        else:
            model, history, train_seconds, best = _train(
                config, ctx, con, info, coords, fit_parts, fallback.mean, device, state, save, log, on_epoch
            )

        # -- model selection: the weights of the epoch that scored best on the validation slice
        if best.weights is not None and config.select_best:
            model.load_state_dict(best.weights)
            start = " (the weights it started from)" if best.epoch == 0 else ""
            log(f"selected epoch {best.epoch}{start} (validation RMSE {best.rmse:.4f}) of {len(history)}")
        if not ctx.is_main:  # under torchrun, rank 0 alone predicts and publishes
            distributed.teardown(ctx)
            return RunSummary(run_id, run_dir, {}, train_seconds, time.perf_counter() - wall_start, history)

        # -- predict: score the test part (read here for the first time) and rank each user's unseen movies
        predictions, scores, ranking = predict(con, config, info, coords, fit_parts, model, device, run_id, fallback)
        ratings_from = None
        if not model.predicts_ratings:  # its lists show the ratings of the run serving predictions, if any
            predictions, ratings_from = trained.served_ratings(con, predictions, device, log)
        # the audit's baseline: predicting the training mean, on the validation slice when it is held out
        baseline = mean_rmse(con, config.split, ("validation",) if config.validation else fit_parts, fallback.mean)
    except KeyboardInterrupt:  # Ctrl-C: the command line says where the run can resume from
        raise Interrupted(run_dir, checkpointed[-1] if checkpointed else None) from None
    finally:
        con.close()

    # -- stage the results in the run's folder, then audit and publish them
    row = _run_row(run_id, started_at, config, info, device, model, history, best, scores, baseline, run_dir)
    row |= {
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - wall_start,
        "ratings_from_run": ratings_from,
        "split_drawn_with": drawn_with,
    }
    tables = {
        "epoch_metrics": results.epoch_table(run_id, history),
        "predictions": predictions,
        "run_index": coords.table(run_id),
        "ranking_metrics": results.ranking_table(run_id, ranking),
    }
    results.stage(run_dir, row, tables)
    published = None
    if not config.publish:
        log(
            f"not published (--no-publish): the results stay in {run_dir}; write them into the warehouse with: "
            f"trainer publish {run_dir} --warehouse {warehouse}"
        )
    elif config.features and not warehouse.exists():  # a trainer given only the Parquet features
        log(
            f"no warehouse at {warehouse}: the results stay in {run_dir}; write them into a warehouse the ETL "
            f"built from the same files with: trainer publish {run_dir} --warehouse PATH"
        )
    else:
        published = results.publish(run_dir, warehouse, config.machine.lock_wait_seconds, config.machine.publish_anyway)
    distributed.teardown(ctx)
    return RunSummary(
        run_id,
        run_dir,
        scores,
        train_seconds,
        row["wall_seconds"],
        history,
        row["best_epoch"],
        row["validation_rmse"],
        row["device"],
        published,
        ranking,
    )


def _run_row(
    run_id: str,
    started_at: str,
    config: TrainConfig,
    info: DatasetInfo,
    device: torch.device,
    model: Model,
    history: list[dict[str, Any]],
    best: Best,
    scores: dict[str, float | None],
    baseline: float | None,
    run_dir: Path,
) -> dict[str, Any]:
    """The run's row of `runs` (sql/results/runs.sql), timings aside."""
    selected = config.select_best and best.epoch is not None
    last_validation = next((h["validation_rmse"] for h in reversed(history) if h["validation_rmse"] is not None), None)
    validation = (best.rmse if selected else last_validation) if model.predicts_ratings else None
    # the audit: a rating model's RMSE against the training mean's; a ranking model's lists against popular's
    audit_slice = ("validation" if config.validation else "train") if model.predicts_ratings else "validation ranking"
    return {
        "run_id": run_id,
        "kind": "train",
        "parent_run_id": config.refit_of or config.init_from,
        "started_at": started_at,
        "finished_at": utc_now(),
        "model": config.model,
        "split": config.split,
        "seed": config.seed,
        "dataset_name": info.name,
        "dataset_fingerprint": info.fingerprint,
        "device": device_name(device),
        "epochs": config.epochs,
        "validation_rmse": validation,
        "epochs_run": len(history),
        "best_epoch": best.epoch if selected else len(history),
        "test_rmse": scores["rmse"],
        "test_mae": scores["mae"],
        "test_user_rmse": scores["user_rmse"],
        "n_test": scores["n"],
        "n_cold_start": scores["n_cold_start"],
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "torch_version": torch.__version__,
        "run_dir": str(run_dir.resolve()),
        "config": json.dumps(config.to_dict(), sort_keys=True),
        # the audit's figures: the scored model on validation when held out (else on training), and the baseline
        "audit_slice": audit_slice,
        "baseline_rmse": baseline if model.predicts_ratings else None,
        "audit_rmse": validation if config.validation else scores["fit_rmse"],
        "checkpoint_sha256": checkpoint.digest(run_dir),  # the final checkpoint: what score, blend and refit load
    }
