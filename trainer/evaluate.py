"""Scoring predictions: global RMSE and MAE, and the original notebook's mean per-user RMSE."""

from __future__ import annotations

import torch


def rating_metrics(users: torch.Tensor, predicted: torch.Tensor, actual: torch.Tensor) -> dict[str, float]:
    """Metrics over held-out ratings given as aligned 1-D tensors (user index, prediction, truth).

    rmse and mae are over all ratings ("global RMSE", what the literature reports). user_rmse is what
    the notebook printed as its test loss: the unweighted mean over users of each user's RMSE.
    """
    if actual.numel() == 0:
        return {"rmse": float("nan"), "mae": float("nan"), "user_rmse": float("nan"), "n": 0}
    error = predicted.double() - actual.double()
    _, per_user = torch.unique(users, return_inverse=True)
    n_users = int(per_user.max()) + 1
    squared = torch.zeros(n_users, dtype=torch.float64, device=error.device).index_add_(0, per_user, error.square())
    counts = torch.bincount(per_user, minlength=n_users).double()
    return {
        "rmse": error.square().mean().sqrt().item(),
        "mae": error.abs().mean().item(),
        "user_rmse": (squared / counts).sqrt().mean().item(),
        "n": int(actual.numel()),
    }
