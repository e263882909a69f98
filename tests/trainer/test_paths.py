"""Which training path each model takes on each device, decided without a GPU: mf and biases train at the
observed ratings everywhere; the autoencoders keep dense products on a GPU, where the sparse kernels are
unmeasured; the notebook's loss and re-feeding need the dense output on every device."""

from __future__ import annotations

import pytest
import torch

from trainer.config import resolve
from trainer.data import dense_output
from trainer.models.base import build_model

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.mark.parametrize(
    "model, on_cuda, on_cpu",
    [
        ("mf", False, False),
        ("biases", False, False),
        ("global-mean", False, False),
        ("autoencoder", True, False),
        ("i-autorec", True, False),
        ("kernel-ae", True, False),
        ("notebook", True, True),
        ("deep-ae", True, True),
    ],
)
def test_the_path_each_model_trains_on(model, on_cuda, on_cpu) -> None:
    config = resolve({"model": model, "hidden": (4,) if model in ("mf", "i-autorec") else None})
    network = build_model(config, n_users=5, n_movies=7, mean=3.5)
    assert dense_output(config, CUDA, network.dense_on_gpu) is on_cuda
    assert dense_output(config, CPU, network.dense_on_gpu) is on_cpu
