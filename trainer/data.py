"""Reading the warehouse: the data set's facts and the rating matrices, as CSR batches on the device, and
TrainingData, which batches the training matrix for the loop: CachedRows (kept on the device) or StreamedRows
(read out of DuckDB every epoch).

The warehouse is only ever opened read-only here, so analysts (and other trainers) can read it while
a run trains. user_matrix holds one row per user and split, each part (train, validation, test) a pair
of aligned lists: exactly the column indexes and values of a CSR row. Batches stream out of DuckDB as
Arrow record batches; the list offsets and values become torch tensors without a Python loop.
"""

from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import torch

from trainer import distributed, notebook
from trainer.config import TrainConfig
from trainer.errors import UnknownSplit
from trainer.sparse import Csr, SparseBlock, merge_parts
from warehouse.connect import open_for_reading

PARTS = ("train", "validation", "test")
EVAL_ROWS = 4096  # rows per forward pass when scoring and predicting ...
EVAL_BLOCK_BYTES = 256 * 2**20  # ... fewer when their dense rows x columns block would pass this


def eval_rows(n_cols: int) -> int:
    """Rows per forward pass when scoring and predicting. Bounded by memory, not only by count: at
    ml-32m's 87,585 movies 4,096 users' dense inputs alone are 1.4 GB, and the outputs as much again."""
    return max(1, min(EVAL_ROWS, EVAL_BLOCK_BYTES // (4 * n_cols)))


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    fingerprint: str
    n_users: int
    n_movies: int
    rating_min: float
    rating_max: float
    mean_rating: float


def open_warehouse(path: Path, lock_wait_seconds: float) -> duckdb.DuckDBPyConnection:
    """A read-only connection to a warehouse holding what training reads."""
    return open_for_reading(
        path, lock_wait_seconds, needs=("dataset", "splits", "user_matrix", "user_index", "movie_index")
    )


def dataset_info(con: duckdb.DuckDBPyConnection) -> DatasetInfo:
    row = con.execute(
        "SELECT name, fingerprint, n_users, n_movies, rating_min, rating_max, mean_rating FROM dataset"
    ).fetchall()[0]
    return DatasetInfo(*row)


def check_split(con: duckdb.DuckDBPyConnection, split: str) -> None:
    known = [row[0] for row in con.execute("SELECT split FROM splits ORDER BY split").fetchall()]
    if split not in known:
        raise UnknownSplit(split, known)


# The two matrices a model can read rows of: user rows (user_matrix, lists of movie indexes) or movie
# rows (movie_matrix, lists of user indexes), as (table, row index column, column index prefix).
ORIENTATIONS = {"user": ("user_matrix", "user_idx", "movie_idx"), "movie": ("movie_matrix", "movie_idx", "user_idx")}


def _columns(parts: tuple[str, ...], by: str) -> str:
    """The SELECT list for the named parts; part names come from PARTS only, never from input."""
    for part in parts:
        if part not in PARTS:
            raise ValueError(f"unknown matrix part {part!r}")
    return ", ".join(f"{p}_{ORIENTATIONS[by][2]}, {p}_rating" for p in parts)


def stream_rows(
    con: duckdb.DuckDBPyConnection,
    split: str,
    parts: tuple[str, ...],
    n_cols: int,
    batch_rows: int,
    shuffle_seed: int | None = None,
    by: str = "user",
    shard: tuple[int, int] | None = None,
) -> Iterator[tuple[torch.Tensor, dict[str, Csr]]]:
    """Stream user rows of one split as (user_idx, {part: Csr}) batches of at most ``batch_rows`` users
    (movie rows, as (movie_idx, {part: Csr}), with ``by="movie"``; ``n_cols`` is then the number of users).

    Memory stays bounded by the batch, whatever the number of users. With ``shuffle_seed`` the users
    come in a seeded random order (a different one per seed), else in user_idx order. With ``shard``
    (rank, world size) only the rows whose index % world size == rank come (torchrun). A background
    thread reads the next batch out of DuckDB while the caller computes on the current one.
    """
    table, key, _ = ORIENTATIONS[by]
    order = f"hash({key}, $seed)" if shuffle_seed is not None else key
    sharded = f"AND {key} % $world = $rank" if shard else ""
    query = f"SELECT {key}, {_columns(parts, by)} FROM {table} WHERE split = $split {sharded} ORDER BY {order}"
    params = {"split": split} | ({"seed": shuffle_seed} if shuffle_seed is not None else {})
    params |= {"rank": shard[0], "world": shard[1]} if shard else {}
    # Its own cursor: the reader keeps the connection busy while the caller may run other queries.
    cursor = con.cursor()
    reader = cursor.sql(query, params=params).to_arrow_reader(batch_rows)

    def convert(batch: pa.RecordBatch) -> tuple[torch.Tensor, dict[str, Csr]]:
        users = torch.from_numpy(batch.column(key).to_numpy().astype(np.int64))
        matrices = {
            p: Csr.from_arrow(batch.column(f"{p}_{ORIENTATIONS[by][2]}"), batch.column(f"{p}_rating"), n_cols)
            for p in parts
        }
        return users, matrices

    try:
        yield from _prefetch(convert(batch) for batch in reader)
    finally:  # also when the caller stops early: the reader's thread is joined first
        cursor.close()


def load_rows(
    con: duckdb.DuckDBPyConnection,
    split: str,
    parts: tuple[str, ...],
    n_cols: int,
    by: str = "user",
    shard: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, dict[str, Csr]]:
    """Every user (or movie) row of a split (or of a shard), in index order, as one CSR per part (for the
    device cache)."""
    batches = list(stream_rows(con, split, parts, n_cols, batch_rows=65536, by=by, shard=shard))
    users = torch.cat([users for users, _ in batches])
    return users, {p: Csr.concat([m[p] for _, m in batches]) for p in parts}


def user_rows_with_validation(
    con: duckdb.DuckDBPyConnection, split: str, fit_parts: tuple[str, ...], validation: bool, n_movies: int
) -> tuple[torch.Tensor, Csr, Csr | None]:
    """Every user's row of the training matrix (``fit_parts`` merged) and, when ``validation``, of the validation
    slice, in index order: what a model fitted outside the training loop reads (bayes-fm, ease)."""
    parts = fit_parts + (("validation",) if validation else ())
    index, matrices = load_rows(con, split, parts, n_movies)
    return index, merge_parts(matrices, fit_parts), matrices["validation"] if validation else None


def rating_sessions(con: duckdb.DuckDBPyConnection, split: str, parts: tuple[str, ...], gap: int, n_movies: int) -> Csr:
    """Every user's ratings in these parts of the split, cut into sessions: a pause of more than ``gap`` seconds
    between two of her ratings (in time order) starts a new one. One row per session, in user and time order: the
    rows ease also fits on (--ease-session-gap). Only these parts' times are read."""
    _columns(parts, "user")  # checks the part names: an unknown one would match no rating
    timed = con.execute(
        """SELECT s.user_idx, s.movie_idx, s.rating, epoch(r.rated_at) AS seconds
           FROM split_ratings AS s JOIN ratings AS r USING (user_id, movie_id)
           WHERE s.split = ? AND list_contains(?, s.part)
           ORDER BY s.user_idx, seconds, s.movie_idx""",
        [split, list(parts)],
    ).fetchnumpy()
    users, seconds = timed["user_idx"], np.asarray(timed["seconds"], dtype=np.float64)
    starts = np.ones(len(users), dtype=bool)
    starts[1:] = (users[1:] != users[:-1]) | (np.diff(seconds) > gap)
    offsets = np.append(np.flatnonzero(starts), len(users))
    return Csr(
        torch.from_numpy(offsets.astype(np.int64)),
        torch.from_numpy(np.asarray(timed["movie_idx"], dtype=np.int64)),
        torch.from_numpy(np.asarray(timed["rating"], dtype=np.float32)),
        n_movies,
    )


def count_ratings(con: duckdb.DuckDBPyConnection, split: str, parts: tuple[str, ...]) -> int:
    """How many ratings these parts of the split hold (from the splits table)."""
    _columns(parts, "user")  # checks the part names before they go into the query
    columns = " + ".join(f"n_{p}" for p in parts)
    return int(con.execute(f"SELECT {columns} FROM splits WHERE split = ?", [split]).fetchall()[0][0])


def matrix_bytes(con: duckdb.DuckDBPyConnection, split: str, parts: tuple[str, ...]) -> int:
    """What the cache of these parts takes in memory: 28 bytes an entry. The CSR is 12 (int64 column,
    float32 value); training from sparse products adds the batches' int32 columns (4), and their
    transposes' int32 rows and int64 entry order (12)."""
    return count_ratings(con, split, parts) * 28


def shard_ratings(
    con: duckdb.DuckDBPyConnection, split: str, parts: tuple[str, ...], shard: tuple[int, int], by: str = "user"
) -> int:
    """How many ratings of these parts the rows of one shard (rank, world size) hold."""
    _columns(parts, by)  # checks the part names, which are spliced below
    table, key, col = ORIENTATIONS[by]
    lengths = " + ".join(f"len({p}_{col})" for p in parts)
    return int(
        con.execute(
            f"SELECT coalesce(sum({lengths}), 0) FROM {table} WHERE split = ? AND {key} % ? = ?",
            [split, shard[1], shard[0]],
        ).fetchall()[0][0]
    )


def _prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """Run an iterator one step ahead in a thread (DuckDB and torch release the GIL while working). A consumer
    that stops early (a diverged run, an error) stops the thread too: it is joined before this generator ends,
    so nothing is left reading the caller's cursor."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def offer(item: object) -> bool:
        """Put an item for the consumer, unless it stopped listening."""
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def fill() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            offer(error)
            return
        offer(done)

    thread = threading.Thread(target=fill, daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


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


def dense_output(config: TrainConfig, device: torch.device, dense_on_gpu: bool) -> bool:
    """Whether training needs the model's whole rows x columns output rather than its outputs at the
    observed ratings: for the notebook's loss over every movie, for dense re-feeding, and on a GPU for the
    models whose sparse kernels there have not been measured (``dense_on_gpu``, docs/gpu.md)."""
    return config.loss == "all_movies" or config.refeed or (device.type != "cpu" and dense_on_gpu)


class TrainingData(ABC):
    """The training matrix (user rows, or movie rows with ``rows="movie"``) as batches on the device, plus the
    validation targets: CachedRows or StreamedRows, as ``training_data_class`` picks by the cache budget. The loop and
    model selection use only this interface."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        config: TrainConfig,
        info: DatasetInfo,
        fit_parts: tuple[str, ...],
        device: torch.device,
        rows: str = "user",
        sparse: bool = True,
        ctx: distributed.Context = distributed.Context(),
    ) -> None:
        self.con, self.config, self.info, self.fit_parts, self.device = con, config, info, fit_parts, device
        self.rows = rows
        self.n_cols = info.n_movies if rows == "user" else info.n_users
        self.sparse = sparse
        # Under torchrun each rank holds its shard of the rows and takes its share of every batch. Its loss
        # is weighted by its shard's share of the ratings (x world size), so that the mean gradient DDP takes
        # over the ranks is the gradient over every rating: exactly the one process's, with full batches.
        self.ctx, self.batch_size, self.shard_weight = ctx, -(-config.batch_size // ctx.world_size), 1.0
        if ctx.shard:
            mine = shard_ratings(con, config.split, fit_parts, ctx.shard, by=rows)
            self.shard_weight = mine * ctx.world_size / distributed.all_sum(ctx, device, mine)[0]
        self.n_ratings = count_ratings(con, config.split, fit_parts)
        self._unread = notebook.unread(con, config, fit_parts)
        self._load()

    @abstractmethod
    def _load(self) -> None:
        """Read what the class keeps for the whole run."""

    @property
    @abstractmethod
    def held(self) -> str:
        """Where the rows come from each epoch, for the run's log."""

    @abstractmethod
    def batches(self, epoch: int) -> Iterator[Batch]:
        """The training batches of one epoch (its number seeds their order)."""

    @abstractmethod
    def validation_blocks(self, whole: bool) -> Iterator[tuple[torch.Tensor | SparseBlock, torch.Tensor, Csr]]:
        """(inputs, their row indexes, validation targets) for blocks of rows; ``whole``: one block of every row (a
        model whose rows read each other, trainer/selection.py)."""

    def _validation_block_rows(self, whole: bool) -> int:
        n_rows = self.info.n_users if self.rows == "user" else self.info.n_movies
        return n_rows if whole else eval_rows(self.n_cols)

    def _fit_matrix(self, index: torch.Tensor, matrices: dict[str, Csr]) -> Csr:
        """The training rows of a block whose indexes are ``index``: its fit parts merged, as the run reads them."""
        return self._unread.remove(index, merge_parts(matrices, self.fit_parts), by=self.rows)

    def _inputs(self, rows: Csr, dense: torch.Tensor | None = None) -> torch.Tensor | SparseBlock:
        """``rows`` as the model takes them: a SparseBlock on the sparse path, else dense (``dense``, the
        same rows of the cached dense matrix, when there is one)."""
        if self.sparse:
            return rows.block()
        return dense if dense is not None else rows.to_dense()


def training_data_class(
    con: duckdb.DuckDBPyConnection, config: TrainConfig, fit_parts: tuple[str, ...]
) -> type[TrainingData]:
    """CachedRows, the training matrix kept on the device, when the CSR of the training (and validation) part fits
    ``cache_budget_mb``; else StreamedRows, read out of DuckDB every epoch."""
    fits = matrix_bytes(con, config.split, _cached_parts(config, fit_parts)) <= config.machine.cache_budget_mb * 2**20
    return CachedRows if fits else StreamedRows


def _cached_parts(config: TrainConfig, fit_parts: tuple[str, ...]) -> tuple[str, ...]:
    """The parts the cache holds: the training parts, and the validation slice when the run holds it out."""
    return fit_parts + (("validation",) if config.validation else ())


class CachedRows(TrainingData):
    """The training (and validation) rows read once and kept on the device, dealt into batches of rows once (at
    random, unless ``shuffle`` is off); each epoch takes those batches in a new order, so a batch's sparse structure
    (and its transpose, which the weight gradients need) is built once, not every epoch."""

    def _load(self) -> None:
        con, config, info, fit_parts, rows, ctx = self.con, self.config, self.info, self.fit_parts, self.rows, self.ctx
        device = self.device
        parts = _cached_parts(config, fit_parts)
        index, matrices = load_rows(con, config.split, parts, self.n_cols, by=rows, shard=ctx.shard)
        fit = self._fit_matrix(index, matrices)
        validation = matrices["validation"] if config.validation else None
        if config.shuffle and config.fixed_batches:  # dealt once, at random
            order = torch.randperm(fit.n_rows, generator=torch.Generator().manual_seed(config.seed * 1_000_003))
            fit, index = fit.select(order), index[order]
            validation = validation.select(order) if validation is not None else None
        self.fit, self.index = fit.to(device), index.to(device)
        # None: the run trains on the validation slice rather than holding it out
        self.validation = validation.to(device) if validation is not None else None
        # The whole matrix dense as well, where the dense path reads it and it fits dense_cache_mb.
        dense_fits = info.n_users * info.n_movies * 4 <= config.machine.dense_cache_mb * 2**20
        self.dense = self.fit.to_dense() if not self.sparse and dense_fits else None
        # Rows with nothing to learn from make no batch (the notebook skipped such users too).
        counts = self.fit.offsets[:: self.batch_size].tolist() + [int(self.fit.offsets[-1])]
        self._ranges = [
            (start, min(start + self.batch_size, self.fit.n_rows))
            for start, first, last in zip(range(0, self.fit.n_rows, self.batch_size), counts, counts[1:])
            if last > first
        ]
        self._kept: dict[int, Batch] = {}  # batches, by range

    @property
    def held(self) -> str:
        return "matrix cached on " + self.device.type

    def batches(self, epoch: int) -> Iterator[Batch]:
        config = self.config
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        if config.shuffle and not config.fixed_batches:
            yield from self._dealt_batches(torch.randperm(self.fit.n_rows, generator=generator).to(self.device))
            return
        order: list[int] = list(range(len(self._ranges)))
        if config.shuffle:
            order = torch.randperm(len(self._ranges), generator=generator).tolist()
        for i in order:
            yield self._cached_batch(i)

    def _dealt_batches(self, order: torch.Tensor) -> Iterator[Batch]:
        """Batches of the cached rows taken in ``order``: each gathers its own rows (one gather of the whole
        matrix per epoch was 10x slower on ml-1m, a fresh copy every epoch; small gathers stay in cache)."""
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
        start, end = self._ranges[i]
        rows, index = self.fit.slice(start, end), self.index[start:end]
        batch = Batch(self._inputs(rows, self.dense[start:end] if self.dense is not None else None), index, rows)
        if self.sparse or self.dense is not None:
            self._kept[i] = batch
        return batch

    def validation_blocks(self, whole: bool) -> Iterator[tuple[torch.Tensor | SparseBlock, torch.Tensor, Csr]]:
        if self.validation is None:
            raise ValueError("this run trains on the validation slice: it holds none out to score")
        block = self._validation_block_rows(whole)
        for start in range(0, self.fit.n_rows, block):
            end = min(start + block, self.fit.n_rows)
            dense = self.dense[start:end] if self.dense is not None else None
            yield (
                self._inputs(self.fit.slice(start, end), dense),
                self.index[start:end],
                self.validation.slice(start, end),
            )


class StreamedRows(TrainingData):
    """The training rows streamed out of DuckDB every epoch, in a new order, so memory is bounded by the batch, not
    by users x movies."""

    def _load(self) -> None:
        """Nothing: every epoch reads its rows anew."""

    @property
    def held(self) -> str:
        return "streaming from DuckDB every epoch"

    def batches(self, epoch: int) -> Iterator[Batch]:
        config = self.config
        seed = config.seed * 1_000_003 + epoch if config.shuffle else None
        for index, matrices in stream_rows(
            self.con,
            config.split,
            self.fit_parts,
            self.n_cols,
            self.batch_size,
            shuffle_seed=seed,
            by=self.rows,
            shard=self.ctx.shard,
        ):
            rows = self._fit_matrix(index, matrices).to(self.device, non_blocking=True)
            if rows.cols.numel():
                yield Batch(self._inputs(rows), index.to(self.device, non_blocking=True), rows)

    def validation_blocks(self, whole: bool) -> Iterator[tuple[torch.Tensor | SparseBlock, torch.Tensor, Csr]]:
        for index, matrices in stream_rows(
            self.con,
            self.config.split,
            self.fit_parts + ("validation",),
            self.n_cols,
            self._validation_block_rows(whole),
            by=self.rows,
            shard=self.ctx.shard,
        ):
            fit = self._fit_matrix(index, matrices).to(self.device)
            yield self._inputs(fit), index.to(self.device), matrices["validation"].to(self.device)
