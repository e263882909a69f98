"""The original notebook's training loop, as plain as it was, to time beside the trainer in one run.

The trainer's `notebook` preset reproduces the notebook's arithmetic inside the trainer's machinery
(its batches, optimiser and metrics). This script is the other reference: the loop as the notebook
wrote it (../shared/docs/anchors.md), with nothing of this project's code: u1.base and u1.test read
into users x movies tensors (the first line of each file lost, as pandas' header row ate it), one
user per step, torch.optim.RMSprop(lr=0.01, weight_decay=0.5), gradients never zeroed, MSELoss over
every movie with the unrated outputs zeroed. It prints one JSON line: the loop's wall time and the
notebook's test metric (the mean over test users of each user's RMSE) and global RMSE.

    python bench/original_loop.py ../shared/data/ml-100k [--epochs 200]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def read_ratings(path: Path) -> np.ndarray:
    """(user, movie, rating) rows of a tab-separated u*.base / u*.test file, without its first line."""
    return np.loadtxt(path, dtype=np.int64, usecols=(0, 1, 2), skiprows=1)


def to_matrix(ratings: np.ndarray, n_users: int, n_movies: int) -> torch.Tensor:
    matrix = torch.zeros(n_users, n_movies)
    matrix[ratings[:, 0] - 1, ratings[:, 1] - 1] = torch.from_numpy(ratings[:, 2]).float()
    return matrix


class StackedAutoEncoder(nn.Module):
    def __init__(self, n_movies: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(n_movies, 20), nn.Linear(20, 10)
        self.fc3, self.fc4 = nn.Linear(10, 20), nn.Linear(20, n_movies)
        self.activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.fc1(x))
        x = self.activation(self.fc2(x))
        x = self.activation(self.fc3(x))
        return self.fc4(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="The ml-100k folder (u1.base, u1.test).")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train, test = read_ratings(args.data / "u1.base"), read_ratings(args.data / "u1.test")
    n_users = int(max(train[:, 0].max(), test[:, 0].max()))
    n_movies = int(max(train[:, 1].max(), test[:, 1].max()))
    training_set, test_set = to_matrix(train, n_users, n_movies), to_matrix(test, n_users, n_movies)

    torch.manual_seed(args.seed)
    model = StackedAutoEncoder(n_movies)
    criterion = nn.MSELoss()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=0.01, weight_decay=0.5)

    started = time.perf_counter()
    for _ in range(args.epochs):
        train_loss, steps = 0.0, 0
        for user in range(n_users):
            inputs = training_set[user].unsqueeze(0)
            target = inputs.clone()
            if torch.sum(target > 0) > 0:
                output = model(inputs)
                output[target == 0] = 0
                loss = criterion(output, target)
                mean_corrector = n_movies / float(torch.sum(target > 0) + 1e-10)
                loss.backward()  # never zeroed: the notebook's gradients add up over the whole run
                train_loss += np.sqrt(loss.data * mean_corrector)
                steps += 1
                optimizer.step()
    train_seconds = time.perf_counter() - started

    with torch.no_grad():
        user_rmse, squared, count = [], 0.0, 0
        for user in range(n_users):
            rated = test_set[user] > 0
            if rated.any():
                error = model(training_set[user].unsqueeze(0))[0][rated] - test_set[user][rated]
                user_rmse.append(float(error.square().mean().sqrt()))
                squared, count = squared + float(error.square().sum()), count + int(rated.sum())
    print(
        json.dumps(
            {
                "train_s": train_seconds,
                "epochs": args.epochs,
                "last_train_loss": float(train_loss / steps),
                "user_rmse": float(np.mean(user_rmse)),
                "rmse": (squared / count) ** 0.5,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
