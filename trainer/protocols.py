"""The published protocols `trainer bench` runs, and the models it compares (trainer/bench.py runs them).

Kept apart from the bench itself, which imports torch, so that the CLI can describe them in its help
without that import (torch takes seconds to import).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Protocol:
    split: str
    description: str
    seeds: tuple[int, ...]  # the split seeds the protocol asks for (a fixed split has one)
    # settings that differ from a model's preset on this data set, chosen on its validation slice
    # (the presets are ml-1m's choices): L2 in sum-of-squares units grows with the number of ratings
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)


PROTOCOLS = {
    "ml-100k": Protocol(
        "u1",
        "u1.base/u1.test",
        (0,),
        {
            # input dropout 0.2: mean validation RMSE 0.8943 -> 0.8878 over 3 model seeds (docs/training.md)
            "i-autorec": {"l2": 100.0, "input_dropout": 0.2},
            # Adam in batches of 256 movies validates better than full-batch L-BFGS on u1 (docs/training.md)
            "kernel-ae": {
                "optimizer": "adam",
                "learning_rate": 1e-3,
                "batch_size": 256,
                "l2": 40.0,
                "kernel_l2": 0.003,
                "epochs": 200,
                "patience": 6,
                "lr_drops": 1,
                "fixed_batches": False,
            },
            # rank 32 validates better than ml-1m's 20 or 10: 0.8745 and 0.8725 (model seeds 0, 1) against 0.8756
            # and 0.8781 / 0.8760 / 0.8768 (seeds 0, 1, 2) (docs/training.md)
            "bayes-fm": {"hidden": (32,)},
            # GLocal-K's ml-100k schedule (5 L-BFGS iterations an epoch, dot_scale 1) on its parent's penalties
            "glocal-k": {"l2": 40.0, "kernel_l2": 0.003, "lbfgs_iterations": 5, "epochs": 60, "dot_scale": 1.0},
        },
    ),
    "ml-1m": Protocol("random", "random 90/10", (1, 2, 3, 4, 5)),
}
BENCH_MODELS = ("global-mean", "biases", "mf", "autoencoder", "i-autorec")
# Models that fine-tune another model's run (--init-from): the bench trains the parent first on each seed (a row
# of its own), and counts its training in the fine-tuned model's train time.
PARENTS = {"glocal-k": "kernel-ae"}
