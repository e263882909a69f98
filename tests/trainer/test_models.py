import subprocess
import sys

import pytest
import torch

from trainer.config import resolve
from trainer.errors import TrainerError
from trainer.models.autoencoders import AutoEncoder
from trainer.models.base import build_model
from trainer.models.factorisation import MatrixFactorisation
from trainer.models.kernel import Conv3x3
from trainer.models.registry import REGISTRY
from trainer.sparse import SparseBlock

N_USERS, N_MOVIES = 6, 7


@pytest.mark.parametrize("model", sorted(REGISTRY))  # every model: a new preset is held to the contract at once
def test_predict_at_equals_the_full_output_at_those_cells(model: str) -> None:
    torch.manual_seed(0)
    net = build_model(
        resolve({"model": model, "hidden": (4, 2, 4) if "autoencoder" in model else None}), N_USERS, N_MOVIES, mean=3.5
    )
    net.eval()  # no dropout
    with torch.no_grad():  # make the baselines' biases non-zero, so the test sees them
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    n_cols = N_USERS if net.rows == "movie" else N_MOVIES
    n_rows = N_MOVIES if net.rows == "movie" else N_USERS
    ratings = torch.rand(4, n_cols)
    index = torch.tensor([5, 0, 2, 3]) % n_rows
    cells = torch.zeros(4, n_cols)
    cells[[0, 0, 2, 3], [1, 5, 0, 2]] = 1.0  # row 1 has no cell
    at = block_of(cells)
    rows, cols = at.row_ids(), at.cols.long()
    torch.testing.assert_close(net.predict_at(ratings, index, at), net(ratings, index)[rows, cols])
    # ... and from the inputs' own sparse form, which training uses
    torch.testing.assert_close(net.predict_at(block_of(ratings), index, at), net(ratings, index)[rows, cols])


def block_of(dense: torch.Tensor) -> SparseBlock:
    csr = dense.to_sparse_csr()
    return SparseBlock(csr.crow_indices(), csr.col_indices(), csr.values(), dense.shape[1])


def test_decoding_some_columns_of_the_code_equals_those_columns_of_the_output() -> None:
    torch.manual_seed(0)
    net = build_model(resolve({"model": "i-autorec", "hidden": (8,)}), N_USERS, N_MOVIES, mean=3.5)
    net.eval()  # as when scoring: the preset's input dropout is off
    ratings, cols = torch.rand(5, N_USERS), torch.tensor([3, 0, 5])
    with torch.no_grad():
        torch.testing.assert_close(net.decode_columns(net.encode(ratings), cols), net(ratings)[:, cols])


def test_i_autorec_reads_movie_rows_with_one_wide_sigmoid_layer() -> None:
    net = build_model(resolve({"model": "i-autorec"}), N_USERS, N_MOVIES, mean=3.5)
    assert isinstance(net, AutoEncoder) and net.rows == "movie"
    assert [tuple(w.shape) for w in net.regularised()] == [(500, N_USERS), (N_USERS, 500)]  # no biases


def test_the_baselines_are_one_model_with_parts_switched_off() -> None:
    mean = build_model(resolve({"model": "global-mean"}), N_USERS, N_MOVIES, mean=3.5)
    assert isinstance(mean, MatrixFactorisation) and [n for n, _ in mean.named_parameters()] == ["mean"]
    assert torch.equal(mean(torch.zeros(2, N_MOVIES), torch.tensor([0, 1])), torch.full((2, N_MOVIES), 3.5))
    biases = build_model(resolve({"model": "biases"}), N_USERS, N_MOVIES, mean=3.5)
    assert {n for n, _ in biases.named_parameters()} == {"mean", "user_bias", "movie_bias"}
    mf = build_model(resolve({"model": "mf", "hidden": (3,)}), N_USERS, N_MOVIES, mean=3.5)
    assert mf.user_factors.shape == (N_USERS, 3) and len(mf.regularised()) == 4  # all but the mean


def test_an_unknown_model_is_refused_by_name() -> None:
    with pytest.raises(TrainerError, match="unknown model 'deep'"):
        resolve({"model": "deep"})


def test_deep_ae_drops_out_its_code_only_while_training() -> None:
    net = build_model(resolve({"model": "deep-ae", "hidden": (8, 4, 8), "dropout": 0.5}), N_USERS, N_MOVIES, 3.5)
    kinds = [type(layer).__name__ for layer in net.net]
    assert kinds == ["Linear", "SELU", "Linear", "SELU", "Dropout", "Linear", "SELU", "Linear"]  # after the 4-wide code
    ratings = torch.rand(3, N_MOVIES)
    assert not torch.equal(net(ratings), net(ratings))
    net.eval()
    assert torch.equal(net(ratings), net(ratings))


@pytest.mark.parametrize("model", ["i-autorec", "kernel-ae"])
def test_input_dropout_hides_ratings_from_the_encoder_only_while_training(model: str) -> None:
    config = resolve(
        {"model": model, "hidden": (6, 6) if model == "kernel-ae" else (6,), "optimizer": "adam", "input_dropout": 0.0}
    )
    torch.manual_seed(0)
    plain = build_model(config, N_USERS, N_MOVIES, 3.5)
    noisy = build_model(resolve({**config.to_dict(), "input_dropout": 0.5}), N_USERS, N_MOVIES, 3.5)
    noisy.load_state_dict(plain.state_dict())
    ratings = torch.rand(N_MOVIES, N_USERS) * (torch.rand(N_MOVIES, N_USERS) < 0.5) * 5
    index = torch.arange(N_MOVIES)
    block = block_of(ratings)
    with torch.no_grad():
        torch.manual_seed(1)
        dropped = noisy(block, index)
        assert dropped.shape == block.vals.shape  # outputs at every observed rating, dropped or not
        torch.manual_seed(1)
        kept = block.vals * (torch.rand_like(block.vals) < 0.5)  # the same draw: what the encoder read
        expected = plain.predict_at(block.with_vals(kept), index, block)
        torch.testing.assert_close(dropped, expected)
        assert not torch.allclose(dropped, plain(block, index))
        noisy.eval()
        torch.testing.assert_close(noisy(block, index), plain(block, index))  # scoring reads every rating


def test_input_dropout_is_refused_with_l_bfgs() -> None:
    with pytest.raises(TrainerError, match="line search cannot work with"):
        resolve({"model": "kernel-ae", "input_dropout": 0.2})
    assert (
        resolve({"model": "kernel-ae", "input_dropout": 0.2, "optimizer": "adam"}).own.model_dump()["input_dropout"]
        == 0.2
    )


def test_dropout_must_leave_something() -> None:
    with pytest.raises(TrainerError, match="dropout must be below 1, not 1.0"):
        resolve({"model": "deep-ae", "dropout": 1.0})


def test_the_kernel_layer_is_the_hat_kernel_times_the_weight() -> None:
    from trainer.models.kernel import KernelLinear

    layer = KernelLinear(3, 2, dim=2)
    with torch.no_grad():
        layer.u.copy_(torch.tensor([[0.0, 0.0], [0.5, 0.0], [2.0, 0.0]]))
        layer.v.copy_(torch.tensor([[0.0, 0.0], [0.0, 0.5]]))
    expected = torch.tensor([[1.0, 0.75, 0.0], [0.75, 0.5, 0.0]])  # max(0, 1 - |u - v|^2); the far unit is cut off
    torch.testing.assert_close(layer.kernel(), expected)
    torch.testing.assert_close(layer.weight, layer.raw_weight * expected)
    x = torch.randn(4, 3)
    torch.testing.assert_close(layer(x), x @ (layer.raw_weight * expected).T + layer.bias)


def test_kernel_ae_penalises_w_at_l2_and_k_at_kernel_l2() -> None:
    net = build_model(resolve({"model": "kernel-ae", "hidden": (4, 3), "l2": 8.0, "kernel_l2": 2.0}), 5, 7, 3.5)
    layers = [m for m in net.net if hasattr(m, "kernel")]
    penalty = 8.0 * sum(t.square().sum() for t in net.regularised())
    expected = 8.0 * sum(m.raw_weight.square().sum() for m in layers) + 2.0 * sum(
        m.kernel().square().sum() for m in layers
    )
    torch.testing.assert_close(penalty, expected)


def test_the_3x3_convolution_and_its_kernel_gradient_are_conv2ds() -> None:
    torch.manual_seed(0)
    image, kernel = torch.rand(7, 11), torch.randn(3, 3, requires_grad=True)
    reference = kernel.detach().clone().requires_grad_()
    out = Conv3x3.apply(image, kernel)
    expected = torch.nn.functional.conv2d(image[None, None], reference[None, None], padding=1)[0, 0]
    torch.testing.assert_close(out, expected)
    weights = torch.randn(7, 11)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(kernel.grad, reference.grad)


TOY_MODEL = '''
import torch

from trainer.models.factorisation import MatrixFactorisation


class Toy(MatrixFactorisation):
    """The user and movie biases under another name: a model added from outside the trainer's own modules."""


def build(config, n_users, n_movies, mean):
    return Toy(n_users, n_movies, mean, factors=0)
'''


def test_a_new_model_is_one_module_and_one_registry_entry(warehouse, tmp_path, monkeypatch) -> None:
    from trainer.models.registry import ModelSpec
    from trainer.train import run

    (tmp_path / "toy_model.py").write_text(TOY_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = ModelSpec("toy", "a toy", "toy_model:build", preset={"optimizer": "adam", "epochs": 3, "eval_every": 1})
    monkeypatch.setitem(REGISTRY, "toy", spec)
    summary = run(resolve({"model": "toy", "warehouse": str(warehouse), "runs_dir": str(tmp_path / "runs")}))
    assert summary.best_epoch is not None and len(summary.history) == 3
    assert 0 < summary.metrics["rmse"] < 2


def test_a_models_own_setting_is_refused_for_a_model_that_would_ignore_it() -> None:
    with pytest.raises(TrainerError, match="--kernel-l2 is read by kernel-ae, glocal-k only, not by mf"):
        resolve({"model": "mf", "kernel_l2": 0.5})
    assert resolve({"model": "glocal-k", "kernel_l2": 0.5}).own.model_dump()["kernel_l2"] == 0.5
    assert resolve({"model": "mf", "kernel_l2": 0.0}).model == "mf"  # the default changes nothing


@pytest.mark.parametrize("vae_input", ["stars", "binary"])
@pytest.mark.parametrize("model", ["mult-vae", "mult-dae"])
def test_the_multinomial_autoencoders_score_a_users_ratings_as_their_dense_row(model, vae_input) -> None:
    """The sparse first layer (training, top-N) equals the dense one (the contract's forward)."""
    from trainer.sparse import Csr

    torch.manual_seed(0)
    net = build_model(resolve({"model": model, "hidden": (8, 4), "vae_input": vae_input}), N_USERS, N_MOVIES, 3.5)
    net.eval()
    dense = (torch.rand(4, N_MOVIES) < 0.5) * torch.randint(1, 6, (4, N_MOVIES)).float()
    csr = dense.to_sparse_csr()
    rows = Csr(csr.crow_indices().long(), csr.col_indices().long(), csr.values(), N_MOVIES)
    torch.testing.assert_close(net.score_rows(rows), net.scores(dense))
    loss = net.loss(rows, beta=0.2)
    assert loss.ndim == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("vae_input", ["stars", "binary"])
def test_mult_dae_counts_each_rated_movie_once_or_by_its_stars(vae_input) -> None:
    """The likelihood: each rated movie's log-probability, weighted by its stars on star input, over the users."""
    from trainer.sparse import Csr

    torch.manual_seed(0)
    config = resolve({"model": "mult-dae", "hidden": (8, 4), "vae_input": vae_input, "input_dropout": 0.0})
    net = build_model(config, N_USERS, N_MOVIES, mean=3.5)
    net.train()
    dense = (torch.rand(3, N_MOVIES) < 0.5) * torch.randint(1, 6, (3, N_MOVIES)).float()
    csr = dense.to_sparse_csr()
    rows = Csr(csr.crow_indices().long(), csr.col_indices().long(), csr.values(), N_MOVIES)
    log_probabilities = torch.log_softmax(net.scores(dense), dim=1)
    weights = dense if vae_input == "stars" else (dense > 0).float()
    torch.testing.assert_close(net.loss(rows, beta=0.0), -(log_probabilities * weights).sum() / 3)


@pytest.mark.slow  # a child process: this one has long imported what the check looks for
def test_every_model_is_measured_without_importing_sympy() -> None:
    """A run measures its model on the meta device before building it (train._fits_in_memory). Normal draws and
    products with a number go there through torch's Python reference kernels, whose first use imports sympy
    (hundreds of modules) in every run of the models that used them."""
    code = (
        "import sys, torch\n"
        "from trainer.config import resolve\n"
        "from trainer.models.base import build_model\n"
        "from trainer.models.registry import REGISTRY\n"
        "for name in REGISTRY:\n"
        "    with torch.device('meta'):\n"
        "        build_model(resolve({'model': name}), 6040, 3706, 3.5)\n"
        "    assert 'sympy' not in sys.modules, name + ' imported sympy'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
