"""Model selection on the validation slice: its score, early stopping, learning-rate drops and the best epoch's
weights."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from trainer import distributed
from trainer.config import TrainConfig
from trainer.data import TrainingData
from trainer.models.base import Model

LR_DROP = 0.1  # the learning rate's factor each time validation RMSE stalls (config.lr_drops)
MIN_IMPROVEMENT = 1e-4  # in validation RMSE, to count as progress for patience


@torch.no_grad()
def validation_rmse(data: TrainingData, model: Model) -> float:
    """Global RMSE on the validation slice, predictions clipped as they will be at the end."""
    model.eval()
    squared, count = 0.0, 0.0
    for inputs, index, targets in data.validation_blocks(model.whole_matrix):
        predicted = model.predict_at(inputs, index, targets.block())
        if data.config.clip:
            predicted = predicted.clamp(data.info.rating_min, data.info.rating_max)
        squared += (predicted - targets.vals).square().sum().item()
        count += targets.vals.numel()
    squared, count = distributed.all_sum(data.ctx, data.device, squared, count)
    return math.sqrt(squared / max(count, 1))


@dataclass
class Best:
    """Early stopping and the best epoch so far, as judged on the validation slice."""

    epoch: int | None = None
    rmse: float = math.inf
    weights: dict[str, torch.Tensor] | None = None
    stopped: bool = False
    # Patience counts from the last real improvement (or learning-rate drop): at a low rate, gains of
    # 1e-5 an epoch would otherwise keep a run going for nothing.
    waiting_since: int = 0
    waiting_rmse: float = math.inf
    drops: int = 0

    def update(self, epoch: int, rmse: float, model: Model | None, config: TrainConfig) -> bool:
        """Record a validation score (and, unless ``model`` is None, the best epoch's weights); True when the
        learning rate should drop now."""
        if rmse < self.rmse:
            self.epoch, self.rmse = epoch, rmse
            if config.select_best and model is not None:
                self.weights = {name: t.detach().clone() for name, t in model.state_dict().items()}
        if rmse < self.waiting_rmse - MIN_IMPROVEMENT:
            self.waiting_since, self.waiting_rmse = epoch, rmse
        elif config.patience and epoch - self.waiting_since >= config.patience:
            if self.drops < config.lr_drops:
                self.drops, self.waiting_since, self.waiting_rmse = self.drops + 1, epoch, self.rmse
                return True
            self.stopped = True
        return False

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "rmse": self.rmse,
            "weights": self.weights,
            "stopped": self.stopped,
            "waiting_since": self.waiting_since,
            "waiting_rmse": self.waiting_rmse,
            "drops": self.drops,
        }


def drop_epochs(history: list[dict[str, Any]], config: TrainConfig) -> tuple[int, ...]:
    """The epochs after which a run with this learning curve and ``config`` dropped its learning rate: its
    validation scores replayed through the same rule (trainer refit repeats the drops without a validation slice)."""
    best, drops = Best(), []
    for metrics in history:
        if metrics["validation_rmse"] is not None and best.update(
            metrics["epoch"], metrics["validation_rmse"], None, config
        ):
            drops.append(metrics["epoch"])
    return tuple(drops)
