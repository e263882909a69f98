"""The `bayes-fm` model: a Bayesian factorisation machine with "who rated what" and movie features, sampled
by Gibbs sampling with myFM (Ohtsuki's C++ implementation of Rendle's MCMC for FMs), scored as the mean of
its samples.

Each rating is one row of features: the user, the movie, the movies the user rated and the users who rated
the movie (each set weighted 1/sqrt of its size: SVD++'s implicit feedback, on both sides), and the movie's
release year and genres (--movie-features; the users' demographics validated worse on u1, docs/training.md).
Each group of weights gets a prior of its own, and the priors' parameters and the noise are sampled too, so
there is no penalty to tune. Unlike the autoencoders, nothing is trained by gradient steps: each epoch is one
Gibbs sweep over every weight, and the model is the average of the samples after the first GIBBS_BURN_IN
sweeps (myFM's default too). The validation slice scores that running average after every sweep, which
chooses the number of sweeps (like an epoch) and never sees the test part. The sampling runs on the CPU, on
one core (myFM has no GPU path); the result is scored anywhere.

An FM whose features split into a user block and a movie block predicts ``w0 + c_u + c_m + <v_u, v_m>``
(trainer/models/factorisation.py MatrixFactorisation's form), so the mean of S samples is one such model with S
blocks of factors side by side: that is the model a `bayes-fm` run keeps, and how it predicts and recommends.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sps
import torch

from trainer.data import user_rows_with_validation
from trainer.models.base import FitInputs, Fitted, build_model
from trainer.models.factorisation import MatrixFactorisation
from trainer.models.registry import GIBBS_BURN_IN
from trainer.models.settings import BayesFmSettings
from trainer.selection import Best
from trainer.sparse import Csr

with warnings.catch_warnings():  # myFM 0.4 imports pkg_resources for its version, which warns it is deprecated
    warnings.simplefilter("ignore")
    import myfm
    import myfm.base


def blocks(
    users: np.ndarray, movies: np.ndarray, n_users: int, n_movies: int, side_groups: Sequence[sps.csr_matrix] = ()
) -> tuple[sps.csr_matrix, sps.csr_matrix, list[int]]:
    """Each user's features (the user, and the movies they rated) and each movie's (the movie, the users who
    rated it, and ``side_groups``' columns), from the training ratings' (user_idx, movie_idx) pairs; and the
    size of each group of features, user block first (each group gets a prior of its own)."""
    rated = sps.csr_matrix((np.ones(len(users)), (users, movies)), shape=(n_users, n_movies))
    by_user = sps.diags(1 / np.sqrt(np.maximum(np.asarray(rated.sum(1)).ravel(), 1))) @ rated
    by_movie = sps.diags(1 / np.sqrt(np.maximum(np.asarray(rated.sum(0)).ravel(), 1))) @ rated.T
    user_block = sps.hstack([sps.identity(n_users), by_user], format="csr")
    movie_block = sps.hstack([sps.identity(n_movies), by_movie, *side_groups], format="csr")
    return user_block, movie_block, [n_users, n_movies, n_movies, n_users] + [g.shape[1] for g in side_groups]


def movie_side(con: Any, n_movies: int) -> list[sps.csr_matrix]:
    """Each movie's release year, one-hot in ten bins of equal counts (or one for an unknown year), and its
    genres, many-hot: a group of features each, rows in movie_idx order. The bins and the genres come from
    the whole movies table (the catalogue, not the split's movies); a group the data set has nothing for (no
    years, or no genres) is left out."""
    rows = con.execute(
        "SELECT year, genres FROM movie_index LEFT JOIN movies USING (movie_id) ORDER BY movie_idx"
    ).fetchall()
    assert len(rows) == n_movies
    catalogue_years = np.array(
        [year for (year,) in con.execute("SELECT year FROM movies WHERE year IS NOT NULL").fetchall()], dtype=float
    )
    names = [name for (name,) in con.execute("SELECT DISTINCT unnest(genres) AS g FROM movies ORDER BY g").fetchall()]
    groups: list[sps.csr_matrix] = []
    if len(catalogue_years):
        edges = np.unique(np.quantile(catalogue_years, np.linspace(0.1, 0.9, 9)))
        years = np.array([np.nan if year is None else year for year, _ in rows], dtype=float)
        bins = np.where(np.isnan(years), len(edges) + 1, np.digitize(np.nan_to_num(years), edges))
        groups.append(
            sps.csr_matrix((np.ones(n_movies), (np.arange(n_movies), bins)), shape=(n_movies, len(edges) + 2))
        )
    if names:
        column = {name: i for i, name in enumerate(names)}
        pairs = [(movie, column[genre]) for movie, (_, genres) in enumerate(rows) for genre in genres or ()]
        genre_rows, genre_cols = np.array(pairs, dtype=np.int64).reshape(-1, 2).T
        groups.append(sps.csr_matrix((np.ones(len(pairs)), (genre_rows, genre_cols)), shape=(n_movies, len(names))))
    return groups


def split_sample(
    fm: Any, user_block: sps.csr_matrix, movie_block: sps.csr_matrix
) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One FM sample as ``(w0, c_user, c_movie, v_user, v_movie)``: the prediction for (u, m) is
    w0 + c_user[u] + c_movie[m] + v_user[u] . v_movie[m]."""
    w, v = np.asarray(fm.w), np.asarray(fm.V)
    n_user_features = user_block.shape[1]

    def side(block: sps.csr_matrix, w: np.ndarray, v: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        vectors = block @ v
        # An FM's interactions within one block: half of (sum of its vectors)^2 less each feature's own square.
        within = 0.5 * ((vectors**2).sum(1) - block.power(2) @ (v**2).sum(1))
        return torch.from_numpy(block @ w + within).float(), torch.from_numpy(vectors).float()

    c_user, v_user = side(user_block, w[:n_user_features], v[:n_user_features])
    c_movie, v_movie = side(movie_block, w[n_user_features:], v[n_user_features:])
    return float(fm.w0), c_user, c_movie, v_user, v_movie


def _pairs(index: torch.Tensor, matrix: Csr) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """(user_idx, movie_idx, rating) of every rating in user rows (``index``: the rows' user_idx)."""
    return index[matrix.row_ids()].numpy(), matrix.cols.long().numpy(), matrix.vals.float()


@dataclass
class Sums:
    """Running sums of the kept samples' constants (their factors go straight into the model's blocks)."""

    user: torch.Tensor
    movie: torch.Tensor
    w0: float = 0.0
    n: int = 0

    def add(self, w0: float, c_user: torch.Tensor, c_movie: torch.Tensor) -> None:
        self.w0, self.n = self.w0 + w0, self.n + 1
        self.user += c_user
        self.movie += c_movie

    def copy(self) -> Sums:
        return Sums(self.user.clone(), self.movie.clone(), self.w0, self.n)


def sample(inputs: FitInputs) -> Fitted:
    """Sample a `bayes-fm` on ``fit_parts``: the model (the mean of the samples up to the sweep chosen on
    validation, else of them all), the learning curve, the seconds it took, and the selection."""
    con, config, info, fit_parts, mean, log, on_epoch = inputs  # (a FitInputs: base.py)
    index, train, validation = user_rows_with_validation(con, config.split, fit_parts, config.validation, info.n_movies)
    users, movies, targets = _pairs(index, train)
    held = _pairs(index, validation) if validation is not None else None
    side = movie_side(con, info.n_movies) if config.own_as(BayesFmSettings).movie_features else []
    user_block, movie_block, group_shapes = blocks(users, movies, info.n_users, info.n_movies, side)
    rank = config.hidden[0]
    model = build_model(config, info.n_users, info.n_movies, mean)
    assert isinstance(model, MatrixFactorisation) and model.user_factors is not None
    assert model.movie_factors is not None
    # Sample k's factors fill block k of the model's, once: a snapshot of the sums at the best sweep is
    # enough to rebuild the mean of the samples up to it (the later blocks are zeroed at the end).
    factors_user, factors_movie = model.user_factors.data.zero_(), model.movie_factors.data.zero_()
    sums, at_best = Sums(torch.zeros(info.n_users), torch.zeros(info.n_movies)), None
    fit_sum, held_sum = torch.zeros(len(targets)), torch.zeros(len(held[2]) if held else 0)
    history: list[dict[str, Any]] = []
    best = Best()
    started = last = time.perf_counter()

    def rmse(total: torch.Tensor, n: int, truth: torch.Tensor) -> float:
        predicted = total / n
        if config.clip:
            predicted = predicted.clamp(info.rating_min, info.rating_max)
        return math.sqrt(float((predicted - truth).square().mean()))

    def after_sweep(i: int, fm: Any, _hyper: Any, _history: Any) -> tuple[bool, str | None]:
        nonlocal last, at_best
        epoch = i + 1
        w0, c_user, c_movie, v_user, v_movie = split_sample(fm, user_block, movie_block)

        def predicted(u: np.ndarray, m: np.ndarray) -> torch.Tensor:
            return w0 + c_user[u] + c_movie[m] + (v_user[u] * v_movie[m]).sum(1)

        metrics: dict[str, Any] = {"epoch": epoch, "validation_rmse": None}
        if epoch <= GIBBS_BURN_IN:  # not averaged: the sample alone
            metrics["train_rmse"] = rmse(predicted(users, movies), 1, targets)
        else:
            sums.add(w0, c_user, c_movie)
            factors_user[:, (sums.n - 1) * rank : sums.n * rank] = v_user
            factors_movie[:, (sums.n - 1) * rank : sums.n * rank] = v_movie
            fit_sum.add_(predicted(users, movies))
            metrics["train_rmse"] = rmse(fit_sum, sums.n, targets)
            if held is not None:
                held_sum.add_(predicted(held[0], held[1]))
                if config.scores_validation_at(epoch):
                    metrics["validation_rmse"] = rmse(held_sum, sums.n, held[2])
                    best.update(epoch, metrics["validation_rmse"], None, config)
                    if best.epoch == epoch:
                        at_best = sums.copy()
        now = time.perf_counter()
        metrics["seconds"], last = now - last, now
        history.append(metrics)
        on_epoch(metrics)
        return best.stopped, None

    log(
        f"Gibbs sampling {config.epochs} sweeps on the CPU (myFM), rank {rank}, the mean of the samples after "
        f"sweep {GIBBS_BURN_IN}"
    )
    sampler = myfm.MyFMRegressor(rank=rank, random_seed=config.seed)
    # myFM draws a tqdm bar of its own: the trainer command turns tqdm off for its process (cli._process_wide)
    sampler.fit(
        sps.csr_matrix((len(targets), 0)),  # every feature comes from the two blocks below
        targets.double().numpy(),
        X_rel=[myfm.RelationBlock(users, user_block), myfm.RelationBlock(movies, movie_block)],
        n_iter=config.epochs,
        n_kept_samples=0,  # the running sums above are the samples' mean; myFM need keep none
        group_shapes=group_shapes,
        callback=after_sweep,
    )
    chosen = at_best if at_best is not None and config.select_best else sums  # else (--last-epoch, a refit) all
    _set_mean(model, chosen, rank)
    if chosen is at_best:  # run() reports the chosen sweep when the best weights are set: they are the model's own
        best.weights = model.state_dict()
    return model, history, time.perf_counter() - started, best


def _set_mean(model: MatrixFactorisation, sums: Sums, rank: int) -> None:
    """Make ``model``, whose factor blocks hold the samples, the mean of the first ``sums.n`` of them."""
    assert model.user_bias is not None and model.movie_bias is not None
    assert model.user_factors is not None and model.movie_factors is not None
    n = sums.n
    with torch.no_grad():
        model.mean.fill_(sums.w0 / n)
        model.user_bias.copy_(sums.user / n)
        model.movie_bias.copy_(sums.movie / n)
        for factors in (model.user_factors, model.movie_factors):
            factors[:, n * rank :] = 0.0
            factors[:, : n * rank] /= math.sqrt(n)  # on both sides: the mean of the n dot products
