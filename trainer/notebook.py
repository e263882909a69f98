"""The original notebook's two quirks, which the `notebook` preset reproduces and no other model has: here, so that
the batches, the training loop and prediction each take them in one call and otherwise read as if they did not exist.

- Lost first lines (``drop_first_rating``): the notebook read u1.base and u1.test with pandas' read_csv without
  ``header=None``, so the first line of each file became its header. The first rating of the training file was
  never trained on, the first of the test file never scored, and its lists were ranked from what it trained on.
- Gradients never zeroed (``accumulate_gradients``): each step followed the sum of every gradient so far, which is
  why its RMSprop with weight decay 0.5 learns at all (docs/training.md, "Tuning").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import torch

from trainer.config import TrainConfig
from trainer.optim import Optimizer
from trainer.sparse import Csr, merge_parts


def first_rating(con: duckdb.DuckDBPyConnection, split: str, parts: tuple[str, ...]) -> tuple[int, int] | None:
    """(user_idx, movie_idx) of the rating a sorted ratings file of these parts starts with (u1.base and
    u1.test are sorted by user, then movie), or None when there is none."""
    rows = con.execute(
        "SELECT user_idx, movie_idx FROM split_ratings WHERE split = ? AND list_contains(?, part) "
        "ORDER BY user_id, movie_id LIMIT 1",
        [split, list(parts)],
    ).fetchall()
    return rows[0] if rows else None


@dataclass(frozen=True)
class Unread:
    """The rating a run never read from one of its files, as (user_idx, movie_idx): the file's first line for the
    notebook preset; None, nothing, for every other run."""

    at: tuple[int, int] | None = None

    def remove(self, index: torch.Tensor, rows: Csr, by: str = "user") -> Csr:
        """A block of user rows (movie rows with ``by="movie"``) whose indexes are ``index``, without that rating."""
        if self.at is None:
            return rows
        user, movie = self.at
        return rows.without(index, user, movie) if by == "user" else rows.without(index, movie, user)


def unread(con: duckdb.DuckDBPyConnection, config: TrainConfig, parts: tuple[str, ...]) -> Unread:
    """What a run of ``config`` never read from the file of these parts."""
    return Unread(first_rating(con, config.split, parts) if config.drop_first_rating else None)


@dataclass(frozen=True)
class Reading:
    """What prediction reads of a block of users' rows: the training ratings a model scores them from and the test
    ratings it is scored on (each without its file's unread line), and whether a model that folds in may rank their
    lists from every rating known where a list is made (the notebook ranked from its training matrix alone)."""

    fit: Unread
    test: Unread
    fit_parts: tuple[str, ...]
    folds_in: bool

    def split(self, users: torch.Tensor, matrices: dict[str, Csr]) -> tuple[Csr, Csr]:
        """The block's training matrix (its fit parts merged) and its test part, as the run reads them."""
        return self.fit.remove(users, merge_parts(matrices, self.fit_parts)), self.test.remove(users, matrices["test"])


def prediction_reading(con: duckdb.DuckDBPyConnection, config: TrainConfig, fit_parts: tuple[str, ...]) -> Reading:
    return Reading(
        unread(con, config, fit_parts), unread(con, config, ("test",)), fit_parts, not config.drop_first_rating
    )


def gradient_reset(optimizer: Optimizer, config: TrainConfig) -> Callable[[], None]:
    """What a step does to the gradients before it computes its own: clears them, except for the notebook, whose
    every step added its gradients to the sum of all before."""
    if config.accumulate_gradients:
        return lambda: None
    return lambda: optimizer.zero_grad(set_to_none=True)
