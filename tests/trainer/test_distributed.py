"""torchrun with 2 CPU processes (gloo): each trains on its shard of the users, rank 0 alone writes, and the
result matches a single-process run within a stated tolerance."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from trainer import distributed
from trainer.config import resolve
from trainer.train import run

# Full batches: one step per epoch over every user in one process, over each rank's half in two, each rank's
# loss weighted by its share of the ratings. The two runs then take the same steps, up to the order of
# floating-point sums. (With mini-batches the batches themselves differ, and so do the runs, by about what
# another seed gives: 0.05 test RMSE on this small data.)
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
SETTINGS = {"epochs": 20, "batch_size": 256, "learning_rate": 0.01, "device": "cpu", "seed": 0}
TOLERANCE = 1e-3


@pytest.mark.slow
def test_two_process_torchrun_matches_one_process(warehouse, tmp_path, query):
    single = run(resolve({"warehouse": str(warehouse), "runs_dir": str(tmp_path / "single"), **SETTINGS}))
    flags = [item for name, value in SETTINGS.items() for item in (f"--{name.replace('_', '-')}", str(value))]
    command = [
        *TORCHRUN,
        "-m",
        "trainer",
        "run",
        "--warehouse",
        str(warehouse),
        "--runs-dir",
        str(tmp_path / "ddp"),
        *flags,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    # Rank 0 alone logs and writes: one line per epoch, one run folder, one new row in runs.
    assert done.stderr.count("epoch 20/20") == 1
    assert len(list((tmp_path / "ddp").iterdir())) == 1
    curves = query(warehouse, "SELECT run_id, list(train_rmse ORDER BY epoch) FROM epoch_metrics GROUP BY run_id")
    assert len(curves) == 2
    (ddp_curve,) = [curve for run_id, curve in curves if run_id != single.run_id]
    assert ddp_curve == pytest.approx([h["train_rmse"] for h in single.history], abs=TOLERANCE)
    rows = query(warehouse, "SELECT run_id, test_rmse, n_test FROM runs ORDER BY started_at")
    assert len(rows) == 2
    ((_, ddp_rmse, ddp_n),) = [row for row in rows if row[0] != single.run_id]
    assert ddp_n == single.metrics["n"]  # every test rating scored once
    print(f"test RMSE: one process {single.metrics['rmse']:.4f}, two {ddp_rmse:.4f}")
    assert abs(ddp_rmse - single.metrics["rmse"]) < TOLERANCE


@pytest.mark.slow
def test_deep_ae_re_feeding_keeps_the_ranks_identical(warehouse, tmp_path):
    """Re-feeding is a second forward and backward pass a step: it must go through DDP too, or its gradients
    are never averaged and the ranks' copies of the model drift apart."""
    script = tmp_path / "ranks.py"
    script.write_text(
        "import sys, torch\n"
        "from trainer import distributed\n"
        "from trainer.config import resolve\n"
        "from trainer.train import run\n"
        "seen = {}\n"
        "original = distributed.setup\n"
        "def setup(device):\n"
        "    context, device = original(device)\n"
        "    seen['rank'] = context.rank\n"
        "    return context, device\n"
        "distributed.setup = setup\n"
        "from trainer import selection\n"  # each rank saves its weights at every validation, i.e. every epoch
        "update = selection.Best.update\n"
        "def record(self, epoch, rmse, model, config):\n"
        "    weights = {k: v.clone() for k, v in model.state_dict().items()}\n"
        "    torch.save(weights, f'{sys.argv[2]}/rank{seen[\"rank\"]}-{epoch}.pt')\n"
        "    return update(self, epoch, rmse, model, config)\n"
        "selection.Best.update = record\n"
        "run(resolve({'warehouse': sys.argv[1], 'runs_dir': sys.argv[2] + '/runs', 'model': 'deep-ae',"
        " 'hidden': (8, 4, 8), 'epochs': 3, 'batch_size': 16, 'device': 'cpu', 'publish_anyway': True}))\n"
    )
    command = [*TORCHRUN, str(script), str(warehouse), str(tmp_path)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import torch

    for epoch in (1, 2, 3):
        first, second = (torch.load(tmp_path / f"rank{rank}-{epoch}.pt") for rank in (0, 1))
        for name in first:
            assert torch.equal(first[name], second[name]), (epoch, name)


def test_without_torchrun_everything_is_single_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    import torch

    context, device = distributed.setup(torch.device("cpu"))
    assert (context.active, context.is_main, context.shard) == (False, True, None)
    assert distributed.all_sum(context, device, 2.0, 3.0) == [2.0, 3.0]
    assert distributed.broadcast(context, "run-id") == "run-id"
    assert list(distributed.joined(torch.nn.Linear(1, 1), context, iter([1, 2]))) == [1, 2]
