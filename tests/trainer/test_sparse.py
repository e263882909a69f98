import pytest
import torch

from trainer.config import resolve
from trainer.models.base import build_model
from trainer.sparse import (
    SparseBlock,
    banded_product,
    linear_at_observed,
    product,
    sigmoid_stack_at_observed,
    sparse_linear,
)


def block_of(dense: torch.Tensor) -> SparseBlock:
    csr = dense.to_sparse_csr()
    return SparseBlock(csr.crow_indices(), csr.col_indices(), csr.values(), dense.shape[1])


def ratings(n_rows: int, n_cols: int, seed: int = 0) -> torch.Tensor:
    """Sparse ratings 1-5, with an empty row and an empty column."""
    generator = torch.Generator().manual_seed(seed)
    dense = torch.randint(1, 6, (n_rows, n_cols), generator=generator).float()
    dense[torch.rand(n_rows, n_cols, generator=generator) > 0.3] = 0.0
    dense[1], dense[:, 2] = 0.0, 0.0
    return dense


def test_a_block_and_its_transpose_hold_the_dense_matrix() -> None:
    dense = ratings(7, 9)
    block = block_of(dense)
    torch.testing.assert_close(block.matrix().to_dense(), dense)
    torch.testing.assert_close(block.transposed().to_dense(), dense.T)
    values = torch.arange(block.vals.numel(), dtype=torch.float32)  # other values, the same cells
    expected = torch.zeros_like(dense)
    expected[dense != 0] = values
    torch.testing.assert_close(block.transposed(values).to_dense(), expected.T)
    assert block.row_ids().tolist() == (dense != 0).nonzero()[:, 0].tolist()


@pytest.mark.parametrize("band", [1, 4, 11, 64])
def test_a_banded_product_equals_the_dense_one_for_any_band(band: int) -> None:
    dense = ratings(7, 9)
    other = torch.randn(9, 11, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(banded_product(block_of(dense).matrix(), other, band=band), dense @ other)


def test_a_product_written_once_is_torchs_to_the_bit() -> None:
    matrix = block_of(ratings(7, 9)).transposed()
    other = torch.randn(7, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(product(matrix, other), matrix @ other)
    assert torch.equal(product(matrix, other[:, 0]), matrix @ other[:, 0])


def test_sparse_products_and_their_gradients_equal_the_dense_ones() -> None:
    torch.manual_seed(0)
    dense = ratings(6, 11)
    block = block_of(dense)
    w_in, b_in = torch.randn(4, 11, requires_grad=True), torch.randn(4, requires_grad=True)
    w_out, b_out = torch.randn(11, 4, requires_grad=True), torch.randn(11, requires_grad=True)
    observed = dense != 0

    def loss(sparse: bool) -> torch.Tensor:
        if sparse:
            hidden = torch.sigmoid(sparse_linear(block, w_in, b_in))
            predicted = linear_at_observed(block, hidden, w_out, b_out)
        else:
            hidden = torch.sigmoid(torch.nn.functional.linear(dense, w_in, b_in))
            predicted = torch.nn.functional.linear(hidden, w_out, b_out)[observed]
        return (predicted - dense[observed]).square().mean()

    grads = [torch.autograd.grad(loss(sparse), (w_in, b_in, w_out, b_out)) for sparse in (False, True)]
    torch.testing.assert_close(loss(True), loss(False))
    for dense_grad, sparse_grad in zip(*grads):
        torch.testing.assert_close(sparse_grad, dense_grad)


@pytest.mark.parametrize("model", ["autoencoder", "i-autorec", "deep-ae", "mf", "biases", "kernel-ae"])
def test_training_from_the_sparse_block_takes_the_dense_outputs_gradient(model: str) -> None:
    torch.manual_seed(0)
    net = build_model(resolve({"model": model, "hidden": (6, 4) if model == "kernel-ae" else None}), 5, 8, mean=3.5)
    net.eval()  # no dropout
    n_rows, n_cols = (8, 5) if net.rows == "movie" else (5, 8)
    dense, index = ratings(n_rows, n_cols, seed=1), torch.arange(n_rows)
    observed = dense != 0

    def gradient(inputs: torch.Tensor | SparseBlock) -> list[torch.Tensor]:
        out = net(inputs, index)
        predicted = out if isinstance(inputs, SparseBlock) else out[observed]
        return list(torch.autograd.grad((predicted - dense[observed]).square().mean(), list(net.parameters())))

    for dense_grad, sparse_grad in zip(gradient(dense), gradient(block_of(dense))):
        torch.testing.assert_close(sparse_grad, dense_grad)


@pytest.mark.parametrize("widths", [(4,), (5, 3, 5)])
def test_a_sigmoid_stack_as_one_node_computes_what_its_layers_do_to_the_bit(widths: tuple[int, ...]) -> None:
    """The default model trains through the one node: its outputs and every gradient are the layer-by-layer
    composition's exactly, so its runs' metrics are unchanged; read from one block, scored at another's cells."""
    torch.manual_seed(0)
    inputs, at = block_of(ratings(6, 11)), block_of(ratings(6, 11, seed=1))
    sizes = (11, *widths, 11)
    weights = [torch.randn(out, width, requires_grad=True) for width, out in zip(sizes, sizes[1:])]
    biases = [torch.randn(out, requires_grad=True) for out in sizes[1:]]
    targets = torch.randn(at.vals.numel())

    def outputs(one_node: bool) -> torch.Tensor:
        if one_node:
            return sigmoid_stack_at_observed(inputs, at, weights, biases)
        hidden = torch.sigmoid(sparse_linear(inputs, weights[0], biases[0]))
        for weight, bias in zip(weights[1:-1], biases[1:-1]):
            hidden = torch.sigmoid(torch.nn.functional.linear(hidden, weight, bias))
        return linear_at_observed(at, hidden, weights[-1], biases[-1])

    results = []
    for one_node in (False, True):
        predicted = outputs(one_node)
        loss = torch.nn.functional.mse_loss(predicted, targets, reduction="sum") / targets.numel()
        results.append([predicted, *torch.autograd.grad(loss, [*weights, *biases])])
    for composed, fused in zip(*results):
        assert torch.equal(fused, composed)
