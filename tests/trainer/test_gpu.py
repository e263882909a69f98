"""The CUDA path: runs only where torch sees a GPU (bench/gpu_check.sh runs it on one)."""

from __future__ import annotations

import pytest
import torch

from trainer.config import resolve
from trainer.train import run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("cache_budget_mb", [2048, 1e-9], ids=["cached on the GPU", "streamed to the GPU"])
def test_cuda_run_matches_the_cpu(warehouse, tmp_path, cache_budget_mb) -> None:
    common = {
        "warehouse": str(warehouse),
        "runs_dir": str(tmp_path),
        "epochs": 10,
        "batch_size": 16,
        "cache_budget_mb": cache_budget_mb,
    }
    cpu = run(resolve({**common, "device": "cpu"}))
    gpu = run(resolve({**common, "device": "cuda"}))
    assert gpu.metrics["n"] == cpu.metrics["n"]
    # Same seed and data; float arithmetic differs between devices, so close rather than equal.
    assert gpu.metrics["rmse"] == pytest.approx(cpu.metrics["rmse"], abs=0.05)
