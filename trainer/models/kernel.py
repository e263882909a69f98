"""Kernelised autoencoders of movie rows: Sparse FC's layers (kernel-ae) and GLocal-K's global convolution
(glocal-k), which fine-tunes a kernel-ae run."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainer.models.autoencoders import ItemAutoEncoder
from trainer.models.base import UserScorer
from trainer.models.settings import GlocalSettings, KernelSettings
from trainer.sparse import Csr, SparseBlock, linear_at_observed

if TYPE_CHECKING:
    from trainer.config import TrainConfig


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


class KernelAutoEncoder(ItemAutoEncoder):
    """I-AutoRec's shape with kernelised layers (Sparse FC): every weight is W ⊙ K(U, V) (KernelLinear).

    The penalty is l2 on W plus kernel_l2 on K, both in --l2's units: regularised() returns K scaled by
    sqrt(kernel_l2 / l2), so that the loop's one l2 term gives both.
    """

    def __init__(self, n_users: int, n_movies: int, hidden: tuple[int, ...], l2: float, own: KernelSettings) -> None:
        super().__init__(n_users, n_movies, hidden, "sigmoid", linear=KernelLinear, input_dropout=own.input_dropout)
        self.kernel_scale = math.sqrt(own.kernel_l2 / l2) if l2 else 0.0

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

    def __init__(self, n_users: int, n_movies: int, hidden: tuple[int, ...], l2: float, own: GlocalSettings) -> None:
        super().__init__(n_users, n_movies, hidden, l2, KernelSettings(kernel_l2=own.kernel_l2))
        self.dot_scale = own.dot_scale
        # The global kernel is identity + (means @ conv_kernel) * dot_scale. Started "identity" (conv_kernel 0),
        # the fine-tuning starts from the pre-trained model's own predictions; "paper" draws conv_kernel as
        # GLocal-K's code does (std 0.1, no identity), a kernel in the tens that the fine-tuning must unlearn.
        # Zeroed and set in place, not multiplied by a flag: the meta device, where the model is only measured,
        # has no kernel for products with a number (train._fits_in_memory says why that matters).
        paper = own.global_kernel_start == "paper"
        conv_kernel = nn.init.trunc_normal_(torch.empty(n_movies, 9), std=0.1)  # drawn either way: the same seed after
        if not paper:
            conv_kernel.zero_()
        self.conv_kernel = nn.Parameter(conv_kernel)
        identity = torch.zeros(9)
        if not paper:
            identity[4] = 1.0  # the centre tap
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
        rows = inputs.to_dense() if isinstance(inputs, SparseBlock) else inputs
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


def kernel_ae(config: TrainConfig, n_users: int, n_movies: int, mean: float) -> KernelAutoEncoder:
    return KernelAutoEncoder(n_users, n_movies, config.hidden, config.l2, config.own_as(KernelSettings))


def glocal_k(config: TrainConfig, n_users: int, n_movies: int, mean: float) -> GlocalK:
    return GlocalK(n_users, n_movies, config.hidden, config.l2, config.own_as(GlocalSettings))
