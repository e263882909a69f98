"""What every model is to the trainer: the `Model` interface the loop, model selection, prediction, scoring and
blending use (none of them asks which model it has), and `build_model`, which builds the one a run names
through its registry entry (trainer/models/registry.py)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

import torch
from torch import nn

from trainer.errors import TrainerError
from trainer.models.registry import REGISTRY
from trainer.sparse import Csr, SparseBlock

if TYPE_CHECKING:
    from trainer.config import TrainConfig
    from trainer.data import DatasetInfo
    from trainer.selection import Best

# Scores of a block of users for every movie, from the block's training ratings and its user_idx.
UserScorer = Callable[[Csr, torch.Tensor], torch.Tensor]


class Model(Protocol):
    """What the trainer needs of a model (an nn.Module).

    A model reads rows of one of the warehouse's matrices: user rows (`user_matrix`, each user's ratings
    of every movie) or movie rows (`movie_matrix`, each movie's ratings by every user), as ``rows`` says.
    """

    rows: str  # "user" or "movie"
    # Whether it scores a user from the user's ratings alone, so that a user it never trained on can be
    # scored too (fold-in, trainer/score.py). Its user_scorer then ignores the users' indexes (-1 for new ones).
    folds_in: bool
    # Whether it trains from dense rows x columns outputs on a GPU (the CPU always takes the sparse path,
    # trainer/data.py dense_output).
    dense_on_gpu: bool
    # Whether a row's outputs depend on the other rows too (GLocal-K's convolution over the whole matrix): it
    # is then always given every row at once, in training (--batch-size) and in scoring (trainer/data.py).
    whole_matrix: bool
    # Whether its outputs are star ratings (scored by RMSE, served in latest_predictions), or only scores that
    # rank movies (popular, ease): their runs are judged on their lists alone (trainer/ranking.py).
    predicts_ratings: bool

    def __call__(self, inputs: torch.Tensor | SparseBlock, index: torch.Tensor) -> torch.Tensor:
        """The predicted ratings of a block of rows (``index``: their user_idx, or movie_idx): the same shape
        as dense ``inputs`` (0 where unrated), or, for a SparseBlock, at its observed ratings, in its order."""
        ...

    def predict_at(self, inputs: torch.Tensor | SparseBlock, index: torch.Tensor, at: SparseBlock) -> torch.Tensor:
        """The outputs at the entries of another block of the same rows (their held-out ratings)."""
        ...

    def regularised(self) -> list[torch.Tensor]:
        """The tensors the L2 penalty (--l2) applies to."""
        ...

    def user_scorer(self, movie_rows: Callable[[], Iterable[tuple[torch.Tensor, Csr]]]) -> UserScorer:
        """What prediction calls for each block of users; ``movie_rows`` gives the training matrix's movie
        rows (movie_idx, ratings) in blocks, for a model that reads them."""
        ...

    # and what the loop uses of nn.Module
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any: ...
    def train(self, mode: bool = True) -> Any: ...
    def eval(self) -> Any: ...
    def to(self, device: torch.device) -> Any: ...


class UserRows:
    """A model of user rows: it scores a block of users from their own training ratings."""

    rows = "user"
    folds_in = True
    whole_matrix = False
    predicts_ratings = True

    def user_scorer(self, movie_rows: Callable[[], Iterable[tuple[torch.Tensor, Csr]]]) -> UserScorer:
        return lambda fit, users: self(fit.to_dense(), users)  # type: ignore[operator]  # (an nn.Module's __call__)


class FitInputs(NamedTuple):
    """What a model fitted outside the training loop (ModelSpec.fit: sampled, or in closed form) is given: the
    warehouse, the run's settings and data set, the parts it trains on, the training ratings' mean, and where to
    say what it does and report each epoch."""

    con: Any
    config: TrainConfig
    info: DatasetInfo
    fit_parts: tuple[str, ...]
    mean: float
    log: Callable[[str], None]
    on_epoch: Callable[[dict[str, Any]], None]


# What such a fit hands back: the model, its learning curve, the seconds it took, and the selection.
Fitted = tuple["Model", list[dict[str, Any]], float, "Best"]


def build_model(config: TrainConfig, n_users: int, n_movies: int, mean: float) -> Model:
    """The network ``config.model`` names, built by its registry entry's builder from the run's settings, the
    numbers of users and movies, and the training ratings' mean (never the test's)."""
    if config.model not in REGISTRY:
        raise TrainerError(f"unknown model {config.model!r}: choose one of {', '.join(REGISTRY)}")
    module, name = REGISTRY[config.model].builder.split(":")
    builder = getattr(importlib.import_module(module), name)
    model = cast(Model, builder(config, n_users, n_movies, mean))
    rows = n_users if model.rows == "user" else n_movies
    if model.whole_matrix and config.batch_size < rows:
        raise TrainerError(
            f"{config.model} reads every {model.rows} row at once: --batch-size must be at least "
            f"{rows:,} (the number of {model.rows}s), not {config.batch_size:,}"
        )
    return model
