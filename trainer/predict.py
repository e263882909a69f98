"""Prediction: score every held-out test rating and rank each user's unseen movies with a trained model,
with the cold-start fallback (the training ratings' damped biases) for users and movies it never saw.

The test part of the split is read here for the first time, after training and model selection.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import torch

from trainer.config import TrainConfig
from trainer.coordinates import Coordinates
from trainer.data import DatasetInfo, eval_rows, first_rating, stream_rows
from trainer.evaluate import rating_metrics
from trainer.models.base import Model
from trainer.sparse import Csr, merge_parts
from warehouse.results import prediction_table


@torch.no_grad()
def predict(
    con: duckdb.DuckDBPyConnection,
    config: TrainConfig,
    info: DatasetInfo,
    coords: Coordinates,
    fit_parts: tuple[str, ...],
    model: Model,
    device: torch.device,
    run_id: str,
    fallback: Biases,
) -> tuple[pa.Table, dict[str, float]]:
    """Score every held-out test rating and rank each user's unseen movies, in one streamed pass of user rows.

    Cold start: a test rating whose user or movie has no training rating is predicted by the damped
    user + movie biases of the training ratings (``fallback``; an unknown user's or movie's bias is 0),
    and counted.
    """
    model.eval()
    user_ids, movie_ids = coords.user_ids, coords.movie_ids
    fallback = fallback.to(device)
    score = model.user_scorer(lambda: _movie_rows(con, config, info, fit_parts, device))
    all_parts = ("train", "validation", "test")
    # The notebook quirk: the first line of each of its files (train and test) was never read.
    lost_fit = first_rating(con, config.split, fit_parts) if config.drop_first_rating else None
    lost_test = first_rating(con, config.split, ("test",)) if config.drop_first_rating else None
    tables: list[pa.Table] = []
    test_users, test_predicted, test_actual, cold_total = [], [], [], 0
    fit_squared, fit_count = 0.0, 0
    for users, matrices in stream_rows(con, config.split, all_parts, info.n_movies, eval_rows(info.n_movies)):
        users = users.to(device)
        matrices = {part: m.to(device) for part, m in matrices.items()}
        fit, test = merge_parts(matrices, fit_parts), matrices["test"]
        if lost_fit:
            fit = fit.without(users, *lost_fit)
        if lost_test:
            test = test.without(users, *lost_test)
        scores = score(fit, users)
        if config.clip:
            scores = scores.clamp(info.rating_min, info.rating_max)
        # the final model on its own training ratings (the audit's figure for a run without a validation slice)
        fit_squared += (scores[fit.row_ids(), fit.cols] - fit.vals).double().square().sum().item()
        fit_count += fit.vals.numel()

        # held-out test ratings, and validation ratings when the run held them out (what a blend is fitted on)
        scored = _Scored(run_id, coords, scores, fit, users, fallback, config, info)
        rows, predicted, cold, table = scored.held_out("test", test)
        tables.append(table)
        test_users.append(users[rows].cpu())
        test_predicted.append(predicted.cpu())
        test_actual.append(test.vals.cpu())
        cold_total += int(cold.sum())
        if "validation" not in fit_parts:
            tables.append(scored.held_out("validation", matrices["validation"])[3])

        # every (user, movie) pair, on request
        if config.full_matrix:
            all_rows = torch.arange(users.numel(), device=device).repeat_interleave(info.n_movies)
            all_cols = torch.arange(info.n_movies, device=device).repeat(users.numel())
            tables.append(
                prediction_table(
                    run_id,
                    "matrix",
                    user_ids[users[all_rows].cpu().numpy()],
                    movie_ids[all_cols.cpu().numpy()],
                    _numpy(scores.flatten().clone()),  # a copy: the top-N below overwrites the rated cells
                )
            )

        # top-N among movies the user never rated (in any part)
        if config.top_n:
            rated = [matrices[part] for part in all_parts]
            tables.append(top_n(run_id, user_ids[users.cpu().numpy()], rated, scores, config.top_n, movie_ids))

    metrics = rating_metrics(torch.cat(test_users), torch.cat(test_predicted), torch.cat(test_actual))
    metrics["n_cold_start"] = cold_total
    metrics["fit_rmse"] = math.sqrt(fit_squared / fit_count) if fit_count else math.nan
    return pa.concat_tables(tables), metrics


@dataclass
class Biases:
    """The training ratings' mean and damped user and movie biases: the cold-start fallback."""

    mean: float
    user: torch.Tensor  # n_users; 0 for users with no training rating
    movie: torch.Tensor  # n_movies; 0 for movies with no training rating
    movie_known: torch.Tensor  # n_movies, bool: the movie has a training rating

    def to(self, device: torch.device) -> Biases:
        return Biases(self.mean, self.user.to(device), self.movie.to(device), self.movie_known.to(device))


# Damping: a bias is shrunk towards 0 as if it had this many more ratings at the mean (the usual
# choice for MovieLens: Koren 2009, Funk 2006).
MOVIE_DAMPING, USER_DAMPING = 25, 10


def fit_biases(con: duckdb.DuckDBPyConnection, split: str, fit_parts: tuple[str, ...], info: DatasetInfo) -> Biases:
    """Mean and damped biases of the ratings in ``fit_parts`` only (never the test part)."""
    fit = "SELECT user_idx, movie_idx, rating FROM split_ratings WHERE split = $split AND list_contains($parts, part)"
    params = {"split": split, "parts": list(fit_parts)}
    mean = con.execute(f"SELECT avg(rating) FROM ({fit})", params).fetchall()[0][0]
    movies = con.execute(
        f"SELECT movie_idx, sum(rating - $mean) / (count(*) + {MOVIE_DAMPING}) AS b FROM ({fit}) GROUP BY 1",
        params | {"mean": mean},
    ).fetchnumpy()
    users = con.execute(
        f"""WITH movie_bias AS (SELECT movie_idx, sum(rating - $mean) / (count(*) + {MOVIE_DAMPING}) AS b
                                FROM ({fit}) GROUP BY 1)
            SELECT user_idx, sum(rating - $mean - b) / (count(*) + {USER_DAMPING}) AS b
            FROM ({fit}) JOIN movie_bias USING (movie_idx) GROUP BY 1""",
        params | {"mean": mean},
    ).fetchnumpy()

    def dense(table: dict[str, np.ndarray], column: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        values, known = torch.zeros(size), torch.zeros(size, dtype=torch.bool)
        where = torch.from_numpy(table[column].astype(np.int64))
        values[where] = torch.from_numpy(np.asarray(table["b"], dtype=np.float32))
        known[where] = True
        return values, known

    user_bias, _ = dense(users, "user_idx", info.n_users)
    movie_bias, movie_known = dense(movies, "movie_idx", info.n_movies)
    return Biases(float(mean), user_bias, movie_bias, movie_known)


def _movie_rows(
    con: duckdb.DuckDBPyConnection,
    config: TrainConfig,
    info: DatasetInfo,
    fit_parts: tuple[str, ...],
    device: torch.device,
) -> Iterator[tuple[torch.Tensor, Csr]]:
    """The training matrix's movie rows in blocks (movie_idx, ratings), for a model that reads them."""
    for movies, matrices in stream_rows(
        con, config.split, fit_parts, info.n_users, eval_rows(info.n_users), by="movie"
    ):
        yield movies.to(device), merge_parts({part: m.to(device) for part, m in matrices.items()}, fit_parts)


def mean_rmse(con: duckdb.DuckDBPyConnection, split: str, parts: tuple[str, ...], mean: float) -> float | None:
    """The RMSE of predicting ``mean`` for every rating of ``parts``: the audit's baseline."""
    value = con.execute(
        "SELECT sqrt(avg((rating - $mean) ^ 2)) FROM split_ratings WHERE split = $split "
        "AND list_contains($parts, part)",
        {"mean": mean, "split": split, "parts": list(parts)},
    ).fetchall()[0][0]
    return None if value is None else float(value)


def top_n(
    run_id: str, user_ids: np.ndarray, rated: Iterable[Csr], scores: torch.Tensor, n: int, movie_ids: np.ndarray
) -> pa.Table:
    """Rows of `predictions` (kind top_n) for a block of users (``user_ids``, one a row of ``scores``): each
    user's ``n`` best-scored movies (``movie_ids`` by column) among those not in the ``rated`` blocks.
    ``scores`` is overwritten at the rated cells."""
    for block in rated:
        scores[block.row_ids(), block.cols] = -math.inf
    n = min(n, len(movie_ids))
    best, best_cols = scores.topk(n, dim=1)
    keep = (best != -math.inf).flatten()  # only the rated cells drop out: a NaN stays, for the audit to see
    at = torch.arange(len(user_ids), device=scores.device).repeat_interleave(n)[keep]
    ranks = torch.arange(1, n + 1, device=scores.device).repeat(len(user_ids))[keep]
    return prediction_table(
        run_id,
        "top_n",
        user_ids[at.cpu().numpy()],
        movie_ids[best_cols.flatten()[keep].cpu().numpy()],
        _numpy(best.flatten()[keep]),
        rank=_numpy(ranks),
    )


@dataclass
class _Scored:
    """A block of users' scores (``scores``, users x movies) and what scoring their held-out ratings needs."""

    run_id: str
    coords: Coordinates
    scores: torch.Tensor
    fit: Csr  # their training ratings
    users: torch.Tensor  # their user_idx
    fallback: Biases
    config: TrainConfig
    info: DatasetInfo

    def held_out(self, kind: str, held: Csr) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, pa.Table]:
        """Rows, predictions and cold-start flags of the users' held-out ratings (``held``), and those predictions
        as rows of ``predictions`` of ``kind``: the model's scores, or the fallback's biases where the user or the
        movie has no training rating."""
        rows, cols = held.row_ids(), held.cols
        predicted = self.scores[rows, cols]
        cold = (self.fit.counts[rows] == 0) | ~self.fallback.movie_known[cols]
        if self.config.cold_start_fallback:
            biases = self.fallback.mean + self.fallback.user[self.users[rows]] + self.fallback.movie[cols]
            if self.config.clip:
                biases = biases.clamp(self.info.rating_min, self.info.rating_max)
            predicted = torch.where(cold, biases, predicted)
        table = prediction_table(
            self.run_id,
            kind,
            self.coords.user_ids[self.users[rows].cpu().numpy()],
            self.coords.movie_ids[cols.cpu().numpy()],
            _numpy(predicted),
            _numpy(held.vals),
            cold=_numpy(cold),
        )
        return rows, predicted, cold, table


def _numpy(values: torch.Tensor) -> np.ndarray:
    return values.cpu().numpy()
