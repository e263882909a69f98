"""The autoencoders of rating rows: the notebook's stacked autoencoder and its batched successor (user rows),
DeepRecommender's design, and I-AutoRec (movie rows)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from trainer.models.base import UserRows, UserScorer
from trainer.models.settings import AutoencoderSettings, ItemAutoencoderSettings
from trainer.sparse import Csr, SparseBlock, linear_at_observed, sigmoid_stack_at_observed, sparse_linear

if TYPE_CHECKING:
    from trainer.config import TrainConfig


ACTIVATIONS = {"sigmoid": nn.Sigmoid, "selu": nn.SELU}


class AutoEncoder(UserRows, nn.Module):
    """A ratings row (n_cols wide) -> hidden layers -> the same row back, identity output.

    With user rows and hidden=(20, 10, 20), sigmoid, this is the notebook's stacked autoencoder (its
    write-up says the output is sigmoid; its code has none). With movie rows and hidden=(500,) it is
    I-AutoRec (Sedhain et al., WWW 2015): each movie's ratings by all users, encoded and decoded.
    With SELU and dropout on the code (the middle hidden layer) it is DeepRecommender's network
    (Kuchaiev & Ginsburg 2017).
    """

    dense_on_gpu = True  # the sparse kernels are the CPU's (docs/gpu.md)

    def __init__(
        self,
        n_cols: int,
        hidden: tuple[int, ...],
        activation: str = "sigmoid",
        dropout: float = 0.0,
        linear: Callable[[int, int], nn.Module] = nn.Linear,
    ) -> None:
        super().__init__()
        widths = (n_cols, *hidden)
        layers: list[nn.Module] = []
        for i, (width_in, width_out) in enumerate(zip(widths, widths[1:])):
            layers += [linear(width_in, width_out), ACTIVATIONS[activation]()]
            if dropout and i == len(hidden) // 2:
                layers.append(nn.Dropout(dropout))
        layers.append(linear(widths[-1], n_cols))
        # The first weight is stored transposed (column-major): the sparse input product reads it as
        # columns x units and its gradient comes out that way, so neither is copied into the other layout
        # every step (a third of that layer's time at u1's size). Dense products take either layout.
        first = layers[0]
        if isinstance(first, nn.Linear):
            first.weight = nn.Parameter(first.weight.detach().t().contiguous().t())
        self.net = nn.Sequential(*layers)
        # Linear layers with a sigmoid between each (the default model): computed from a block as one node.
        self._sigmoid_stack = all(type(layer) is (nn.Linear, nn.Sigmoid)[i % 2] for i, layer in enumerate(layers))

    @property
    def output(self) -> Any:
        """The output layer (an nn.Linear or a KernelLinear): linear, so a row's outputs are its code
        (encode) times its weight."""
        return self.net[-1]

    def forward(self, inputs: torch.Tensor | SparseBlock, index: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(inputs, SparseBlock):
            return self.predict_at(inputs, index, inputs)
        return self.net(inputs)

    def predict_at(
        self, inputs: torch.Tensor | SparseBlock, index: torch.Tensor | None, at: SparseBlock
    ) -> torch.Tensor:
        """The outputs at ``at``'s entries, in its order, without computing the rest of the rows x cols
        output: scoring a few held-out ratings, or training on the observed ones, costs a fraction of a
        full forward pass."""
        if isinstance(inputs, SparseBlock) and self._sigmoid_stack:
            linears = cast(list[nn.Linear], list(self.net)[::2])  # (a slice of the Sequential is a new module)
            weights, biases = [layer.weight for layer in linears], [layer.bias for layer in linears]
            return sigmoid_stack_at_observed(inputs, at, weights, biases)
        return linear_at_observed(at, self.encode(inputs), self.output.weight, self.output.bias)

    def encode(self, inputs: torch.Tensor | SparseBlock) -> torch.Tensor:
        """The last hidden layer of each row: the output layer is linear, so this is all a row's outputs need."""
        first, *hidden, _ = self.net  # (slicing the Sequential would build a new module every call)
        layer: Any = first  # an nn.Linear or a KernelLinear: both have a weight and a bias
        code = sparse_linear(inputs, layer.weight, layer.bias) if isinstance(inputs, SparseBlock) else first(inputs)
        for layer in hidden:
            code = layer(code)
        return code

    def decode_columns(self, code: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """forward(inputs)[:, cols] from encode(inputs): the outputs of a few columns for every row."""
        return code @ self.output.weight.index_select(0, cols).T + self.output.bias.index_select(0, cols)

    def regularised(self) -> list[torch.Tensor]:
        """The weight matrices (I-AutoRec's L2 term leaves the biases out)."""
        return [layer.weight for layer in self.net if isinstance(layer, nn.Linear)]


class ItemAutoEncoder(AutoEncoder):
    """The autoencoder on movie rows (I-AutoRec): each movie's ratings by every user, encoded and decoded."""

    rows = "movie"
    folds_in = False  # a user's scores are the user's own output weights

    def __init__(
        self,
        n_users: int,
        n_movies: int,
        hidden: tuple[int, ...],
        activation: str = "sigmoid",
        dropout: float = 0.0,
        linear: Callable[[int, int], nn.Module] = nn.Linear,
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__(n_users, hidden, activation, dropout, linear)
        self.n_movies = n_movies
        self.input_dropout = input_dropout

    def forward(self, inputs: torch.Tensor | SparseBlock, index: torch.Tensor | None = None) -> torch.Tensor:
        """While training with input dropout, the encoder reads the inputs with each observed rating zeroed with
        probability input_dropout (kept ones are not rescaled: on u1 that validated better); the outputs are
        still those at every observed rating, so the model learns to predict the ratings it did not see."""
        if self.training and self.input_dropout:
            values = inputs.vals if isinstance(inputs, SparseBlock) else inputs
            kept = values * (torch.rand_like(values) < 1 - self.input_dropout)
            # a block keeps every entry (dropped ones hold 0), so the outputs are still at every observed rating
            inputs = inputs.with_vals(kept) if isinstance(inputs, SparseBlock) else kept
        return super().forward(inputs, index)

    @torch.no_grad()
    def user_scorer(self, movie_rows: Callable[[], Iterable[tuple[torch.Tensor, Csr]]]) -> UserScorer:
        """A block of users' scores are every movie's code (last hidden layer, from its training row) times
        those users' output weights: movies x hidden units are kept, where the scores themselves would be
        movies x users (15 GB at ml-20m)."""
        codes = torch.zeros(self.n_movies, self.output.in_features, device=self.output.weight.device)
        for movies, fit in movie_rows():
            codes[movies] = self.encode(fit.to_dense())
        return lambda fit, users: self.decode_columns(codes, users).T.contiguous()


def user_autoencoder(config: TrainConfig, n_users: int, n_movies: int, mean: float) -> AutoEncoder:
    """autoencoder, notebook and deep-ae: a user's ratings of every movie in and out."""
    own = config.own_as(AutoencoderSettings)
    return AutoEncoder(n_movies, config.hidden, own.activation, own.dropout)


def i_autorec(config: TrainConfig, n_users: int, n_movies: int, mean: float) -> ItemAutoEncoder:
    own = config.own_as(ItemAutoencoderSettings)
    return ItemAutoEncoder(
        n_users, n_movies, config.hidden, own.activation, own.dropout, input_dropout=own.input_dropout
    )
