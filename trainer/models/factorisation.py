"""Biased matrix factorisation and its special cases (the global mean, damped biases): the rating baselines,
and the form bayes-fm's mean of samples takes (trainer/models/bayes_fm.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from trainer.models.base import UserRows
from trainer.models.registry import GIBBS_BURN_IN
from trainer.sparse import SparseBlock, linear_at_observed

if TYPE_CHECKING:
    from trainer.config import TrainConfig


class MatrixFactorisation(UserRows, nn.Module):
    """The baselines, and bayes-fm's mean of samples: rating = mean + user bias + movie bias + user factors . movie
    factors.

    ``biases=False, factors=0`` is the global mean; ``factors=0`` the user+movie biases (the L2
    penalty on the biases is what damps them towards 0 for users and movies with few ratings);
    ``factors=k`` biased matrix factorisation. Trained on user rows: ``index`` says which users.
    The mean starts at the training ratings' mean, so the global mean needs no training at all.
    """

    dense_on_gpu = False  # its outputs at the observed ratings are one sampled product on any device
    folds_in = False  # a user's scores come from the user's own bias and factors
    whole_matrix = False

    def __init__(self, n_users: int, n_movies: int, mean: float, factors: int = 0, biases: bool = True) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.tensor(float(mean)))
        self.user_bias = nn.Parameter(torch.zeros(n_users)) if biases else None
        self.movie_bias = nn.Parameter(torch.zeros(n_movies)) if biases else None
        self.user_factors = nn.Parameter(_small_factors(n_users, factors)) if factors else None
        self.movie_factors = nn.Parameter(_small_factors(n_movies, factors)) if factors else None
        self.n_movies = n_movies

    def forward(self, inputs: torch.Tensor | SparseBlock, index: torch.Tensor) -> torch.Tensor:
        if isinstance(inputs, SparseBlock):
            return self.predict_at(inputs, index, inputs)
        out = self.mean.expand(index.numel(), self.n_movies)
        if self.user_bias is not None and self.movie_bias is not None:
            out = out + self.user_bias[index, None] + self.movie_bias[None, :]
        if self.user_factors is not None and self.movie_factors is not None:
            out = out + self.user_factors[index] @ self.movie_factors.T
        return out

    def predict_at(
        self, inputs: torch.Tensor | SparseBlock | None, index: torch.Tensor, at: SparseBlock
    ) -> torch.Tensor:
        users, cols = index[at.row_ids()], at.cols
        out = self.mean.expand(cols.numel())
        if self.user_bias is not None:
            out = out + self.user_bias[users]
        if self.user_factors is not None and self.movie_factors is not None:
            # The block's users' factors times the movies' at the block's cells, plus the movie biases: one
            # sampled product (gathering both factor rows per rating, then a sum, was an order of magnitude slower).
            movie_bias = self.movie_bias if self.movie_bias is not None else torch.zeros_like(self.movie_factors[:, 0])
            out = out + linear_at_observed(at, self.user_factors[index], self.movie_factors, movie_bias)
        elif self.movie_bias is not None:
            out = out + self.movie_bias[cols]
        return out

    def regularised(self) -> list[torch.Tensor]:
        return [p for name, p in self.named_parameters() if name != "mean"]


def _small_factors(n: int, k: int) -> torch.Tensor:
    """Small random factors, N(0, 0.01²): zeros would be a saddle point the gradient never leaves. Left undrawn on
    the meta device, where the model is only measured (train._fits_in_memory says why)."""
    blank = torch.empty(n, k)
    return blank if blank.is_meta else torch.randn(n, k) * 0.01


def global_mean(config: TrainConfig, n_users: int, n_movies: int, mean: float) -> MatrixFactorisation:
    return MatrixFactorisation(n_users, n_movies, mean, factors=0, biases=False)


def biases(config: TrainConfig, n_users: int, n_movies: int, mean: float) -> MatrixFactorisation:
    return MatrixFactorisation(n_users, n_movies, mean, factors=0)


def mf(config: TrainConfig, n_users: int, n_movies: int, mean: float) -> MatrixFactorisation:
    return MatrixFactorisation(n_users, n_movies, mean, factors=config.hidden[0])


def bayes_fm(config: TrainConfig, n_users: int, n_movies: int, mean: float) -> MatrixFactorisation:
    """Room for the mean of up to (epochs - burn-in) Gibbs samples of rank hidden[0], side by side."""
    return MatrixFactorisation(n_users, n_movies, mean, factors=config.hidden[0] * (config.epochs - GIBBS_BURN_IN))
