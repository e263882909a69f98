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

from trainer import notebook
from trainer.config import TrainConfig
from trainer.coordinates import Coordinates
from trainer.data import DatasetInfo, eval_rows, stream_rows
from trainer.evaluate import rating_metrics
from trainer.models.base import Model
from trainer.ranking import RankedBlock, RankingTally, evaluate_block, popularity_percentiles
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
) -> tuple[pa.Table, dict[str, float | None], dict[str, dict[str, float]]]:
    """Score every held-out test rating and rank each user's unseen movies, in one streamed pass of user rows:
    the rows of `predictions`, the rating metrics, and the ranking metrics by held-out part (trainer/ranking.py).

    Cold start: a test rating whose user or movie has no training rating is predicted by the damped
    user + movie biases of the training ratings (``fallback``; an unknown user's or movie's bias is 0),
    and counted.
    """
    model.eval()
    user_ids, movie_ids = coords.user_ids, coords.movie_ids
    fallback = fallback.to(device)
    # the ratings a list shows: clipped to the scale; none for a model that only ranks
    scale = (info.rating_min, info.rating_max) if config.clip else None
    ratings = model.predicts_ratings
    reading = notebook.prediction_reading(con, config, fit_parts)
    # a model that scores a user from her ratings alone reads all that are known where a list is made
    folds = model.folds_in and reading.folds_in
    score = model.user_scorer(lambda: _movie_rows(con, config, info, fit_parts, device))
    all_parts = ("train", "validation", "test")
    tables: list[pa.Table] = []
    # held-out rankings: the test part's among movies unrated in train and validation (the protocol, whatever the
    # run trained on), and the validation slice's among movies unrated in what the run trained on
    known_counts = movie_counts(con, config.split, ("train", "validation"), info.n_movies)
    rankings = {"test": RankingTally(popularity_percentiles(known_counts))}
    if "validation" not in fit_parts:
        counts = movie_counts(con, config.split, fit_parts, info.n_movies)
        rankings["validation"] = RankingTally(popularity_percentiles(counts))
        # the audit's baseline for a model that only ranks: the most rated movies, on the same slice
        popular = RankingTally(rankings["validation"].popularity)
        popular_scores = counts.to(device).double()
    test_users, test_predicted, test_actual, cold_total = [], [], [], 0
    fit_squared, fit_count = 0.0, 0
    for users, matrices in stream_rows(con, config.split, all_parts, info.n_movies, eval_rows(info.n_movies)):
        users = users.to(device)
        matrices = {part: m.to(device) for part, m in matrices.items()}
        fit, test = reading.split(users, matrices)
        raw = score(fit, users)  # what ranks the lists; the clipped ratings are what is predicted
        scores = raw.clamp(info.rating_min, info.rating_max) if config.clip else raw
        if model.predicts_ratings:
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

        # held-out rankings, then the top-N served among movies the user never rated (in any part)
        block_ids = user_ids[users.cpu().numpy()]
        for part, tally in rankings.items():
            known = [matrices["train"], matrices["validation"]] if part == "test" else [fit]
            # a model that folds in ranks from every rating known at that point: for the test part, the validation
            # slice's too (the protocol's candidates); the others rank from what they were trained on
            reads_more = part == "test" and folds and "validation" not in fit_parts
            ranks = score(merge_parts(matrices, ("train", "validation")), users) if reads_more else raw
            ranked = evaluate_block(tally, ranks, known, matrices[part])
            if part == "validation":
                evaluate_block(popular, popular_scores.expand(len(block_ids), -1), known, matrices[part])
            tables.append(list_table(run_id, f"{part}_top_n", block_ids, ranked, movie_ids, scale, ratings))
        if config.top_n:
            rated = [matrices[part] for part in all_parts]
            served = score(merge_parts(matrices, all_parts), users) if folds else raw  # every rating the user has
            tables.append(top_n(run_id, block_ids, rated, served, config.top_n, movie_ids, scale, ratings))

    metrics: dict[str, float | None] = {"rmse": None, "mae": None, "user_rmse": None, "n": 0}  # a ranking model's
    if test_users:
        metrics |= rating_metrics(torch.cat(test_users), torch.cat(test_predicted), torch.cat(test_actual))
    metrics["n_cold_start"] = cold_total
    metrics["fit_rmse"] = math.sqrt(fit_squared / fit_count) if fit_count else math.nan
    ranking = {part: tally.metrics() for part, tally in rankings.items()}
    if "validation" in ranking and ranking["validation"]:
        ranking["validation"]["popular ndcg@10"] = popular.metrics()["ndcg@10"]
    return pa.concat_tables(tables), metrics, ranking


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
    run_id: str,
    user_ids: np.ndarray,
    rated: Iterable[Csr],
    scores: torch.Tensor,
    n: int,
    movie_ids: np.ndarray,
    scale: tuple[float, float] | None = None,
    ratings: bool = True,
) -> pa.Table:
    """Rows of `predictions` (kind top_n) for a block of users (``user_ids``, one a row of ``scores``): each
    user's ``n`` best-scored movies (``movie_ids`` by column) among those not in the ``rated`` blocks, their
    predicted ratings clipped to ``scale`` when given (none when the scores are not ``ratings``). ``scores`` is
    overwritten at the rated cells."""
    for block in rated:
        scores[block.row_ids(), block.cols] = -math.inf
    n = min(n, len(movie_ids))
    best, best_cols = scores.topk(n, dim=1)
    keep = (best != -math.inf).flatten()  # only the rated cells drop out: a NaN stays, for the audit to see
    at = torch.arange(len(user_ids), device=scores.device).repeat_interleave(n)[keep]
    ranks = torch.arange(1, n + 1, device=scores.device).repeat(len(user_ids))[keep]
    best = best.flatten()[keep]
    return prediction_table(
        run_id,
        "top_n",
        user_ids[at.cpu().numpy()],
        movie_ids[best_cols.flatten()[keep].cpu().numpy()],
        _as_ratings(best, scale, ratings),
        rank=_numpy(ranks),
        score=_numpy(best),
    )


def list_table(
    run_id: str,
    kind: str,
    user_ids: np.ndarray,
    ranked: RankedBlock,
    movie_ids: np.ndarray,
    scale: tuple[float, float] | None,
    ratings: bool,
) -> pa.Table:
    """Rows of `predictions` of ``kind`` (test_top_n, validation_top_n): a block's held-out lists."""
    rows, ranks = torch.nonzero(ranked.kept, as_tuple=True)
    scores = ranked.scores[rows, ranks]
    return prediction_table(
        run_id,
        kind,
        user_ids[ranked.rows[rows].cpu().numpy()],
        movie_ids[ranked.movies[rows, ranks].cpu().numpy()],
        _as_ratings(scores, scale, ratings),
        rank=_numpy(ranks + 1),
        score=_numpy(scores),
    )


def _as_ratings(scores: torch.Tensor, scale: tuple[float, float] | None, ratings: bool) -> np.ndarray | None:
    """The predicted ratings a list shows for its scores: clipped to ``scale`` when given; None for a ranking model."""
    if not ratings:
        return None
    return _numpy(scores.clamp(*scale) if scale else scores)


def movie_counts(con: duckdb.DuckDBPyConnection, split: str, parts: tuple[str, ...], n_movies: int) -> torch.Tensor:
    """Each movie's number of ratings in ``parts``: its popularity."""
    counts = torch.zeros(n_movies, dtype=torch.int64)
    found = con.execute(
        "SELECT movie_idx, count(*) AS n FROM split_ratings WHERE split = $split AND list_contains($parts, part) "
        "GROUP BY movie_idx",
        {"split": split, "parts": list(parts)},
    ).fetchnumpy()
    counts[torch.from_numpy(found["movie_idx"].astype(np.int64))] = torch.from_numpy(found["n"].astype(np.int64))
    return counts


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
