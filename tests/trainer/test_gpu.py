"""The CUDA path: runs only where torch sees a GPU (bench/gpu_check.sh runs it on one)."""

from __future__ import annotations

import pytest
import torch

from trainer.config import resolve
from trainer.train import run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

# Small versions of each preset, a few epochs each: the models differ in the path they take on a GPU (dense
# products for the autoencoders, the observed ratings for mf and biases, a 3x3 convolution for glocal-k).
MODELS = {
    "notebook": {"epochs": 2},
    "i-autorec": {"hidden": (16,), "epochs": 5},
    "deep-ae": {"hidden": (16, 16), "epochs": 5},
    "kernel-ae": {"hidden": (8, 8), "epochs": 3, "lbfgs_iterations": 3},
    "mf": {"hidden": (4,), "epochs": 10},
    "biases": {"epochs": 10},
}


def settings(warehouse, tmp_path, device: str, **overrides) -> dict:
    return {
        "warehouse": str(warehouse),
        "runs_dir": str(tmp_path / device),
        "publish_anyway": True,
        "top_n": 0,
        "device": device,
        **overrides,
    }


def assert_close(gpu, cpu) -> None:
    assert gpu.metrics["n"] == cpu.metrics["n"]
    # Same seed and data; float arithmetic differs between devices, so close rather than equal.
    assert gpu.metrics["rmse"] == pytest.approx(cpu.metrics["rmse"], abs=0.05)


@pytest.mark.parametrize("cache_budget_mb", [2048, 1e-9], ids=["cached on the GPU", "streamed to the GPU"])
def test_cuda_run_matches_the_cpu(warehouse, tmp_path, cache_budget_mb) -> None:
    common = {"epochs": 10, "batch_size": 16, "cache_budget_mb": cache_budget_mb}
    cpu = run(resolve(settings(warehouse, tmp_path, "cpu", **common)))
    gpu = run(resolve(settings(warehouse, tmp_path, "cuda", **common)))
    assert gpu.device == torch.cuda.get_device_name()  # what runs.device records
    assert_close(gpu, cpu)


@pytest.mark.parametrize("model", list(MODELS))
def test_each_model_trains_on_cuda_as_on_the_cpu(warehouse, tmp_path, model) -> None:
    overrides = {"model": model, **MODELS[model]}
    cpu = run(resolve(settings(warehouse, tmp_path, "cpu", **overrides)))
    gpu = run(resolve(settings(warehouse, tmp_path, "cuda", **overrides)))
    assert gpu.device == torch.cuda.get_device_name()  # what runs.device records
    assert_close(gpu, cpu)


def test_glocal_k_fine_tunes_a_cuda_run_on_cuda(warehouse, tmp_path) -> None:
    # The parent's checkpoint is read onto the GPU, and the 3x3 convolution runs there.
    small = {"hidden": (8, 8), "epochs": 3, "lbfgs_iterations": 3}
    results = {}
    for device in ("cpu", "cuda"):
        parent = run(resolve(settings(warehouse, tmp_path, device, model="kernel-ae", **small)))
        results[device] = run(
            resolve(settings(warehouse, tmp_path, device, model="glocal-k", init_from=parent.run_id, **small))
        )
    assert results["cuda"].device == torch.cuda.get_device_name()
    assert_close(results["cuda"], results["cpu"])
