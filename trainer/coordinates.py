"""A run's coordinates: the movie each of its model's columns stands for, and the user each row does.

The warehouse's movie_index and user_index number movies and users densely in id order, so a rebuild
in which a new id sorts below existing ones shifts every later index. A trained model is therefore read
only through the mapping it was trained with, never through the warehouse's current indexes: the mapping
is kept in the run's checkpoint (with the weights it belongs to) and in the warehouse's `run_index` table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import torch

SHOWN = 5  # ids a description of what changed names, per kind of change


@dataclass(frozen=True)
class Coordinates:
    user_ids: np.ndarray  # user_ids[row]: the MovieLens user id of the model's row (or, for movie rows, column)
    movie_ids: np.ndarray  # movie_ids[col]: the MovieLens movie id of the model's column

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_movies(self) -> int:
        return len(self.movie_ids)

    @staticmethod
    def read(con: duckdb.DuckDBPyConnection) -> Coordinates:
        """The warehouse's current indexes (user_index, movie_index)."""

        def ids(table: str, id_column: str, idx_column: str) -> np.ndarray:
            # Fixed names from this function's callers, never input.
            rows = con.sql(f"SELECT {id_column} FROM {table} ORDER BY {idx_column}").to_arrow_table()
            return rows.column(0).to_numpy().astype(np.int64)

        return Coordinates(ids("user_index", "user_id", "user_idx"), ids("movie_index", "movie_id", "movie_idx"))

    def to_state(self) -> dict[str, torch.Tensor]:
        """For a checkpoint (tensors load with weights_only=True)."""
        return {"user_ids": torch.from_numpy(self.user_ids), "movie_ids": torch.from_numpy(self.movie_ids)}

    @staticmethod
    def from_state(state: dict[str, Any]) -> Coordinates | None:
        """A checkpoint's coordinates; None for a checkpoint written before runs kept them."""
        saved = state.get("coordinates")
        if not saved:
            return None
        return Coordinates(saved["user_ids"].cpu().numpy(), saved["movie_ids"].cpu().numpy())

    def table(self, run_id: str) -> pa.Table:
        """Rows of `run_index` (sql/results/run_index.sql)."""
        axes = [("user", self.user_ids), ("movie", self.movie_ids)]
        return pa.table(
            {
                "run_id": pa.array([run_id] * (self.n_users + self.n_movies), pa.string()),
                "axis": pa.array([axis for axis, ids in axes for _ in range(len(ids))], pa.string()),
                "id": pa.array(np.concatenate([ids for _, ids in axes]), pa.int32()),
                "idx": pa.array(np.concatenate([np.arange(len(ids)) for _, ids in axes]), pa.int32()),
            }
        )

    def users(self, user_ids: np.ndarray) -> np.ndarray:
        """The row of each user id, -1 for a user the run never trained on."""
        return _positions(self.user_ids, user_ids)

    def movies(self, movie_ids: np.ndarray) -> np.ndarray:
        """The column of each movie id, -1 for a movie the run never trained on."""
        return _positions(self.movie_ids, movie_ids)

    def changes(self, now: Coordinates) -> list[str]:
        """What differs in ``now`` (the warehouse's current indexes) from these, one sentence each."""
        found = []
        axes = (("movie", self.movie_ids, now.movie_ids), ("user", self.user_ids, now.user_ids))
        for noun, then_ids, now_ids in axes:
            new = np.setdiff1d(now_ids, then_ids)
            gone = np.setdiff1d(then_ids, now_ids)
            both = np.intersect1d(then_ids, now_ids)
            moved = both[_positions(then_ids, both) != _positions(now_ids, both)]
            if len(new):
                found.append(f"{_count(len(new), 'new ' + noun)} ({_ids(new)})")
            if len(gone):
                found.append(f"{_count(len(gone), noun)} no longer rated ({_ids(gone)})")
            if len(moved):
                found.append(f"{_count(len(moved), noun)} at another index ({_ids(moved)})")
        return found


def _positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    at = np.searchsorted(sorted_ids, wanted).clip(0, max(len(ids) - 1, 0))
    found = (sorted_ids[at] == wanted) if len(ids) else np.zeros(len(wanted), dtype=bool)
    return np.where(found, order[at] if len(ids) else -1, -1)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _ids(ids: np.ndarray) -> str:
    shown = ", ".join(str(i) for i in ids[:SHOWN])
    return f"{'id' if len(ids) == 1 else 'ids'} {shown}" + (", ..." if len(ids) > SHOWN else "")
