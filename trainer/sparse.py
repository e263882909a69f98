"""Rows of rating matrices as sparse matrices (Csr: rows as read from the warehouse; SparseBlock: as the models'
sparse products take them), and the two layers an autoencoder can compute from a block sparsely.

A user row of ml-100k holds 5 % of the movies, and the loss only reads the outputs at the observed
ratings. So the input layer needs only the observed inputs, and the output layer only the outputs at
the observed ratings: both are sparse-dense products over the block's ratings instead of dense products
over its rows x movies. On this project's CPU they made the seed model's training step about 2x faster
(docs/benchmarks.md). The weight gradients need the block's transpose; a block that is trained on
every epoch builds it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

# Creating a CSR tensor warns once per process that the layout is in beta; the products used here are
# tested against their dense equivalents (tests/trainer/test_sparse.py). The `trainer` command silences the
# warning for its process (trainer/cli.py entry_point); a library changes no process-wide filter.


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

    def to_dense(self) -> torch.Tensor:
        """The rows as a dense rows x columns matrix, 0 where unrated."""
        dense = self.vals.new_zeros(self.n_rows, self.n_cols)
        return dense.index_put_((self.row_ids(), self.cols.long()), self.vals)

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


# Columns of the dense operand a banded product takes at a time (banded_product).
BAND = 256


def banded_product(matrix: torch.Tensor, dense: torch.Tensor, band: int = BAND) -> torch.Tensor:
    """``matrix @ dense`` for a torch CSR ``matrix``, a band of ``dense``'s columns at a time. Each entry of the
    CSR reads a row of ``dense``; over all its columns that row is too wide to stay in cache for the next rows,
    over a band it stays. On wide products (ease's x·B, its Gram matrix) this is several times faster than
    one product over every column, with the same result (docs/benchmarks.md, tests/trainer/test_sparse.py)."""
    if dense.shape[1] <= band:
        return matrix @ dense
    starts = range(0, dense.shape[1], band)  # one band's copy at a time, not a second copy of ``dense``
    return torch.cat([matrix @ dense[:, start : start + band].contiguous() for start in starts], 1)


def product(matrix: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """``matrix @ dense`` for a torch CSR ``matrix``, to the bit, written once into new memory. Torch's own product
    zero-fills a buffer and copies it into the result before the sparse kernel overwrites it (beta 0): two more
    passes over an output that, for the weight gradients, is as wide as the catalogue (87,585 x 20 at ml-32m). On a
    GPU, where that was not measured, torch's own."""
    if dense.device.type != "cpu":
        return matrix @ dense
    out = dense.new_empty(matrix.shape[0], *dense.shape[1:])
    if dense.dim() == 1:
        return torch.addmv(out, matrix, dense, beta=0, out=out)
    return torch.addmm(out, matrix, dense, beta=0, out=out)


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
        grad_weight = product(block.transposed(), grad).t() if ctx.needs_input_grad[1] else None
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
        grad_weight = product(by_column, inputs) if by_column is not None and ctx.needs_input_grad[2] else None
        # Each column's sum, as a sparse product with ones: faster than an index_add_ of the gradient (measured).
        grad_bias = (
            product(by_column, torch.ones(block.n_rows, dtype=grad.dtype, device=grad.device))
            if by_column is not None and ctx.needs_input_grad[3]
            else None
        )
        return None, grad_inputs, grad_weight, grad_bias


def sigmoid_stack_at_observed(
    inputs: SparseBlock, at: SparseBlock, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]
) -> torch.Tensor:
    """A stack of linear layers with a sigmoid after each but the last, read from ``inputs``' ratings, at
    ``at``'s observed entries: what :func:`sparse_linear`, ``nn.Linear`` and ``nn.Sigmoid`` layers and
    :func:`linear_at_observed` compute, to the bit, as one autograd node. The default model's layers are
    small, and autograd's bookkeeping for each layer's node (and each Function's Python) was a share of its
    step; the node takes the same operations without it."""
    return _SigmoidStackAtObserved.apply(inputs, at, len(weights), *weights, *biases)


class _SigmoidStackAtObserved(torch.autograd.Function):
    """The backward pass takes the same operations, in the same order, as autograd takes through the layers
    one by one (tests/trainer/test_sparse.py compares the gradients exactly)."""

    @staticmethod
    def forward(ctx: Any, inputs: SparseBlock, at: SparseBlock, n_layers: int, *tensors: torch.Tensor) -> torch.Tensor:
        weights, biases = tensors[:n_layers], tensors[n_layers:]
        hidden = [torch.sigmoid(torch.addmm(biases[0], inputs.matrix(), weights[0].t()))]
        for weight, bias in zip(weights[1:-1], biases[1:-1]):
            hidden.append(torch.sigmoid(torch.addmm(bias, hidden[-1], weight.t())))
        ctx.inputs, ctx.at = inputs, at
        ctx.save_for_backward(*weights, *hidden)
        products = torch.sparse.sampled_addmm(at.matrix(), hidden[-1], weights[-1].t(), beta=0.0)
        return products.values() + biases[-1].index_select(0, at.cols)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        inputs: SparseBlock = ctx.inputs
        at: SparseBlock = ctx.at
        n_layers = len(ctx.saved_tensors) // 2 + 1
        weights, hidden = ctx.saved_tensors[:n_layers], ctx.saved_tensors[n_layers:]
        # the layers' gradients from the last layer to the first, as linear_at_observed, nn.Linear and
        # sparse_linear compute them (the output biases' sum is a sparse product with ones, as there)
        by_column = at.transposed(grad)
        grad_weights = [product(by_column, hidden[-1])]
        grad_biases = [product(by_column, torch.ones(at.n_rows, dtype=grad.dtype, device=grad.device))]
        grad_hidden = at.matrix(grad) @ weights[-1]
        for i in range(n_layers - 2, 0, -1):
            grad_linear = torch.ops.aten.sigmoid_backward(grad_hidden, hidden[i])
            grad_weights.append(grad_linear.t().mm(hidden[i - 1]))
            grad_biases.append(grad_linear.sum(0))
            grad_hidden = grad_linear.mm(weights[i])
        grad_linear = torch.ops.aten.sigmoid_backward(grad_hidden, hidden[0])
        grad_weights.append(product(inputs.transposed(), grad_linear).t())
        grad_biases.append(grad_linear.sum(0))
        return None, None, None, *reversed(grad_weights), *reversed(grad_biases)


@dataclass
class Csr:
    """Rows of a sparse matrix: row i holds cols[offsets[i]:offsets[i+1]] with vals alongside."""

    offsets: torch.Tensor  # int64, n_rows + 1
    cols: torch.Tensor  # int64
    vals: torch.Tensor  # float32
    n_cols: int

    @property
    def n_rows(self) -> int:
        return self.offsets.numel() - 1

    @property
    def counts(self) -> torch.Tensor:
        return self.offsets.diff()

    def row_ids(self) -> torch.Tensor:
        """The row of every stored entry (COO rows)."""
        return entry_rows(self.offsets, self.cols.numel())

    def select(self, rows: torch.Tensor) -> Csr:
        """The given rows, in the given order (a gather: works the same on CPU and GPU)."""
        counts = self.counts[rows]
        offsets = torch.zeros(rows.numel() + 1, dtype=torch.int64, device=rows.device)
        torch.cumsum(counts, 0, out=offsets[1:])
        total = int(offsets[-1])
        shift = torch.repeat_interleave(self.offsets[rows] - offsets[:-1], counts, output_size=total)
        positions = torch.arange(total, device=rows.device) + shift
        return Csr(offsets, self.cols.index_select(0, positions), self.vals.index_select(0, positions), self.n_cols)

    def slice(self, start: int, end: int) -> Csr:
        """Rows start..end-1: views into this matrix, no copy."""
        first, last = int(self.offsets[start]), int(self.offsets[end])
        return Csr(self.offsets[start : end + 1] - first, self.cols[first:last], self.vals[first:last], self.n_cols)

    def to_dense(self) -> torch.Tensor:
        dense = torch.zeros(self.n_rows, self.n_cols, device=self.vals.device)
        dense[self.row_ids(), self.cols] = self.vals
        return dense

    def block(self) -> SparseBlock:
        """These rows as the models' sparse products take them (trainer/sparse.py)."""
        return SparseBlock(self.offsets, self.cols, self.vals, self.n_cols)

    def to(self, device: torch.device, non_blocking: bool = False) -> Csr:
        if non_blocking and device.type == "cuda" and self.offsets.device.type == "cpu":
            # Pinned host memory lets an asynchronous copy overlap with compute; a blocking copy gains nothing.
            tensors = [t.pin_memory() for t in (self.offsets, self.cols, self.vals)]
        else:
            tensors = [self.offsets, self.cols, self.vals]
        offsets, cols, vals = (t.to(device, non_blocking=non_blocking) for t in tensors)
        return Csr(offsets, cols, vals, self.n_cols)

    def without(self, users: torch.Tensor, user: int, movie: int) -> Csr:
        """This block of rows (whose user indexes are ``users``) without the entry (user, movie), if held."""
        rows = self.row_ids()
        keep = (users[rows] != user) | (self.cols != movie)
        if bool(keep.all()):
            return self
        counts = torch.bincount(rows[keep], minlength=self.n_rows)
        offsets = torch.zeros_like(self.offsets)
        torch.cumsum(counts, 0, out=offsets[1:])
        return Csr(offsets, self.cols[keep], self.vals[keep], self.n_cols)

    @staticmethod
    def from_arrow(indexes: pa.Array, ratings: pa.Array, n_cols: int) -> Csr:
        """CSR from two aligned Arrow list arrays; their offsets and values are the CSR arrays."""
        offsets = indexes.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        cols = indexes.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
        vals = ratings.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        offsets = offsets - offsets[0]  # a sliced batch's offsets need not start at 0
        return Csr(torch.from_numpy(offsets), torch.from_numpy(cols), torch.from_numpy(vals), n_cols)

    @staticmethod
    def concat(parts: list[Csr]) -> Csr:
        """Rows of several CSR blocks stacked (each block's offsets shifted past the ones before)."""
        offsets, shift = [parts[0].offsets[:1]], 0
        for part in parts:
            offsets.append(part.offsets[1:] + shift)
            shift += int(part.offsets[-1])
        return Csr(
            torch.cat(offsets), torch.cat([p.cols for p in parts]), torch.cat([p.vals for p in parts]), parts[0].n_cols
        )

    @staticmethod
    def merge(a: Csr, b: Csr) -> Csr:
        """Row-wise union of two matrices with the same rows (e.g. train and validation)."""
        rows = torch.cat([a.row_ids(), b.row_ids()])
        order = torch.argsort(rows, stable=True)
        counts = a.counts + b.counts
        offsets = torch.zeros_like(a.offsets)
        torch.cumsum(counts, 0, out=offsets[1:])
        return Csr(offsets, torch.cat([a.cols, b.cols])[order], torch.cat([a.vals, b.vals])[order], a.n_cols)


def merge_parts(matrices: dict[str, Csr], parts: tuple[str, ...]) -> Csr:
    """The row-wise union of the named parts (e.g. train and validation as one training matrix)."""
    merged = matrices[parts[0]]
    for part in parts[1:]:
        merged = Csr.merge(merged, matrices[part])
    return merged
