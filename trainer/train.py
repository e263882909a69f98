"""One training run, top to bottom: read the matrix, train, select, score, predict, stage and publish.

The test part of the split is read once, after training and model selection (early stopping and the
best epoch's weights, both chosen on the validation slice), by `predict`: nothing before can see it.
"""

from __future__ import annotations

import json
import math
import platform
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import torch

from trainer import checkpoint, distributed
from trainer.config import TrainConfig, from_dict
from trainer.data import (
    Csr, DatasetInfo, check_split, count_ratings, dataset_info, first_rating, load_rows, matrix_bytes, merge_parts,
    open_warehouse, shard_ratings, stream_rows,
)
from trainer.errors import TrainerError
from trainer.evaluate import rating_metrics
from trainer.models import build_model
from trainer.optim import OPTIMIZERS, Optimizer
from trainer.sparse import SparseBlock
from warehouse import results
from warehouse.features import open_features

FULL_MATRIX_LIMIT = 50_000_000  # (user, movie) pairs --full-matrix may write
EVAL_ROWS = 4096  # users per forward pass when scoring and predicting ...
EVAL_BLOCK_BYTES = 256 * 2**20  # ... fewer when their dense users x movies block would pass this


@dataclass
class RunSummary:
    run_id: str
    run_dir: Path
    metrics: dict[str, float]
    train_seconds: float
    wall_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch whose weights were scored (chosen on validation)
    validation_rmse: float | None = None  # that epoch's validation RMSE
    device: str = "cpu"  # as recorded in runs.device
    published: bool = True  # False: the results stay staged in run_dir (no warehouse beside --features)


def eval_rows(n_cols: int) -> int:
    """Rows per forward pass when scoring and predicting. Bounded by memory, not only by count: at
    ml-32m's 87,585 movies 4,096 users' dense inputs alone are 1.4 GB, and the outputs as much again."""
    return max(1, min(EVAL_ROWS, EVAL_BLOCK_BYTES // (4 * n_cols)))


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TrainerError("--device cuda was asked for, but torch finds no CUDA device; use --device cpu or auto")
        return torch.device("cuda")
    return torch.device("cpu")


def run(
    config: TrainConfig,
    *,
    resume_dir: Path | None = None,
    on_epoch: Callable[[dict[str, Any]], None] = lambda metrics: None,
    log: Callable[[str], None] = lambda message: None,
) -> RunSummary:
    """Train ``config`` (or resume the run in ``resume_dir``) and write its results to the warehouse."""
    wall_start = time.perf_counter()
    # Under torchrun: this process's rank and device; only rank 0 reports (see trainer/distributed.py).
    ctx, device = distributed.setup(pick_device(config.device))
    log, on_epoch = (log, on_epoch) if ctx.is_main else (lambda message: None, lambda metrics: None)
    state = checkpoint.load(resume_dir, device) if resume_dir else None
    if state:
        # A resumed run continues with the configuration it started with (machine settings aside).
        config = from_dict({**state["config"], "device": config.device, "lock_wait_seconds": config.lock_wait_seconds,
                            "threads": config.threads})
    if config.threads:
        torch.set_num_threads(config.threads)
    run_id = state["run_id"] if state else distributed.broadcast(ctx, _new_run_id())
    run_dir = resume_dir or Path(config.runs_dir) / run_id
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a read-only or full disk: say so before training, not after
        raise TrainerError(f"{run_dir}: cannot create the run's folder: {error}") from error
    started_at = state["started_at"] if state else _utc_now()
    warehouse = Path(config.warehouse)

    con = open_features(Path(config.features)) if config.features else open_warehouse(warehouse, config.lock_wait_seconds)
    try:
        info = dataset_info(con)
        if state and state["fingerprint"] != info.fingerprint:
            raise TrainerError(f"{warehouse} holds other data than run {run_id} was trained on (the ETL ran "
                               "again on other files); start a new run instead of resuming")
        check_split(con, config.split)
        if config.full_matrix and info.n_users * info.n_movies > FULL_MATRIX_LIMIT:
            raise TrainerError(
                f"--full-matrix would write {info.n_users * info.n_movies:,} predictions "
                f"(limit {FULL_MATRIX_LIMIT:,}); use the top-N recommendations instead"
            )
        fit_parts = ("train",) if config.validation else ("train", "validation")
        fallback = fit_biases(con, config.split, fit_parts, info)

        # -- model and optimiser (restored from the checkpoint when resuming)
        torch.manual_seed(config.seed)
        model = build_model(config, info.n_users, info.n_movies, fallback.mean).to(device)
        optimizer = _make_optimizer(config, model)
        data = TrainingData(con, config, info, fit_parts, device, rows=model.rows, ctx=ctx)
        log(
            f"{info.name} split {config.split}: {info.n_users:,} users x {info.n_movies:,} movies, "
            f"{model.rows} rows, training on {'+'.join(fit_parts)}, "
            + ("matrix cached on " + device.type if data.cached else "streaming from DuckDB every epoch")
        )
        trained = distributed.wrap(model, ctx, device)  # the model itself when not under torchrun
        history: list[dict[str, Any]] = []
        start_epoch, train_seconds = 0, 0.0
        best = Best()
        if state:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"].cpu())
            history, start_epoch, train_seconds = state["history"], state["epoch"], state["train_seconds"]
            best = Best(**state.get("best", {}))
            log(f"resuming {run_id} after epoch {start_epoch}")
        checkpointed_at = train_seconds  # of training, when the last checkpoint was written
        # The L2 penalty in the units of a sum-of-squares objective, over the mean error's denominator.
        l2_scale = config.l2 / 2 / max(data.n_ratings, 1)

        # -- the training loop
        for epoch in range(start_epoch + 1, config.epochs + 1):
            if best.stopped:
                break
            epoch_start = time.perf_counter()
            model.train()
            squared_error = torch.zeros((), device=device)
            n_ratings = 0
            for batch in distributed.joined(trained, ctx, data.batches(epoch)):
                if data.sparse:  # the model's outputs at the observed ratings only
                    predicted = trained(batch.inputs, batch.index)
                else:  # the whole rows x columns output, read at the observed ratings
                    reconstruction = trained(batch.inputs, batch.index)
                    predicted = reconstruction.reshape(-1).index_select(0, batch.positions)
                batch_error = torch.nn.functional.mse_loss(predicted, batch.targets, reduction="sum")
                # "observed": mean over the observed ratings; "all_movies": the notebook's MSELoss over
                # every movie with unobserved outputs zeroed. Same minimiser, different gradient scale.
                loss = batch_error / (batch.targets.numel() if config.loss == "observed" else reconstruction.numel())
                if l2_scale:
                    loss = loss + l2_scale * sum(weight.square().sum() for weight in model.regularised())
                if data.shard_weight != 1.0:  # under torchrun; it scales the l2 term too, which DDP's mean restores
                    loss = loss * data.shard_weight
                if not config.accumulate_gradients:
                    optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if config.refeed:
                    # DeepRecommender's dense re-feeding: the reconstruction, dense, is an example of its own.
                    dense = reconstruction.detach()
                    optimizer.zero_grad(set_to_none=True)
                    (model(dense, batch.index) - dense).square().mean().backward()
                    optimizer.step()
                squared_error += batch_error.detach()
                n_ratings += batch.targets.numel()  # a number: no tensor op a step
            squared, count = distributed.all_sum(ctx, device, squared_error.item(), n_ratings)
            metrics: dict[str, Any] = {
                "epoch": epoch,
                "train_rmse": math.sqrt(squared / max(count, 1.0)),
                "validation_rmse": None,
            }
            if config.validation and (epoch % config.eval_every == 0 or epoch == config.epochs):
                metrics["validation_rmse"] = data.validation_rmse(model)
                if best.update(epoch, metrics["validation_rmse"], model, config):
                    optimizer.defaults["lr"] *= LR_DROP
                    log(f"epoch {epoch}: validation RMSE stalled, learning rate now {optimizer.defaults['lr']:g}")
            metrics["seconds"] = time.perf_counter() - epoch_start
            train_seconds += metrics["seconds"]
            history.append(metrics)
            on_epoch(metrics)
            due = train_seconds - checkpointed_at >= config.checkpoint_seconds
            if ctx.is_main and (due or epoch == config.epochs or best.stopped):
                checkpointed_at = train_seconds
                checkpoint.save(run_dir, {
                    "run_id": run_id, "started_at": started_at, "config": config.to_dict(), "epoch": epoch,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "rng": torch.get_rng_state(), "history": history, "train_seconds": train_seconds,
                    "fingerprint": info.fingerprint, "best": best.to_dict(),
                })

        # -- model selection: the weights of the epoch that scored best on the validation slice
        selected = config.select_best and best.weights is not None
        if selected:
            model.load_state_dict(best.weights)
            log(f"selected epoch {best.epoch} (validation RMSE {best.rmse:.4f}) of {len(history)}")

        if ctx.active:
            # Rank 0 alone scores and writes; DuckDB lets nobody read while it writes, so the others close first.
            if not ctx.is_main:
                con.close()
            distributed.barrier(ctx)
            if not ctx.is_main:
                distributed.teardown(ctx)
                return RunSummary(run_id, run_dir, {}, train_seconds, time.perf_counter() - wall_start, history)

        # -- score the test part (read here for the first time) and predict
        predictions, scores = predict(con, config, info, fit_parts, model, device, run_id, fallback)
    finally:
        con.close()

    wall_seconds = time.perf_counter() - wall_start
    last_validation = next((h["validation_rmse"] for h in reversed(history) if h["validation_rmse"] is not None), None)
    scored_epoch = best.epoch if selected else len(history)
    scored_validation = best.rmse if selected else last_validation
    run_row = {
        "run_id": run_id, "started_at": started_at, "finished_at": _utc_now(), "model": config.model,
        "split": config.split, "seed": config.seed, "dataset_name": info.name,
        "dataset_fingerprint": info.fingerprint, "device": _device_name(device), "epochs": config.epochs,
        "train_seconds": train_seconds, "wall_seconds": wall_seconds, "validation_rmse": scored_validation,
        "epochs_run": len(history), "best_epoch": scored_epoch,
        "test_rmse": scores["rmse"], "test_mae": scores["mae"], "test_user_rmse": scores["user_rmse"],
        "n_test": scores["n"], "n_cold_start": scores["n_cold_start"],
        "n_parameters": sum(p.numel() for p in model.parameters()), "torch_version": torch.__version__,
        "run_dir": str(run_dir.resolve()), "config": _json(config.to_dict()),
    }
    epochs_table = pa.Table.from_pylist(
        [{"run_id": run_id, "epoch": h["epoch"], "train_rmse": h["train_rmse"],
          "validation_rmse": h["validation_rmse"], "seconds": h["seconds"]} for h in history],
        schema=pa.schema([("run_id", pa.string()), ("epoch", pa.int32()), ("train_rmse", pa.float64()),
                          ("validation_rmse", pa.float64()), ("seconds", pa.float64())]),
    )
    results.stage(run_dir, run_row, epochs_table, predictions)
    published = not (config.features and not warehouse.exists())  # a trainer given only the Parquet features
    if published:
        results.publish(run_dir, warehouse, config.lock_wait_seconds)
    else:
        log(f"no warehouse at {warehouse}: the results stay in {run_dir}; write them into one with "
            f"trainer publish {run_dir} --warehouse PATH")
    distributed.teardown(ctx)
    return RunSummary(run_id, run_dir, scores, train_seconds, wall_seconds, history, scored_epoch, scored_validation,
                      run_row["device"], published)


LR_DROP = 0.1  # the learning rate's factor each time validation RMSE stalls (config.lr_drops)
MIN_IMPROVEMENT = 1e-4  # in validation RMSE, to count as progress for patience


@dataclass
class Best:
    """Early stopping and the best epoch so far, as judged on the validation slice."""

    epoch: int | None = None
    rmse: float = math.inf
    weights: dict[str, torch.Tensor] | None = None
    stopped: bool = False
    # Patience counts from the last real improvement (or learning-rate drop): at a low rate, gains of
    # 1e-5 an epoch would otherwise keep a run going for nothing.
    waiting_since: int = 0
    waiting_rmse: float = math.inf
    drops: int = 0

    def update(self, epoch: int, rmse: float, model: torch.nn.Module, config: TrainConfig) -> bool:
        """Record a validation score; True when the learning rate should drop now."""
        if rmse < self.rmse:
            self.epoch, self.rmse = epoch, rmse
            if config.select_best:
                self.weights = {name: t.detach().clone() for name, t in model.state_dict().items()}
        if rmse < self.waiting_rmse - MIN_IMPROVEMENT:
            self.waiting_since, self.waiting_rmse = epoch, rmse
        elif config.patience and epoch - self.waiting_since >= config.patience:
            if self.drops < config.lr_drops:
                self.drops, self.waiting_since, self.waiting_rmse = self.drops + 1, epoch, self.rmse
                return True
            self.stopped = True
        return False

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "rmse": self.rmse, "weights": self.weights, "stopped": self.stopped,
                "waiting_since": self.waiting_since, "waiting_rmse": self.waiting_rmse, "drops": self.drops}


@dataclass
class Batch:
    """A block of rating rows (users', or movies') to train on, as the model takes it, and its observed ratings."""

    inputs: torch.Tensor | SparseBlock  # dense rows x columns (0 where unrated), or the block's observed ratings
    index: torch.Tensor  # each row's user_idx (movie_idx for movie rows)
    rows: Csr  # the observed ratings

    @property
    def targets(self) -> torch.Tensor:
        return self.rows.vals

    @cached_property  # a batch kept for the whole run computes them once
    def positions(self) -> torch.Tensor:
        """Flat indexes into dense inputs (row * n_cols + col) of the observed ratings."""
        return self.rows.row_ids() * self.rows.n_cols + self.rows.cols


def dense_output(config: TrainConfig, device: torch.device) -> bool:
    """Whether training needs the model's whole rows x columns output rather than its outputs at the
    observed ratings: for the notebook's loss over every movie, for dense re-feeding, and on a GPU, where
    the sparse kernels have not been measured (README "GPU")."""
    return config.loss == "all_movies" or config.refeed or device.type != "cpu"


class TrainingData:
    """The training matrix (user rows, or movie rows with ``rows="movie"``) as batches on the device,
    plus the validation targets.

    When the CSR of the training (and validation) part fits ``cache_budget_mb`` it is read once and
    kept on the device, dealt into batches of rows once (at random, unless ``shuffle`` is off), and each
    epoch takes those batches in a new order: a batch's sparse structure (and its transpose, which the
    weight gradients need) is then built once, not every epoch. Otherwise every epoch streams the rows
    out of DuckDB in a new order, so memory is bounded by the batch, not by users x movies.
    """

    def __init__(
        self, con: duckdb.DuckDBPyConnection, config: TrainConfig, info: DatasetInfo,
        fit_parts: tuple[str, ...], device: torch.device, rows: str = "user",
        ctx: distributed.Context = distributed.Context(),
    ) -> None:
        self.con, self.config, self.info, self.fit_parts, self.device = con, config, info, fit_parts, device
        self.rows = rows
        self.n_cols = info.n_movies if rows == "user" else info.n_users
        self.sparse = not dense_output(config, device)
        # Under torchrun each rank holds its shard of the rows and takes its share of every batch. Its loss
        # is weighted by its shard's share of the ratings (x world size), so that the mean gradient DDP takes
        # over the ranks is the gradient over every rating: exactly the one process's, with full batches.
        self.ctx, self.batch_size, self.shard_weight = ctx, -(-config.batch_size // ctx.world_size), 1.0
        if ctx.shard:
            mine = shard_ratings(con, config.split, fit_parts, ctx.shard, by=rows)
            self.shard_weight = mine * ctx.world_size / distributed.all_sum(ctx, device, mine)[0]
        parts = fit_parts + (("validation",) if config.validation else ())
        budget = config.cache_budget_mb * 2**20
        self.n_ratings = count_ratings(con, config.split, fit_parts)
        self.cached = matrix_bytes(con, config.split, parts) <= budget
        self.fit: Csr | None = None
        self.index: torch.Tensor | None = None
        self.validation: Csr | None = None
        self.dense: torch.Tensor | None = None
        self._ranges: list[tuple[int, int]] = []
        self._kept: dict[int, Batch] = {}  # cached batches, by range
        # The notebook quirk: the rating on the first line of the training file was never seen.
        lost = first_rating(con, config.split, fit_parts) if config.drop_first_rating else None
        self._lost = lost if lost is None or rows == "user" else (lost[1], lost[0])  # as (row, column)
        if self.cached:
            index, matrices = load_rows(con, config.split, parts, self.n_cols, by=rows, shard=ctx.shard)
            fit = self._fit_matrix(index, matrices)
            validation = matrices["validation"] if config.validation else None
            if config.shuffle and config.fixed_batches:  # dealt once, at random
                order = torch.randperm(fit.n_rows, generator=torch.Generator().manual_seed(config.seed * 1_000_003))
                fit, index = fit.select(order), index[order]
                validation = validation.select(order) if validation is not None else None
            self.fit, self.index = fit.to(device), index.to(device)
            self.validation = validation.to(device) if validation is not None else None
            if not self.sparse and info.n_users * info.n_movies * 4 <= budget:
                self.dense = self.fit.to_dense()
            # Rows with nothing to learn from make no batch (the notebook skipped such users too).
            counts = self.fit.offsets[::self.batch_size].tolist() + [int(self.fit.offsets[-1])]
            self._ranges = [(start, min(start + self.batch_size, self.fit.n_rows))
                            for start, first, last in zip(range(0, self.fit.n_rows, self.batch_size), counts, counts[1:])
                            if last > first]

    def _fit_matrix(self, index: torch.Tensor, matrices: dict[str, Csr]) -> Csr:
        fit = merge_parts(matrices, self.fit_parts)
        return fit.without(index, *self._lost) if self._lost else fit

    def batches(self, epoch: int) -> Iterator[Batch]:
        config = self.config
        if not self.cached:
            seed = config.seed * 1_000_003 + epoch if config.shuffle else None
            for index, matrices in stream_rows(self.con, config.split, self.fit_parts, self.n_cols,
                                               self.batch_size, shuffle_seed=seed, by=self.rows, shard=self.ctx.shard):
                rows = self._fit_matrix(index, matrices).to(self.device, non_blocking=True)
                if rows.cols.numel():
                    yield Batch(self._inputs(rows), index.to(self.device, non_blocking=True), rows)
            return
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        if config.shuffle and not config.fixed_batches:
            yield from self._dealt_batches(torch.randperm(self.fit.n_rows, generator=generator).to(self.device))
            return
        order = range(len(self._ranges))
        if config.shuffle:
            order = torch.randperm(len(self._ranges), generator=generator).tolist()
        for i in order:
            yield self._cached_batch(i)

    def _dealt_batches(self, order: torch.Tensor) -> Iterator[Batch]:
        """Batches of the cached rows taken in ``order``: each gathers its own rows (one gather of the whole
        matrix per epoch was 10x slower on ml-1m, a fresh copy every epoch; small gathers stay in cache)."""
        assert self.fit is not None and self.index is not None
        for start in range(0, self.fit.n_rows, self.batch_size):
            rows = order[start : start + self.batch_size]
            part = self.fit.select(rows)
            if part.cols.numel() == 0:
                continue
            dense = self.dense.index_select(0, rows) if self.dense is not None else None
            yield Batch(self._inputs(part, dense), self.index.index_select(0, rows), part)

    def _cached_batch(self, i: int) -> Batch:
        """Batch ``i`` of the rows as dealt, kept for the next epochs (the notebook preset takes 189,000 steps
        of one user), except when its dense inputs would be a copy: kept, they would add up to users x movies."""
        if i in self._kept:
            return self._kept[i]
        assert self.fit is not None and self.index is not None
        start, end = self._ranges[i]
        rows, index = self.fit.slice(start, end), self.index[start:end]
        batch = Batch(self._inputs(rows, self.dense[start:end] if self.dense is not None else None), index, rows)
        if self.sparse or self.dense is not None:
            self._kept[i] = batch
        return batch

    def _inputs(self, rows: Csr, dense: torch.Tensor | None = None) -> torch.Tensor | SparseBlock:
        """``rows`` as the model takes them: a SparseBlock on the sparse path, else dense (``dense``, the
        same rows of the cached dense matrix, when there is one)."""
        if self.sparse:
            return rows.block()
        return dense if dense is not None else rows.to_dense()

    @torch.no_grad()
    def validation_rmse(self, model: torch.nn.Module) -> float:
        """Global RMSE on the validation slice, predictions clipped as they will be at the end."""
        model.eval()
        squared, count = 0.0, 0
        for inputs, index, targets in self._validation_blocks():
            predicted = model.predict_at(inputs, index, targets.block())
            if self.config.clip:
                predicted = predicted.clamp(self.info.rating_min, self.info.rating_max)
            squared += (predicted - targets.vals).square().sum().item()
            count += targets.vals.numel()
        squared, count = distributed.all_sum(self.ctx, self.device, squared, count)
        return math.sqrt(squared / max(count, 1))

    def _validation_blocks(self) -> Iterator[tuple[torch.Tensor | SparseBlock, torch.Tensor, Csr]]:
        """(inputs, their row indexes, validation targets) for blocks of rows, from the cache or streamed."""
        if not self.cached:
            for index, matrices in stream_rows(self.con, self.config.split, self.fit_parts + ("validation",),
                                               self.n_cols, eval_rows(self.n_cols), by=self.rows, shard=self.ctx.shard):
                fit = self._fit_matrix(index, matrices).to(self.device)
                yield self._inputs(fit), index.to(self.device), matrices["validation"].to(self.device)
            return
        assert self.fit is not None and self.index is not None and self.validation is not None
        block = eval_rows(self.n_cols)
        for start in range(0, self.fit.n_rows, block):
            end = min(start + block, self.fit.n_rows)
            dense = self.dense[start:end] if self.dense is not None else None
            yield self._inputs(self.fit.slice(start, end), dense), self.index[start:end], self.validation.slice(start, end)


@torch.no_grad()
def predict(
    con: duckdb.DuckDBPyConnection, config: TrainConfig, info: DatasetInfo, fit_parts: tuple[str, ...],
    model: torch.nn.Module, device: torch.device, run_id: str, fallback: Biases,
) -> tuple[pa.Table, dict[str, float]]:
    """Score every held-out test rating and rank each user's unseen movies, in one streamed pass of user rows.

    Cold start: a test rating whose user or movie has no training rating is predicted by the damped
    user + movie biases of the training ratings (``fallback``; an unknown user's or movie's bias is 0),
    and counted.
    """
    model.eval()
    user_ids = _ids(con, "user_index", "user_id", "user_idx")
    movie_ids = _ids(con, "movie_index", "movie_id", "movie_idx")
    user_bias, movie_bias = fallback.user.to(device), fallback.movie.to(device)
    movie_known = fallback.movie_known.to(device)
    # A movie-row model's scores for a block of users are its movie codes times those users' output weights.
    movie_codes = _movie_codes(con, config, info, fit_parts, model, device) if model.rows == "movie" else None
    all_parts = ("train", "validation", "test")
    # The notebook quirk: the first line of each of its files (train and test) was never read.
    lost_fit = first_rating(con, config.split, fit_parts) if config.drop_first_rating else None
    lost_test = first_rating(con, config.split, ("test",)) if config.drop_first_rating else None
    tables: list[pa.Table] = []
    test_users, test_predicted, test_actual, cold_total = [], [], [], 0
    for users, matrices in stream_rows(con, config.split, all_parts, info.n_movies, eval_rows(info.n_movies)):
        users = users.to(device)
        matrices = {part: m.to(device) for part, m in matrices.items()}
        fit, test = merge_parts(matrices, fit_parts), matrices["test"]
        if lost_fit:
            fit = fit.without(users, *lost_fit)
        if lost_test:
            test = test.without(users, *lost_test)
        if movie_codes is None:
            scores = model(fit.to_dense(), users)
        else:
            scores = model.decode_columns(movie_codes, users).T.contiguous()
        if config.clip:
            scores = scores.clamp(info.rating_min, info.rating_max)

        # held-out test ratings
        rows, cols = test.row_ids(), test.cols
        predicted = scores[rows, cols]
        cold = (fit.counts[rows] == 0) | ~movie_known[cols]
        if config.cold_start_fallback:
            biases = fallback.mean + user_bias[users[rows]] + movie_bias[cols]
            if config.clip:
                biases = biases.clamp(info.rating_min, info.rating_max)
            predicted = torch.where(cold, biases, predicted)
        test_users.append(users[rows].cpu())
        test_predicted.append(predicted.cpu())
        test_actual.append(test.vals.cpu())
        cold_total += int(cold.sum())
        tables.append(_prediction_table(run_id, "test", user_ids[users[rows].cpu().numpy()],
                                        movie_ids[cols.cpu().numpy()], predicted, test.vals, None, cold))

        # every (user, movie) pair, on request
        if config.full_matrix:
            all_rows = torch.arange(users.numel(), device=device).repeat_interleave(info.n_movies)
            all_cols = torch.arange(info.n_movies, device=device).repeat(users.numel())
            tables.append(_prediction_table(run_id, "matrix", user_ids[users[all_rows].cpu().numpy()],
                                            movie_ids[all_cols.cpu().numpy()], scores.flatten(), None, None, None))

        # top-N among movies the user never rated (in any part)
        if config.top_n:
            for part in all_parts:
                scores[matrices[part].row_ids(), matrices[part].cols] = -math.inf
            n = min(config.top_n, info.n_movies)
            best, best_cols = scores.topk(n, dim=1)
            keep = torch.isfinite(best).flatten()
            rows = torch.arange(users.numel(), device=device).repeat_interleave(n)[keep]
            ranks = torch.arange(1, n + 1, device=device).repeat(users.numel())[keep]
            tables.append(_prediction_table(run_id, "top_n", user_ids[users[rows].cpu().numpy()],
                                            movie_ids[best_cols.flatten()[keep].cpu().numpy()],
                                            best.flatten()[keep], None, ranks, None))

    metrics = rating_metrics(torch.cat(test_users), torch.cat(test_predicted), torch.cat(test_actual))
    metrics["n_cold_start"] = cold_total
    return pa.concat_tables(tables), metrics


PREDICTION_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("kind", pa.string()), ("user_id", pa.int32()), ("movie_id", pa.int32()),
    ("rank", pa.int32()), ("predicted_rating", pa.float32()), ("actual_rating", pa.float32()),
    ("cold_start", pa.bool_()),
])


def _prediction_table(
    run_id: str, kind: str, user_ids: np.ndarray, movie_ids: np.ndarray, predicted: torch.Tensor,
    actual: torch.Tensor | None, rank: torch.Tensor | None, cold: torch.Tensor | None,
) -> pa.Table:
    n = len(user_ids)

    def column(values: torch.Tensor | None) -> np.ndarray | None:
        return None if values is None else values.cpu().numpy()

    arrays = [
        pa.array(np.full(n, run_id)) if n else pa.array([], pa.string()),
        pa.array(np.full(n, kind)) if n else pa.array([], pa.string()),
        pa.array(user_ids, pa.int32()), pa.array(movie_ids, pa.int32()),
        pa.array(column(rank), pa.int32()) if rank is not None else pa.nulls(n, pa.int32()),
        pa.array(column(predicted), pa.float32()),
        pa.array(column(actual), pa.float32()) if actual is not None else pa.nulls(n, pa.float32()),
        pa.array(column(cold), pa.bool_()) if cold is not None else pa.nulls(n, pa.bool_()),
    ]
    return pa.Table.from_arrays(arrays, schema=PREDICTION_SCHEMA)


def _ids(con: duckdb.DuckDBPyConnection, table: str, id_column: str, idx_column: str) -> np.ndarray:
    """MovieLens ids by dense index: ids[idx] (table and columns are fixed names from this module)."""
    return con.sql(f"SELECT {id_column} FROM {table} ORDER BY {idx_column}").to_arrow_table().column(0).to_numpy()


@dataclass
class Biases:
    """The training ratings' mean and damped user and movie biases: the cold-start fallback."""

    mean: float
    user: torch.Tensor  # n_users; 0 for users with no training rating
    movie: torch.Tensor  # n_movies; 0 for movies with no training rating
    movie_known: torch.Tensor  # n_movies, bool: the movie has a training rating


# Damping: a bias is shrunk towards 0 as if it had this many more ratings at the mean (the usual
# choice for MovieLens: Koren 2009, Funk 2006).
MOVIE_DAMPING, USER_DAMPING = 25, 10


def fit_biases(con: duckdb.DuckDBPyConnection, split: str, fit_parts: tuple[str, ...], info: DatasetInfo) -> Biases:
    """Mean and damped biases of the ratings in ``fit_parts`` only (never the test part)."""
    fit = ("SELECT user_idx, movie_idx, rating FROM split_ratings WHERE split = $split "
           "AND list_contains($parts, part)")
    params = {"split": split, "parts": list(fit_parts)}
    mean = con.execute(f"SELECT avg(rating) FROM ({fit})", params).fetchall()[0][0]
    movies = con.execute(
        f"SELECT movie_idx, sum(rating - $mean) / (count(*) + {MOVIE_DAMPING}) AS b FROM ({fit}) GROUP BY 1",
        params | {"mean": mean}).fetchnumpy()
    users = con.execute(
        f"""WITH movie_bias AS (SELECT movie_idx, sum(rating - $mean) / (count(*) + {MOVIE_DAMPING}) AS b
                                FROM ({fit}) GROUP BY 1)
            SELECT user_idx, sum(rating - $mean - b) / (count(*) + {USER_DAMPING}) AS b
            FROM ({fit}) JOIN movie_bias USING (movie_idx) GROUP BY 1""",
        params | {"mean": mean}).fetchnumpy()

    def dense(table: dict[str, np.ndarray], column: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        values, known = torch.zeros(size), torch.zeros(size, dtype=torch.bool)
        where = torch.from_numpy(table[column].astype(np.int64))
        values[where] = torch.from_numpy(np.asarray(table["b"], dtype=np.float32))
        known[where] = True
        return values, known

    user_bias, _ = dense(users, "user_idx", info.n_users)
    movie_bias, movie_known = dense(movies, "movie_idx", info.n_movies)
    return Biases(float(mean), user_bias, movie_bias, movie_known)


@torch.no_grad()
def _movie_codes(
    con: duckdb.DuckDBPyConnection, config: TrainConfig, info: DatasetInfo, fit_parts: tuple[str, ...],
    model: torch.nn.Module, device: torch.device,
) -> torch.Tensor:
    """A movie-row model's code (last hidden layer) of every movie, from the movies' training rows: movies x
    hidden units, where the scores themselves would be movies x users (15 GB at ml-20m)."""
    codes: torch.Tensor | None = None
    for movies, matrices in stream_rows(con, config.split, fit_parts, info.n_users, eval_rows(info.n_users), by="movie"):
        movies = movies.to(device)
        fit = merge_parts({part: m.to(device) for part, m in matrices.items()}, fit_parts)
        code = model.encode(fit.to_dense())
        if codes is None:
            codes = torch.zeros(info.n_movies, code.shape[1], device=device)
        codes[movies] = code
    assert codes is not None, "a split without movie rows"
    return codes


def _make_optimizer(config: TrainConfig, model: torch.nn.Module) -> Optimizer:
    return OPTIMIZERS[config.optimizer](model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)


def _new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _utc_now() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})"


def _json(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True)
