"""A block of rating rows as a sparse matrix, and the two layers an autoencoder can compute from it sparsely.

A user row of ml-100k holds 5 % of the movies, and the loss only reads the outputs at the observed
ratings. So the input layer needs only the observed inputs, and the output layer only the outputs at
the observed ratings: both are sparse-dense products over the block's ratings instead of dense products
over its rows x movies. On this project's CPU they made the seed model's training step about 2x faster
(docs/benchmarks.md). The weight gradients need the block's transpose; a block that is trained on
every epoch builds it once.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

# Creating a CSR tensor warns once per process that the layout is in beta; the products used here are
# tested against their dense equivalents (tests/trainer/test_sparse.py).
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


def entry_rows(offsets: torch.Tensor, n_entries: int) -> torch.Tensor:
    """The row of each of the ``n_entries`` stored entries of a CSR matrix with these row offsets (its COO rows)."""
    return torch.repeat_interleave(
        torch.arange(offsets.numel() - 1, device=offsets.device), offsets.diff().long(), output_size=n_entries
    )


class SparseBlock:
    """Rows of ratings (users', or movies'), as the CSR matrix ``offsets``/``cols``/``vals``, ``n_cols`` wide."""

    def __init__(self, offsets: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n_cols: int) -> None:
        # int32 indexes: the CPU kernels (MKL) take no others, and would convert int64 ones at every call.
        self.offsets, self.cols, self.vals = offsets.to(torch.int32), cols.to(torch.int32), vals
        self.n_rows, self.n_cols = offsets.numel() - 1, n_cols
        self._transpose: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        # The block with its own ratings, each way: a batch trained on every epoch builds them once.
        self._with_ratings: dict[str, torch.Tensor] = {}

    def with_vals(self, vals: torch.Tensor) -> SparseBlock:
        """The same rows and columns holding other values, sharing this block's transposed structure."""
        if self._transpose is None:
            self.transposed(self.vals)  # builds the structure once, for this block and its copies
        block = SparseBlock(self.offsets, self.cols, vals, self.n_cols)
        block._transpose = self._transpose
        return block

    def row_ids(self) -> torch.Tensor:
        """The row of every stored entry."""
        return entry_rows(self.offsets, self.vals.numel())

    def matrix(self, values: torch.Tensor | None = None) -> torch.Tensor:
        """The block as a torch CSR tensor, holding ``values`` (aligned with ``vals``) instead of its ratings."""
        if values is None:
            if "matrix" not in self._with_ratings:
                self._with_ratings["matrix"] = self.matrix(self.vals)
            return self._with_ratings["matrix"]
        return torch.sparse_csr_tensor(
            self.offsets, self.cols, values, (self.n_rows, self.n_cols), check_invariants=False
        )

    def transposed(self, values: torch.Tensor | None = None) -> torch.Tensor:
        """The block's transpose (columns x rows) as a CSR tensor, holding ``values`` as :meth:`matrix` does."""
        if values is None:
            if "transposed" not in self._with_ratings:
                self._with_ratings["transposed"] = self.transposed(self.vals)
            return self._with_ratings["transposed"]
        if self._transpose is None:
            cols = self.cols.long()
            order = torch.sort(cols, stable=True).indices  # by column, rows ascending within each
            offsets = torch.zeros(self.n_cols + 1, dtype=torch.int64, device=cols.device)
            torch.cumsum(torch.bincount(cols, minlength=self.n_cols), 0, out=offsets[1:])
            rows = self.row_ids().index_select(0, order).to(torch.int32)
            self._transpose = (offsets.to(torch.int32), rows, order)
        offsets, rows, order = self._transpose
        return torch.sparse_csr_tensor(
            offsets, rows, values.index_select(0, order), (self.n_cols, self.n_rows), check_invariants=False
        )


def sparse_linear(block: SparseBlock, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``nn.functional.linear(rows, weight, bias)`` for the block's rows as a dense matrix (0 where unrated),
    from its ratings alone."""
    return _SparseLinear.apply(block, weight, bias)


def linear_at_observed(
    block: SparseBlock, inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """``nn.functional.linear(inputs, weight, bias)`` at the block's observed entries only, in its order:
    row ``r`` of ``inputs`` is the block's row ``r``, output column ``c`` its column ``c``."""
    return _LinearAtObserved.apply(block, inputs, weight, bias)


class _SparseLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, block: SparseBlock, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.block = block
        return torch.addmm(bias, block.matrix(), weight.t())

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor | None, torch.Tensor | None]:
        block: SparseBlock = ctx.block
        grad_weight = (block.transposed() @ grad).t() if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(0) if ctx.needs_input_grad[2] else None
        return None, grad_weight, grad_bias


class _LinearAtObserved(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, block: SparseBlock, inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        ctx.block = block
        ctx.save_for_backward(inputs, weight)
        products = torch.sparse.sampled_addmm(block.matrix(), inputs, weight.t(), beta=0.0)
        return products.values() + bias.index_select(0, block.cols)

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        block: SparseBlock = ctx.block
        inputs, weight = ctx.saved_tensors
        grad_inputs = block.matrix(grad) @ weight if ctx.needs_input_grad[1] else None
        by_column = block.transposed(grad) if ctx.needs_input_grad[2] or ctx.needs_input_grad[3] else None
        grad_weight = by_column @ inputs if by_column is not None and ctx.needs_input_grad[2] else None
        # Each column's sum, as a sparse product with ones: 2x faster than an index_add_ of the gradient.
        grad_bias = (
            by_column @ torch.ones(block.n_rows, dtype=grad.dtype, device=grad.device)
            if by_column is not None and ctx.needs_input_grad[3]
            else None
        )
        return None, grad_inputs, grad_weight, grad_bias
