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
    "ml-100k": Protocol("u1", "u1.base/u1.test", (0,), {"i-autorec": {"l2": 100.0}}),
    "ml-1m": Protocol("random", "random 90/10", (1, 2, 3, 4, 5)),
}
BENCH_MODELS = ("global-mean", "biases", "mf", "autoencoder", "i-autorec")
