"""The models `trainer run --model` can train, all through the same loop (trainer/train.py).

Every model implements `Model`, the interface the loop, model selection and prediction use; none of
them asks which model it has. Adding a model is one class here, one preset in trainer/config.py and
its line in BUILDERS below.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, cast

import torch
from torch import nn

from trainer.config import GIBBS_BURN_IN, PRESETS, TrainConfig
from trainer.data import Csr
from trainer.errors import TrainerError
from trainer.sparse import SparseBlock, linear_at_observed, sparse_linear

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


ACTIVATIONS = {"sigmoid": nn.Sigmoid, "selu": nn.SELU}


class UserRows:
    """A model of user rows: it scores a block of users from their own training ratings."""

    rows = "user"
    folds_in = True
    whole_matrix = False

    def user_scorer(self, movie_rows: Callable[[], Iterable[tuple[torch.Tensor, Csr]]]) -> UserScorer:
        return lambda fit, users: self(fit.to_dense(), users)  # type: ignore[operator]  # (an nn.Module's __call__)


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


class KernelLinear(nn.Module):
    """A linear layer whose weight is W ⊙ K(U, V), after Sparse FC (Muller et al., 2020).

    Each input unit i and output unit j has a vector (u_i, v_j) in R^dim, and K_ij = max(0, 1 - |u_i - v_j|^2),
    a compact-support "hat" kernel. The vectors start near 0, so the layer starts dense, and it grows
    sparse as training moves them apart (the kernel's penalty, --kernel-l2, pulls towards that).
    """

    def __init__(self, in_features: int, out_features: int, dim: int = 5) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        # W as Sparse FC's code draws it (Glorot uniform): it validates better than nn.Linear's narrower draw.
        self.raw_weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(out_features, in_features)))
        bound = 1 / math.sqrt(in_features)  # the bias as nn.Linear draws it
        self.bias = nn.Parameter(nn.init.uniform_(torch.empty(out_features), -bound, bound))
        self.u = nn.Parameter(nn.init.trunc_normal_(torch.empty(in_features, dim), std=1e-3))
        self.v = nn.Parameter(nn.init.trunc_normal_(torch.empty(out_features, dim), std=1e-3))

    def kernel(self) -> torch.Tensor:
        """K (out x in): 1 - the squared distance of each (output, input) pair of vectors, at least 0."""
        squared = self.v.square().sum(1, keepdim=True) + self.u.square().sum(1) - 2 * self.v @ self.u.T
        return (1 - squared).clamp(min=0)

    @property
    def weight(self) -> torch.Tensor:
        return self.raw_weight * self.kernel()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(inputs, self.weight, self.bias)


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


class KernelAutoEncoder(ItemAutoEncoder):
    """I-AutoRec's shape with kernelised layers (Sparse FC): every weight is W ⊙ K(U, V) (KernelLinear).

    The penalty is l2 on W plus kernel_l2 on K, both in --l2's units: regularised() returns K scaled by
    sqrt(kernel_l2 / l2), so that the loop's one l2 term gives both.
    """

    def __init__(self, n_users: int, n_movies: int, hidden: tuple[int, ...], l2: float, kernel_l2: float,
                 activation: str = "sigmoid", input_dropout: float = 0.0) -> None:  # fmt: skip
        super().__init__(n_users, n_movies, hidden, activation, linear=KernelLinear, input_dropout=input_dropout)
        self.kernel_scale = math.sqrt(kernel_l2 / l2) if l2 else 0.0

    def regularised(self) -> list[torch.Tensor]:
        layers = [layer for layer in self.net if isinstance(layer, KernelLinear)]
        return [layer.raw_weight for layer in layers] + [layer.kernel() * self.kernel_scale for layer in layers]


class GlocalK(KernelAutoEncoder):
    """GLocal-K (Han et al., CIKM 2021): a kernel autoencoder whose input is first convolved with a global kernel.

    The global kernel is one 3x3 convolution kernel made from the whole model's view of the data: each movie's
    mean output over all users (the autoencoder run on the plain ratings), times a learned movies x 9 matrix,
    times dot_scale (plus the identity, with --global-kernel-start identity). The training matrix, as an image
    of movies x users (movie_idx, user_idx order), is convolved with it (ReLU) and goes through the same
    autoencoder. The paper fine-tunes a pre-trained kernel autoencoder this way: start it from a kernel-ae run
    with --init-from. The convolution reads neighbouring rows, so the model takes every movie at once
    (whole_matrix) and holds movies x users dense values.
    """

    whole_matrix = True

    def __init__(self, n_users: int, n_movies: int, hidden: tuple[int, ...], l2: float, kernel_l2: float,
                 dot_scale: float, start: str = "identity", activation: str = "sigmoid") -> None:  # fmt: skip
        super().__init__(n_users, n_movies, hidden, l2, kernel_l2, activation)
        self.dot_scale = dot_scale
        # The global kernel is identity + (means @ conv_kernel) * dot_scale. Started "identity" (conv_kernel 0),
        # the fine-tuning starts from the pre-trained model's own predictions; "paper" draws conv_kernel as
        # GLocal-K's code does (std 0.1, no identity), a kernel in the tens that the fine-tuning must unlearn.
        paper = start == "paper"
        self.conv_kernel = nn.Parameter(nn.init.trunc_normal_(torch.empty(n_movies, 9), std=0.1) * paper)
        identity = torch.tensor([0.0, 0, 0, 0, 1, 0, 0, 0, 0]) * (not paper)  # the centre tap
        self.register_buffer("identity", identity, persistent=False)

    def forward(self, inputs: torch.Tensor | SparseBlock, index: torch.Tensor | None = None) -> torch.Tensor:
        assert index is not None  # the convolution places each row by its movie_idx
        if isinstance(inputs, SparseBlock):
            return self.predict_at(inputs, index, inputs)
        return self.net(self.convolved(inputs, index))

    def predict_at(
        self, inputs: torch.Tensor | SparseBlock, index: torch.Tensor | None, at: SparseBlock
    ) -> torch.Tensor:
        assert index is not None
        code = super().encode(self.convolved(inputs, index))
        return linear_at_observed(at, code, self.output.weight, self.output.bias)

    def global_kernel(self, inputs: torch.Tensor | SparseBlock, index: torch.Tensor) -> torch.Tensor:
        """The 3x3 kernel: each movie's mean output over the users, from the plain ratings, times conv_kernel.
        The output layer is linear, so a movie's mean output is its code times the mean output weight."""
        item_mean = super().encode(inputs) @ self.output.weight.mean(0) + self.output.bias.mean()
        means = item_mean.new_zeros(self.n_movies).index_copy(0, index, item_mean)
        return (self.identity + means @ self.conv_kernel * self.dot_scale).view(3, 3)

    def convolved(self, inputs: torch.Tensor | SparseBlock, index: torch.Tensor) -> torch.Tensor:
        """The rows of the movies x users matrix convolved with the global kernel (zero padding), ReLU."""
        rows = _dense(inputs)
        image = rows.new_zeros(self.n_movies, rows.shape[1]).index_copy(0, index, rows)
        kernel = self.global_kernel(inputs, index)
        return torch.relu(Conv3x3.apply(image, kernel)).index_select(0, index)

    @torch.no_grad()
    def user_scorer(self, movie_rows: Callable[[], Iterable[tuple[torch.Tensor, Csr]]]) -> UserScorer:
        """As I-AutoRec's, with every movie's code computed at once from the convolved training matrix."""
        blocks = list(movie_rows())
        index = torch.cat([movies for movies, _ in blocks])
        fit = Csr.concat([rows for _, rows in blocks])
        codes = torch.zeros(self.n_movies, self.output.in_features, device=self.output.weight.device)
        codes[index] = super().encode(self.convolved(fit.to_dense(), index))
        return lambda fit, users: self.decode_columns(codes, users).T.contiguous()


class Conv3x3(torch.autograd.Function):
    """A one-channel 3x3 cross-correlation with zero padding (conv2d's), differentiable in the kernel only.

    Nine shifted sums accumulated in place, and nine dot products for the kernel's gradient: on a CPU,
    several times faster than conv2d with one channel, or than the same sums through autograd, which keeps a
    temporary per tap (measured at ml-1m's 3,650 x 6,040)."""

    @staticmethod
    def forward(ctx: Any, image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        assert not ctx.needs_input_grad[0], "the image is data: no gradient flows into it"
        padded = nn.functional.pad(image, (1, 1, 1, 1))
        ctx.save_for_backward(padded)
        height, width = image.shape
        taps = kernel.detach().flatten().tolist()
        out = padded[:height, :width] * taps[0]
        for tap, (a, b) in zip(taps[1:], [(a, b) for a in range(3) for b in range(3)][1:]):
            out.add_(padded[a : a + height, b : b + width], alpha=tap)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        (padded,) = ctx.saved_tensors
        height, width = grad.shape
        taps = [(grad * padded[a : a + height, b : b + width]).sum() for a in range(3) for b in range(3)]
        return None, torch.stack(taps).view(3, 3)


def _dense(inputs: torch.Tensor | SparseBlock) -> torch.Tensor:
    if not isinstance(inputs, SparseBlock):
        return inputs
    dense = inputs.vals.new_zeros(inputs.n_rows, inputs.n_cols)
    return dense.index_put_((inputs.row_ids(), inputs.cols.long()), inputs.vals)


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
        # Small random factors: zeros would be a saddle point the gradient never leaves.
        self.user_factors = nn.Parameter(torch.randn(n_users, factors) * 0.01) if factors else None
        self.movie_factors = nn.Parameter(torch.randn(n_movies, factors) * 0.01) if factors else None
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


Builder = Callable[[TrainConfig, int, int, float], nn.Module]
# Each preset's network, from (config, n_users, n_movies, the training ratings' mean, never the test's).
BUILDERS: dict[str, Builder] = {
    "autoencoder": lambda c, users, movies, mean: AutoEncoder(movies, c.hidden, c.activation, c.dropout),
    "notebook": lambda c, users, movies, mean: AutoEncoder(movies, c.hidden, c.activation, c.dropout),
    "deep-ae": lambda c, users, movies, mean: AutoEncoder(movies, c.hidden, c.activation, c.dropout),
    "i-autorec": lambda c, users, movies, mean: ItemAutoEncoder(
        users, movies, c.hidden, c.activation, c.dropout, input_dropout=c.input_dropout
    ),
    "global-mean": lambda c, users, movies, mean: MatrixFactorisation(users, movies, mean, factors=0, biases=False),
    "biases": lambda c, users, movies, mean: MatrixFactorisation(users, movies, mean, factors=0),
    "mf": lambda c, users, movies, mean: MatrixFactorisation(users, movies, mean, factors=c.hidden[0]),
    # The mean of up to (epochs - burn-in) Gibbs samples of rank hidden[0], side by side (trainer/bayes_fm.py).
    "bayes-fm": lambda c, users, movies, mean: MatrixFactorisation(
        users, movies, mean, factors=c.hidden[0] * (c.epochs - GIBBS_BURN_IN)
    ),
    "kernel-ae": lambda c, users, movies, mean: KernelAutoEncoder(
        users, movies, c.hidden, c.l2, c.kernel_l2, input_dropout=c.input_dropout
    ),
    "glocal-k": lambda c, users, movies, mean: GlocalK(
        users, movies, c.hidden, c.l2, c.kernel_l2, c.dot_scale, c.global_kernel_start
    ),
}


def build_model(config: TrainConfig, n_users: int, n_movies: int, mean: float) -> Model:
    """The network ``config.model`` names."""
    if config.model not in BUILDERS:
        raise TrainerError(f"unknown model {config.model!r}: choose one of {', '.join(PRESETS)}")
    model = cast(Model, BUILDERS[config.model](config, n_users, n_movies, mean))
    rows = n_users if model.rows == "user" else n_movies
    if model.whole_matrix and config.batch_size < rows:
        raise TrainerError(f"{config.model} reads every {model.rows} row at once: --batch-size must be at least "
                           f"{rows:,} (the number of {model.rows}s), not {config.batch_size:,}")  # fmt: skip
    return model
