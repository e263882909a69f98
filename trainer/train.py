"""One training run, top to bottom: read the matrix, train, score, predict, stage and publish results.

The test part of the split is read once, after training, by `predict`: nothing during training or
model selection can see it.
"""

from __future__ import annotations

import json
import math
import platform
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import torch

from etl.export import open_features
from trainer import checkpoint, distributed, results
from trainer.config import TrainConfig, from_dict
from trainer.data import (
    Csr, DatasetInfo, check_split, dataset_info, first_rating, load_rows, matrix_bytes, merge_parts, open_warehouse,
    shard_ratings, stream_rows,
)
from trainer.errors import TrainerError
from trainer.evaluate import rating_metrics
from trainer.models import build_model
from trainer.optim import OPTIMIZERS, Optimizer

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


def eval_rows(n_movies: int) -> int:
    """Users per forward pass when scoring and predicting. Bounded by memory, not only by count: at
    ml-32m's 87,585 movies 4,096 users' dense inputs alone are 1.4 GB, and the outputs as much again."""
    return max(1, min(EVAL_ROWS, EVAL_BLOCK_BYTES // (4 * n_movies)))


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
        config = from_dict({**state["config"], "device": config.device, "lock_wait_seconds": config.lock_wait_seconds})
    run_id = state["run_id"] if state else distributed.broadcast(ctx, _new_run_id())
    run_dir = resume_dir or Path(config.runs_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
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
        data = TrainingData(con, config, info, fit_parts, device, ctx)
        log(
            f"{info.name} split {config.split}: {info.n_users:,} users x {info.n_movies:,} movies, "
            f"training on {'+'.join(fit_parts)}, "
            + ("matrix cached on " + device.type if data.cached else "streaming from DuckDB every epoch")
        )

        # -- model and optimiser (restored from the checkpoint when resuming)
        torch.manual_seed(config.seed)
        model = build_model(config.model, info.n_movies, config.hidden).to(device)
        optimizer = _make_optimizer(config, model)
        trained = distributed.wrap(model, ctx, device)  # the model itself when not under torchrun
        history: list[dict[str, Any]] = []
        start_epoch, train_seconds = 0, 0.0
        if state:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"].cpu())
            history, start_epoch, train_seconds = state["history"], state["epoch"], state["train_seconds"]
            log(f"resuming {run_id} after epoch {start_epoch}")

        # -- the training loop
        for epoch in range(start_epoch + 1, config.epochs + 1):
            epoch_start = time.perf_counter()
            model.train()
            squared_error = torch.zeros((), device=device)
            n_ratings = torch.zeros((), device=device)
            for batch in distributed.joined(trained, ctx, data.batches(epoch)):
                reconstruction = trained(batch.inputs)
                # Only observed ratings count: read the reconstruction at their positions (cheaper than
                # masking the whole users x movies output, and the same gradient).
                predicted = reconstruction.view(-1).index_select(0, batch.positions)
                batch_error = (predicted - batch.targets).square().sum()
                # "observed": mean over the observed ratings; "all_movies": the notebook's MSELoss over
                # every movie with unobserved outputs zeroed. Same minimiser, different gradient scale.
                loss = batch_error / (batch.targets.numel() if config.loss == "observed" else reconstruction.numel())
                loss = loss * data.shard_weight  # 1 in one process; see TrainingData
                if not config.accumulate_gradients:
                    optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                squared_error += batch_error.detach()
                n_ratings += batch.targets.numel()
            squared, count = distributed.all_sum(ctx, device, squared_error.item(), n_ratings.item())
            metrics: dict[str, Any] = {
                "epoch": epoch,
                "train_rmse": math.sqrt(squared / max(count, 1.0)),
                "validation_rmse": None,
            }
            if config.validation and (epoch % config.eval_every == 0 or epoch == config.epochs):
                metrics["validation_rmse"] = data.validation_rmse(model)
            metrics["seconds"] = time.perf_counter() - epoch_start
            train_seconds += metrics["seconds"]
            history.append(metrics)
            on_epoch(metrics)
            if ctx.is_main and (epoch % config.checkpoint_every == 0 or epoch == config.epochs):
                checkpoint.save(run_dir, {
                    "run_id": run_id, "started_at": started_at, "config": config.to_dict(), "epoch": epoch,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "rng": torch.get_rng_state(), "history": history, "train_seconds": train_seconds,
                    "fingerprint": info.fingerprint,
                })

        if ctx.active:
            # Rank 0 alone scores and writes; DuckDB lets nobody read while it writes, so the others close first.
            if not ctx.is_main:
                con.close()
            distributed.barrier(ctx)
            if not ctx.is_main:
                distributed.teardown(ctx)
                return RunSummary(run_id, run_dir, {}, train_seconds, time.perf_counter() - wall_start, history)

        # -- score the test part (read here for the first time) and predict
        predictions, scores = predict(con, config, info, fit_parts, model, device, run_id)
    finally:
        con.close()

    wall_seconds = time.perf_counter() - wall_start
    last_validation = next((h["validation_rmse"] for h in reversed(history) if h["validation_rmse"] is not None), None)
    run_row = {
        "run_id": run_id, "started_at": started_at, "finished_at": _utc_now(), "model": config.model,
        "split": config.split, "seed": config.seed, "dataset_name": info.name,
        "dataset_fingerprint": info.fingerprint, "device": _device_name(device), "epochs": config.epochs,
        "train_seconds": train_seconds, "wall_seconds": wall_seconds, "validation_rmse": last_validation,
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
    if config.features and not warehouse.exists():  # a trainer given only the Parquet features
        log(f"no warehouse at {warehouse}: the results stay in {run_dir}; write them into one with "
            f"trainer publish {run_dir} --warehouse PATH")
    else:
        results.publish(run_dir, warehouse, config.lock_wait_seconds)
    distributed.teardown(ctx)
    return RunSummary(run_id, run_dir, scores, train_seconds, wall_seconds, history)


@dataclass
class Batch:
    """Users' rating rows as the model's dense input, and where in it the observed ratings are."""

    inputs: torch.Tensor  # users x movies, 0 where unrated
    positions: torch.Tensor  # flat indexes into inputs (row * n_movies + movie) of the observed ratings
    targets: torch.Tensor  # the observed ratings, aligned with positions

    @staticmethod
    def of(rows: Csr, inputs: torch.Tensor | None = None) -> Batch:
        inputs = rows.to_dense() if inputs is None else inputs
        return Batch(inputs, rows.row_ids() * rows.n_cols + rows.cols, rows.vals)


class TrainingData:
    """The training matrix as batches on the device, plus the validation targets.

    When the CSR of the training (and validation) part fits ``cache_budget_mb`` it is read once and
    kept on the device, and the dense users x movies matrix too when that also fits. Otherwise every
    epoch streams the rows out of DuckDB, so memory is bounded by the batch, not by users x movies.
    """

    def __init__(
        self, con: duckdb.DuckDBPyConnection, config: TrainConfig, info: DatasetInfo,
        fit_parts: tuple[str, ...], device: torch.device, ctx: distributed.Context = distributed.Context(),
    ) -> None:
        self.con, self.config, self.info, self.fit_parts, self.device = con, config, info, fit_parts, device
        # Under torchrun each rank holds its shard of the users and takes its share of every batch. Its loss
        # is weighted by its shard's share of the ratings (x world size), so that the mean gradient DDP takes
        # over the ranks is the gradient over every rating: exactly the one process's, with full batches.
        self.ctx, self.batch_size, self.shard_weight = ctx, -(-config.batch_size // ctx.world_size), 1.0
        if ctx.shard:
            mine = shard_ratings(con, config.split, fit_parts, ctx.shard)
            self.shard_weight = mine * ctx.world_size / distributed.all_sum(ctx, device, mine)[0]
        parts = fit_parts + (("validation",) if config.validation else ())
        budget = config.cache_budget_mb * 2**20
        self.cached = matrix_bytes(con, config.split, parts) <= budget
        self.fit: Csr | None = None
        self.validation: Csr | None = None
        self.dense: torch.Tensor | None = None
        self._fixed_batches: list[Batch] | None = None
        # The notebook quirk: the rating on the first line of the training file was never seen.
        self._lost = first_rating(con, config.split, fit_parts) if config.drop_first_rating else None
        if self.cached:
            users, matrices = load_rows(con, config.split, parts, info.n_movies, shard=ctx.shard)
            self.fit = self._fit_matrix(users, matrices).to(device)
            if config.validation:
                self.validation = matrices["validation"].to(device)
            if info.n_users * info.n_movies * 4 <= budget:
                self.dense = self.fit.to_dense()
                self._full_batch = Batch.of(self.fit, self.dense)

    def _fit_matrix(self, users: torch.Tensor, matrices: dict[str, Csr]) -> Csr:
        fit = merge_parts(matrices, self.fit_parts)
        return fit.without(users, *self._lost) if self._lost else fit

    def batches(self, epoch: int) -> Iterator[Batch]:
        config = self.config
        if not self.cached:
            seed = config.seed * 1_000_003 + epoch if config.shuffle else None
            for users, matrices in stream_rows(self.con, config.split, self.fit_parts, self.info.n_movies,
                                               self.batch_size, shuffle_seed=seed, shard=self.ctx.shard):
                rows = self._fit_matrix(users, matrices).to(self.device, non_blocking=True)
                if rows.cols.numel():
                    yield Batch.of(rows)
            return
        assert self.fit is not None
        n_rows = self.fit.n_rows
        if self.dense is not None and self.batch_size >= n_rows:
            yield self._full_batch  # one batch of every user: row order does not change the step
            return
        if not config.shuffle:
            # The same batches every epoch: build them once (the notebook preset takes 189,000 steps).
            if self._fixed_batches is None:
                self._fixed_batches = list(self._batches_in_order(None))
            yield from self._fixed_batches
            return
        order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(config.seed * 1_000_003 + epoch))
        yield from self._batches_in_order(order.to(self.device))

    def _batches_in_order(self, order: torch.Tensor | None) -> Iterator[Batch]:
        """Batches of users taken in ``order`` (None: as they are stored).

        Each batch gathers its own rows: one gather of the whole matrix per epoch was 10x slower on
        ml-1m (a fresh 88 MB copy every epoch), small gathers stay in cache.
        """
        assert self.fit is not None
        for start in range(0, self.fit.n_rows, self.batch_size):
            end = min(start + self.batch_size, self.fit.n_rows)
            rows = None if order is None else order[start:end]
            part = self.fit.slice(start, end) if rows is None else self.fit.select(rows)
            if part.cols.numel() == 0:  # nothing to learn from (the notebook skipped such users too)
                continue
            if self.dense is None:
                inputs = part.to_dense()
            else:
                inputs = self.dense[start:end] if rows is None else self.dense.index_select(0, rows)
            yield Batch.of(part, inputs)

    @torch.no_grad()
    def validation_rmse(self, model: torch.nn.Module) -> float:
        """Global RMSE on the validation slice, predictions clipped as they will be at the end."""
        model.eval()
        squared, count = 0.0, 0
        for inputs, targets in self._validation_blocks():
            predicted = model.predict_at(inputs, targets.row_ids(), targets.cols)
            if self.config.clip:
                predicted = predicted.clamp(self.info.rating_min, self.info.rating_max)
            squared += (predicted - targets.vals).square().sum().item()
            count += targets.vals.numel()
        squared, count = distributed.all_sum(self.ctx, self.device, squared, count)
        return math.sqrt(squared / max(count, 1))

    def _validation_blocks(self) -> Iterator[tuple[torch.Tensor, Csr]]:
        """(dense inputs, validation targets) for blocks of users, from the cache or streamed."""
        if not self.cached:
            for users, matrices in stream_rows(self.con, self.config.split, self.fit_parts + ("validation",),
                                               self.info.n_movies, eval_rows(self.info.n_movies), shard=self.ctx.shard):
                yield self._fit_matrix(users, matrices).to(self.device).to_dense(), matrices["validation"].to(self.device)
            return
        assert self.fit is not None and self.validation is not None
        block = eval_rows(self.info.n_movies)
        for start in range(0, self.fit.n_rows, block):
            end = min(start + block, self.fit.n_rows)
            inputs = self.dense[start:end] if self.dense is not None else self.fit.slice(start, end).to_dense()
            yield inputs, self.validation.slice(start, end)


@torch.no_grad()
def predict(
    con: duckdb.DuckDBPyConnection, config: TrainConfig, info: DatasetInfo, fit_parts: tuple[str, ...],
    model: torch.nn.Module, device: torch.device, run_id: str,
) -> tuple[pa.Table, dict[str, float]]:
    """Score every held-out test rating and rank each user's unseen movies, in one streamed pass.

    Cold start: a user with no training rating is predicted the movie's mean training rating, a movie
    with no training rating the user's mean (the global mean when both are unknown), and counted.
    """
    model.eval()
    user_ids = _ids(con, "user_index", "user_id", "user_idx")
    movie_ids = _ids(con, "movie_index", "movie_id", "movie_idx")
    global_mean, user_mean, movie_mean = _fit_means(con, config.split, fit_parts, info)
    user_mean, movie_mean = user_mean.to(device), movie_mean.to(device)
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
        scores = model(fit.to_dense())
        if config.clip:
            scores = scores.clamp(info.rating_min, info.rating_max)

        # held-out test ratings
        rows, cols = test.row_ids(), test.cols
        predicted = scores[rows, cols]
        cold = (fit.counts[rows] == 0) | torch.isnan(movie_mean[cols])
        if config.cold_start_fallback:
            fallback = torch.where(fit.counts[rows] == 0, movie_mean[cols], user_mean[users[rows]])
            fallback = torch.nan_to_num(fallback, nan=global_mean)
            predicted = torch.where(cold, fallback, predicted)
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


def _fit_means(
    con: duckdb.DuckDBPyConnection, split: str, fit_parts: tuple[str, ...], info: DatasetInfo
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Mean training rating overall, per user and per movie (NaN where there is none)."""
    parts = list(fit_parts)
    global_mean = con.execute(
        "SELECT avg(rating) FROM split_ratings WHERE split = ? AND list_contains(?, part)", [split, parts]
    ).fetchall()[0][0]

    def means(idx_column: str, size: int) -> torch.Tensor:
        table = con.execute(
            f"SELECT {idx_column}, avg(rating) FROM split_ratings WHERE split = ? AND list_contains(?, part) GROUP BY 1",
            [split, parts],
        ).fetchnumpy()
        out = torch.full((size,), math.nan)
        out[torch.from_numpy(table[idx_column].astype(np.int64))] = torch.from_numpy(
            np.asarray(table["avg(rating)"], dtype=np.float32))
        return out

    return float(global_mean), means("user_idx", info.n_users), means("movie_idx", info.n_movies)


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
