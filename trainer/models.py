"""The models `trainer run --model` can train, all through the same loop (trainer/train.py).

Every model reads rows of one of the warehouse's matrices: user rows (`user_matrix`, each user's
ratings of every movie) or movie rows (`movie_matrix`, each movie's ratings by every user), as said
by its ``rows`` attribute. It is called on a block of those rows as ``model(inputs, index)``, where
``inputs`` is the block's dense ratings (0 where unrated) and ``index`` the rows' user_idx (or
movie_idx), and returns the block's predicted ratings, the same shape as ``inputs``.
Called instead on a :class:`~trainer.sparse.SparseBlock` of those rows, it returns the predictions at
the block's observed ratings only (in the block's order), which is all the training loss reads.
``predict_at(inputs, index, at)`` is the output at the entries of another block (held-out ratings of
the same rows), and ``regularised()`` lists the tensors the L2 penalty (``--l2``) applies to.
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.config import PRESETS, TrainConfig
from trainer.errors import TrainerError
from trainer.sparse import SparseBlock, linear_at_observed, sparse_linear


ACTIVATIONS = {"sigmoid": nn.Sigmoid, "selu": nn.SELU}


class AutoEncoder(nn.Module):
    """A ratings row (n_cols wide) -> hidden layers -> the same row back, identity output.

    With user rows and hidden=(20, 10, 20), sigmoid, this is the notebook's stacked autoencoder (its
    write-up says the output is sigmoid; its code has none). With movie rows and hidden=(500,) it is
    I-AutoRec (Sedhain et al., WWW 2015): each movie's ratings by all users, encoded and decoded.
    With SELU and dropout on the code (the middle hidden layer) it is DeepRecommender's network
    (Kuchaiev & Ginsburg 2017).
    """

    def __init__(self, n_cols: int, hidden: tuple[int, ...], rows: str = "user", activation: str = "sigmoid",
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.rows = rows
        widths = (n_cols, *hidden)
        layers: list[nn.Module] = []
        for i, (width_in, width_out) in enumerate(zip(widths, widths[1:])):
            layers += [nn.Linear(width_in, width_out), ACTIVATIONS[activation]()]
            if dropout and i == len(hidden) // 2:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-1], n_cols))
        # The first weight is stored transposed (column-major): the sparse input product reads it as
        # columns x units and its gradient comes out that way, so neither is copied into the other layout
        # every step (a third of that layer's time at u1's size). Dense products take either layout.
        layers[0].weight = nn.Parameter(layers[0].weight.detach().t().contiguous().t())
        self.net = nn.Sequential(*layers)

    def forward(self, inputs: torch.Tensor | SparseBlock, index: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(inputs, SparseBlock):
            return self.predict_at(inputs, index, inputs)
        return self.net(inputs)

    def predict_at(self, inputs: torch.Tensor | SparseBlock, index: torch.Tensor | None, at: SparseBlock) -> torch.Tensor:
        """The outputs at ``at``'s entries, in its order, without computing the rest of the rows x cols
        output: scoring a few held-out ratings, or training on the observed ones, costs a fraction of a
        full forward pass."""
        output = self.net[-1]
        return linear_at_observed(at, self.encode(inputs), output.weight, output.bias)

    def encode(self, inputs: torch.Tensor | SparseBlock) -> torch.Tensor:
        """The last hidden layer of each row: the output layer is linear, so this is all a row's outputs need."""
        first, *hidden, _ = self.net  # (slicing the Sequential would build a new module every call)
        code = sparse_linear(inputs, first.weight, first.bias) if isinstance(inputs, SparseBlock) else first(inputs)
        for layer in hidden:
            code = layer(code)
        return code

    def decode_columns(self, code: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """forward(inputs)[:, cols] from encode(inputs): the outputs of a few columns for every row."""
        output = self.net[-1]
        return code @ output.weight.index_select(0, cols).T + output.bias.index_select(0, cols)

    def regularised(self) -> list[torch.Tensor]:
        """The weight matrices (I-AutoRec's L2 term leaves the biases out)."""
        return [layer.weight for layer in self.net if isinstance(layer, nn.Linear)]


class MatrixFactorisation(nn.Module):
    """The baselines: rating = mean + user bias + movie bias + user factors . movie factors.

    ``biases=False, factors=0`` is the global mean; ``factors=0`` the user+movie biases (the L2
    penalty on the biases is what damps them towards 0 for users and movies with few ratings);
    ``factors=k`` biased matrix factorisation. Trained on user rows: ``index`` says which users.
    The mean starts at the training ratings' mean, so the global mean needs no training at all.
    """

    rows = "user"

    def __init__(self, n_users: int, n_movies: int, mean: float, factors: int = 0, biases: bool = True) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.tensor(float(mean)))
        self.user_bias = nn.Parameter(torch.zeros(n_users)) if biases else None
        self.movie_bias = nn.Parameter(torch.zeros(n_movies)) if biases else None
        # Small random factors: zeros would be a saddle point the gradient never leaves.
        self.user_factors = nn.Parameter(torch.randn(n_users, factors) * 0.01) if factors else None
        self.movie_factors = nn.Parameter(torch.randn(n_movies, factors) * 0.01) if factors else None
        self.n_movies = n_movies

    def forward(self, inputs: torch.Tensor | SparseBlock, index: torch.Tensor) -> torch.Tensor:
        if isinstance(inputs, SparseBlock):
            return self.predict_at(inputs, index, inputs)
        out = self.mean.expand(index.numel(), self.n_movies)
        if self.user_bias is not None:
            out = out + self.user_bias[index, None] + self.movie_bias[None, :]
        if self.user_factors is not None:
            out = out + self.user_factors[index] @ self.movie_factors.T
        return out

    def predict_at(self, inputs: torch.Tensor | SparseBlock | None, index: torch.Tensor, at: SparseBlock) -> torch.Tensor:
        users, cols = index[at.row_ids()], at.cols
        out = self.mean.expand(cols.numel())
        if self.user_bias is not None:
            out = out + self.user_bias[users]
        if self.user_factors is not None:
            # The block's users' factors times the movies' at the block's cells, plus the movie biases: one
            # sampled product (a gather of both factor rows per rating, then a sum, trained ml-1m in 35.9 s, this
            # in 2.8 s).
            movie_bias = self.movie_bias if self.movie_bias is not None else torch.zeros_like(self.movie_factors[:, 0])
            out = out + linear_at_observed(at, self.user_factors[index], self.movie_factors, movie_bias)
        elif self.movie_bias is not None:
            out = out + self.movie_bias[cols]
        return out

    def regularised(self) -> list[torch.Tensor]:
        return [p for name, p in self.named_parameters() if name != "mean"]


def build_model(config: TrainConfig, n_users: int, n_movies: int, mean: float) -> nn.Module:
    """The network ``config.model`` names; ``mean`` is the training ratings' mean (never the test's)."""
    match config.model:
        case "autoencoder" | "notebook" | "deep-ae":  # user rows; the presets differ in shape and training
            return AutoEncoder(n_movies, config.hidden, rows="user", activation=config.activation,
                               dropout=config.dropout)
        case "i-autorec":
            return AutoEncoder(n_users, config.hidden, rows="movie", activation=config.activation,
                               dropout=config.dropout)
        case "global-mean":
            return MatrixFactorisation(n_users, n_movies, mean, factors=0, biases=False)
        case "biases":
            return MatrixFactorisation(n_users, n_movies, mean, factors=0)
        case "mf":
            return MatrixFactorisation(n_users, n_movies, mean, factors=config.hidden[0])
    raise TrainerError(f"unknown model {config.model!r}: choose one of {', '.join(PRESETS)}")
