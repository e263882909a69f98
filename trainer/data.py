"""Reading the warehouse: the data set's facts and the rating matrices, as CSR batches on the device.

The warehouse is only ever opened read-only here, so analysts (and other trainers) can read it while
a run trains. user_matrix holds one row per user and split, each part (train, validation, test) a pair
of aligned lists: exactly the column indexes and values of a CSR row. Batches stream out of DuckDB as
Arrow record batches; the list offsets and values become torch tensors without a Python loop.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import torch

from trainer.errors import TrainerError
from trainer.sparse import SparseBlock, entry_rows
from warehouse.connect import open_for_reading

PARTS = ("train", "validation", "test")


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
    return open_for_reading(path, lock_wait_seconds, needs=("dataset", "splits", "user_matrix", "user_index", "movie_index"))


def dataset_info(con: duckdb.DuckDBPyConnection) -> DatasetInfo:
    row = con.execute(
        "SELECT name, fingerprint, n_users, n_movies, rating_min, rating_max, mean_rating FROM dataset"
    ).fetchall()[0]
    return DatasetInfo(*row)


def check_split(con: duckdb.DuckDBPyConnection, split: str) -> None:
    known = [row[0] for row in con.execute("SELECT split FROM splits ORDER BY split").fetchall()]
    if split not in known:
        raise TrainerError(f"unknown split {split!r}: this warehouse has {', '.join(known)}")


@dataclass
class Csr:
    """Rows of a sparse matrix: row i holds cols[offsets[i]:offsets[i+1]] with vals alongside."""

    offsets: torch.Tensor  # int64, n_rows + 1
    cols: torch.Tensor  # int64
    vals: torch.Tensor  # float32
    n_cols: int

    @property
    def n_rows(self) -> int:
        return self.offsets.numel() - 1

    @property
    def counts(self) -> torch.Tensor:
        return self.offsets.diff()

    def row_ids(self) -> torch.Tensor:
        """The row of every stored entry (COO rows)."""
        return entry_rows(self.offsets, self.cols.numel())

    def select(self, rows: torch.Tensor) -> Csr:
        """The given rows, in the given order (a gather: works the same on CPU and GPU)."""
        counts = self.counts[rows]
        offsets = torch.zeros(rows.numel() + 1, dtype=torch.int64, device=rows.device)
        torch.cumsum(counts, 0, out=offsets[1:])
        total = int(offsets[-1])
        shift = torch.repeat_interleave(self.offsets[rows] - offsets[:-1], counts, output_size=total)
        positions = torch.arange(total, device=rows.device) + shift
        return Csr(offsets, self.cols.index_select(0, positions), self.vals.index_select(0, positions), self.n_cols)

    def slice(self, start: int, end: int) -> Csr:
        """Rows start..end-1: views into this matrix, no copy."""
        first, last = int(self.offsets[start]), int(self.offsets[end])
        return Csr(self.offsets[start : end + 1] - first, self.cols[first:last], self.vals[first:last], self.n_cols)

    def to_dense(self) -> torch.Tensor:
        dense = torch.zeros(self.n_rows, self.n_cols, device=self.vals.device)
        dense[self.row_ids(), self.cols] = self.vals
        return dense

    def block(self) -> SparseBlock:
        """These rows as the models' sparse products take them (trainer/sparse.py)."""
        return SparseBlock(self.offsets, self.cols, self.vals, self.n_cols)

    def to(self, device: torch.device, non_blocking: bool = False) -> Csr:
        if device.type == "cuda" and self.offsets.device.type == "cpu":
            # Pinned host memory lets the copy overlap with compute.
            tensors = [t.pin_memory() for t in (self.offsets, self.cols, self.vals)]
        else:
            tensors = [self.offsets, self.cols, self.vals]
        offsets, cols, vals = (t.to(device, non_blocking=non_blocking) for t in tensors)
        return Csr(offsets, cols, vals, self.n_cols)

    def without(self, users: torch.Tensor, user: int, movie: int) -> Csr:
        """This block of rows (whose user indexes are ``users``) without the entry (user, movie), if held."""
        rows = self.row_ids()
        keep = (users[rows] != user) | (self.cols != movie)
        if bool(keep.all()):
            return self
        counts = torch.bincount(rows[keep], minlength=self.n_rows)
        offsets = torch.zeros_like(self.offsets)
        torch.cumsum(counts, 0, out=offsets[1:])
        return Csr(offsets, self.cols[keep], self.vals[keep], self.n_cols)

    @staticmethod
    def from_arrow(indexes: pa.Array, ratings: pa.Array, n_cols: int) -> Csr:
        """CSR from two aligned Arrow list arrays; their offsets and values are the CSR arrays."""
        offsets = indexes.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        cols = indexes.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
        vals = ratings.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        offsets = offsets - offsets[0]  # a sliced batch's offsets need not start at 0
        return Csr(torch.from_numpy(offsets), torch.from_numpy(cols), torch.from_numpy(vals), n_cols)

    @staticmethod
    def concat(parts: list[Csr]) -> Csr:
        """Rows of several CSR blocks stacked (each block's offsets shifted past the ones before)."""
        offsets, shift = [parts[0].offsets[:1]], 0
        for part in parts:
            offsets.append(part.offsets[1:] + shift)
            shift += int(part.offsets[-1])
        return Csr(
            torch.cat(offsets), torch.cat([p.cols for p in parts]), torch.cat([p.vals for p in parts]), parts[0].n_cols
        )

    @staticmethod
    def merge(a: Csr, b: Csr) -> Csr:
        """Row-wise union of two matrices with the same rows (e.g. train and validation)."""
        rows = torch.cat([a.row_ids(), b.row_ids()])
        order = torch.argsort(rows, stable=True)
        counts = a.counts + b.counts
        offsets = torch.zeros_like(a.offsets)
        torch.cumsum(counts, 0, out=offsets[1:])
        return Csr(offsets, torch.cat([a.cols, b.cols])[order], torch.cat([a.vals, b.vals])[order], a.n_cols)


def merge_parts(matrices: dict[str, Csr], parts: tuple[str, ...]) -> Csr:
    """The row-wise union of the named parts (e.g. train and validation as one training matrix)."""
    merged = matrices[parts[0]]
    for part in parts[1:]:
        merged = Csr.merge(merged, matrices[part])
    return merged


def first_rating(con: duckdb.DuckDBPyConnection, split: str, parts: tuple[str, ...]) -> tuple[int, int] | None:
    """(user_idx, movie_idx) of the rating a sorted ratings file of these parts starts with (u1.base and
    u1.test are sorted by user, then movie), or None when there is none."""
    rows = con.execute(
        "SELECT user_idx, movie_idx FROM split_ratings WHERE split = ? AND list_contains(?, part) "
        "ORDER BY user_id, movie_id LIMIT 1",
        [split, list(parts)],
    ).fetchall()
    return rows[0] if rows else None


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

    yield from _prefetch(convert(batch) for batch in reader)
    cursor.close()


def load_rows(
    con: duckdb.DuckDBPyConnection, split: str, parts: tuple[str, ...], n_cols: int, by: str = "user",
    shard: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, dict[str, Csr]]:
    """Every user (or movie) row of a split (or of a shard), in index order, as one CSR per part (for the device cache)."""
    batches = list(stream_rows(con, split, parts, n_cols, batch_rows=65536, by=by, shard=shard))
    users = torch.cat([users for users, _ in batches])
    return users, {p: Csr.concat([m[p] for _, m in batches]) for p in parts}


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
    return int(con.execute(
        f"SELECT coalesce(sum({lengths}), 0) FROM {table} WHERE split = ? AND {key} % ? = ?",
        [split, shard[1], shard[0]],
    ).fetchall()[0][0])


def _prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """Run an iterator one step ahead in a thread (DuckDB and torch release the GIL while working)."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def fill() -> None:
        try:
            for item in items:
                slots.put(item)
        except BaseException as error:  # handed to the consumer, raised there
            slots.put(error)
        slots.put(done)

    threading.Thread(target=fill, daemon=True).start()
    while (item := slots.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item
