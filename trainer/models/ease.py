"""Models built for ranking, fitted in closed form rather than by the training loop: `popular` (the most rated
movies a user has not seen: the baseline every recommender must beat) and `ease`, EASE^R (Steck 2019,
"Embarrassingly Shallow Autoencoders for Sparse Data").

EASE^R is an item-item autoencoder with one layer and no hidden units: a user's row x of who-rated-what (or of
the stars, --ease-input stars) is mapped to scores x·B, where B (movies x movies) has a zero diagonal, so no
movie explains itself. The least-squares B with an L2 penalty λ has a closed form: with P = (XᵀX + λI)⁻¹,
B = I − P·diag(1/diag(P)). With --ease-session-gap, X also holds a row for each of the users' rating sessions
(ratings with no long pause between them) beside their own rows: ratings made in one sitting tell more of each
other, and the lists rank better on validation (docs/ranking.md). One dense movies x movies inverse per λ: λ is
searched on a log scale from --l2 (_next_lambda), and the one whose lists rank best on the validation slice
(nDCG@10, the protocol of trainer/ranking.py) is kept, like an epoch. Float32 throughout: the ranking it gives
matched float64's on ml-100k and ml-1m (docs/ranking.md), in half the time. Neither model predicts ratings: their
runs have ranking metrics, not RMSE, and they score any user from her row alone (fold-in), new users included.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainer.data import eval_rows, rating_sessions, user_rows_with_validation
from trainer.errors import TrainerError
from trainer.models.base import FitInputs, Fitted, UserRows, UserScorer, build_model
from trainer.models.settings import EaseSettings
from trainer.ranking import MAIN_METRIC, RankingTally, evaluate_block
from trainer.selection import Best
from trainer.sparse import Csr, SparseBlock, banded_product

if TYPE_CHECKING:
    import duckdb

    from trainer.config import TrainConfig

# The movies x movies matrices EASE holds while fitting (the Gram matrix, its inverse, B): it refuses a data set
# whose three would pass this many bytes, rather than run the machine out of memory.
EASE_MAX_BYTES = 12 * 2**30


class RankingModel(UserRows, nn.Module):
    """A model that scores movies for ranking, from a user's row alone: no rating predictions."""

    predicts_ratings = False
    dense_on_gpu = False

    def __init__(self, n_movies: int, stars: bool) -> None:
        super().__init__()
        self.n_movies, self.stars = n_movies, stars

    def inputs(self, rows: Csr) -> torch.Tensor:
        """A block of users' rows as the model reads them: 1 where rated (or the stars), 0 elsewhere."""
        dense = rows.to_dense()
        return dense if self.stars else (dense > 0).to(dense.dtype)

    def forward(self, inputs: torch.Tensor | SparseBlock, index: torch.Tensor) -> torch.Tensor:
        if isinstance(inputs, SparseBlock):
            return self.predict_at(inputs, index, inputs)
        return self.scores(inputs if self.stars else (inputs > 0).to(inputs.dtype))

    def predict_at(self, inputs: torch.Tensor | SparseBlock, index: torch.Tensor, at: SparseBlock) -> torch.Tensor:
        if isinstance(inputs, SparseBlock):
            inputs = inputs.to_dense()
        return self(inputs, index)[at.row_ids(), at.cols]

    def scores(self, inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def regularised(self) -> list[torch.Tensor]:
        return []

    def score_rows(self, rows: Csr) -> torch.Tensor:
        """The scores of a block of users from their rows."""
        return self.scores(self.inputs(rows))

    def user_scorer(self, movie_rows: Callable[[], Iterable[tuple[torch.Tensor, Csr]]]) -> UserScorer:
        return lambda fit, users: self.score_rows(fit)


class Popular(RankingModel):
    """Every user's scores are the movies' numbers of training ratings."""

    def __init__(self, n_movies: int) -> None:
        super().__init__(n_movies, stars=False)
        self.counts = nn.Parameter(torch.zeros(n_movies), requires_grad=False)

    def scores(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.counts.repeat(inputs.shape[0], 1)  # a copy of its own: top-N masks rated movies in place


class Ease(RankingModel):
    """EASE^R: scores = x · B, B a movies x movies matrix with a zero diagonal."""

    def __init__(self, n_movies: int, stars: bool) -> None:
        super().__init__(n_movies, stars)
        self.weights = nn.Parameter(torch.zeros(n_movies, n_movies), requires_grad=False)

    def scores(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs @ self.weights

    def score_rows(self, rows: Csr) -> torch.Tensor:
        """x · B from the rows' ratings alone: a sparse product, a fraction of the dense one's arithmetic."""
        return banded_product(_sparse(rows, self.stars), self.weights)


def popular(config: TrainConfig, n_users: int, n_movies: int, mean: float) -> Popular:
    return Popular(n_movies)


def ease(config: TrainConfig, n_users: int, n_movies: int, mean: float) -> Ease:
    return Ease(n_movies, stars=config.own_as(EaseSettings).ease_input == "stars")


def fit(inputs: FitInputs) -> Fitted:
    """Fit `popular` or `ease` on ``fit_parts``: the model (for ease, at the λ whose lists rank best on the
    validation slice), its curve (one entry per λ tried, with the validation nDCG@10), the seconds and the
    selection (the entry kept)."""
    con, config, info, fit_parts, mean, log, on_epoch = inputs  # (a FitInputs: base.py)
    started = time.perf_counter()
    model = build_model(config, info.n_users, info.n_movies, mean)
    assert isinstance(model, Popular | Ease)
    _, train, validation = user_rows_with_validation(con, config.split, fit_parts, config.validation, info.n_movies)
    history: list[dict[str, Any]] = []
    best, kept = Best(), None

    def fitted(settings: dict[str, float]) -> None:
        """Record a fit in the curve (scored on validation, and kept when it ranks best so far)."""
        nonlocal kept
        # "settings": what a refit of the run takes from the entry it kept (trainer/refit.py)
        metrics: dict[str, Any] = {
            "epoch": len(history) + 1,
            "train_rmse": None,
            "validation_rmse": None,
            "settings": settings,
        }
        if validation is not None:
            metrics[MAIN_METRIC] = validation_ranking(model, train, validation)[MAIN_METRIC]
            if best.epoch is None or metrics[MAIN_METRIC] > history[best.epoch - 1][MAIN_METRIC]:
                best.epoch = metrics["epoch"]
                kept = {name: t.detach().clone() for name, t in model.state_dict().items()}
        metrics["seconds"] = time.perf_counter() - step_start
        history.append(metrics)
        on_epoch(metrics)

    step_start = time.perf_counter()
    if isinstance(model, Popular):
        model.counts.data = torch.bincount(train.cols, minlength=info.n_movies).float()
        fitted({})
        return model, history, time.perf_counter() - started, best
    gram = _fit_gram(con, config, fit_parts, train, model.stars)
    while (strength := _next_lambda(config, history)) is not None:
        step_start = time.perf_counter()
        model.weights.data = _ease_weights(gram, strength)
        fitted({"l2": strength, "epochs": 1})  # a refit fits the λ chosen, once
    if kept is not None and config.select_best:
        model.load_state_dict(kept)
    if best.epoch is not None:
        chosen = history[best.epoch - 1]
        tried = ", ".join(f"{h['settings']['l2']:g}" for h in history)
        log(
            f"ease: λ {chosen['settings']['l2']:g} chosen of {tried} (validation {MAIN_METRIC} "
            f"{chosen[MAIN_METRIC]:.4f})"
        )
    return model, history, time.perf_counter() - started, best


def _next_lambda(config: TrainConfig, history: list[dict[str, Any]]) -> float | None:
    """The next λ for ease to try, or None when done: --l2 alone without a validation slice to choose on; else
    --l2, half and twice it, then twice past the best while the best lies at an edge of what was tried (a search
    on a log scale), at most --epochs of them."""
    tried = {h["settings"]["l2"]: h.get(MAIN_METRIC, math.nan) for h in history}
    if not config.validation:
        return None if tried else config.l2
    if len(tried) >= config.epochs:
        return None
    for strength in (config.l2, config.l2 / 2, config.l2 * 2):
        if strength not in tried:
            return strength
    best = max(tried, key=lambda strength: tried[strength])
    if best == min(tried):
        return best / 2
    if best == max(tried):
        return best * 2
    return None


def _sparse(rows: Csr, stars: bool) -> torch.Tensor:
    """The rows as a torch CSR tensor: 1 for each rating, or its stars."""
    return rows.block().matrix(rows.vals if stars else torch.ones_like(rows.vals))


def _fit_gram(
    con: duckdb.DuckDBPyConnection, config: TrainConfig, fit_parts: tuple[str, ...], train: Csr, stars: bool
) -> torch.Tensor:
    """The Gram matrix ease is fitted on: of the users' rows and, with --ease-session-gap, of their rating sessions'
    too. Movies rated in one sitting tell more of each other than movies a user rated years apart, and a session's
    row says which went together; the users' rows still hold what a user likes across sessions."""
    gram = _gram(train, stars, train.n_cols)
    gap = config.own_as(EaseSettings).ease_session_gap
    if gap:
        gram += _gram(rating_sessions(con, config.split, fit_parts, gap, train.n_cols), stars, train.n_cols)
    return gram


def _gram(train: Csr, stars: bool, n_movies: int) -> torch.Tensor:
    """XᵀX of the training rows, refused past EASE_MAX_BYTES (the Gram matrix, its factor and B, each movies x
    movies), rather than run the machine out of memory."""
    needed = 3 * 4 * n_movies**2
    if needed > EASE_MAX_BYTES:
        raise TrainerError(
            f"ease holds {n_movies:,} x {n_movies:,} matrices while fitting, about "
            f"{needed / 2**30:.0f} GB, more than its bound of {EASE_MAX_BYTES / 2**30:.0f} GB: "
            "train popular, or a model that reads user rows in batches"
        )
    gram = torch.zeros(n_movies, n_movies)
    block = eval_rows(n_movies)  # rows at a time: the sessions' rows would not fit in memory as one dense block
    for start in range(0, train.n_rows, block):
        rows = train.slice(start, min(start + block, train.n_rows))
        weighted = rows.block().with_vals(rows.vals if stars else torch.ones_like(rows.vals))
        gram += banded_product(weighted.transposed(), weighted.to_dense())
    return gram


def _ease_weights(gram: torch.Tensor, strength: float) -> torch.Tensor:
    """B = I − P·diag(1/diag(P)), P = (G + λI)⁻¹ by its Cholesky factor: the diagonal comes out 0."""
    regularised = gram.clone()
    regularised.diagonal().add_(strength)
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(regularised))
    weights = -inverse / inverse.diagonal()
    weights.diagonal().zero_()
    return weights


@torch.no_grad()
def validation_ranking(model: RankingModel, train: Csr, validation: Csr) -> dict[str, float]:
    """The ranking metrics of the model's lists on the validation slice: candidates unrated in training."""
    tally = RankingTally(popularity=torch.zeros(model.n_movies, dtype=torch.float64))
    block = eval_rows(model.n_movies)
    for start in range(0, train.n_rows, block):
        end = min(start + block, train.n_rows)
        rows, held = train.slice(start, end), validation.slice(start, end)
        evaluate_block(tally, model.score_rows(rows), [rows], held)
    return tally.metrics() or {MAIN_METRIC: math.nan}
