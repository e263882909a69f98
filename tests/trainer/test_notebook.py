"""trainer/notebook.py: the notebook preset's two quirks, and nothing of them for any other run."""

from __future__ import annotations

import duckdb
import pytest
import torch

from trainer.config import resolve
from trainer.notebook import Unread, first_rating, gradient_reset, prediction_reading, unread
from trainer.optim import build_optimizer
from trainer.sparse import Csr


def test_the_notebook_adds_up_its_gradients_and_other_runs_clear_them() -> None:
    for model, expected in (("notebook", 2.0), ("autoencoder", 1.0)):
        config = resolve({"model": model})
        weight = torch.nn.Parameter(torch.ones(1))
        reset = gradient_reset(build_optimizer([weight], config), config)
        for _ in range(2):
            reset()
            weight.sum().backward()
        assert weight.grad is not None and weight.grad.item() == expected, model


def test_the_unread_rating_is_named_by_user_and_movie_in_either_orientation() -> None:
    rows = Csr(torch.tensor([0, 2, 3]), torch.tensor([4, 7, 4]), torch.tensor([1.0, 2.0, 3.0]), 10)
    users = torch.tensor([5, 6])  # user rows: the block holds users 5 and 6
    assert Unread((5, 7)).remove(users, rows).cols.tolist() == [4, 4]
    movies = torch.tensor([7, 9])  # movie rows: the block holds movies 7 and 9, the columns are users
    assert Unread((4, 7)).remove(movies, rows, by="movie").cols.tolist() == [7, 4]
    assert Unread().remove(users, rows) is rows


@pytest.mark.parametrize("model", ["notebook", "autoencoder"])
def test_only_the_notebook_leaves_lines_unread(small_warehouse, model) -> None:
    con = duckdb.connect(str(small_warehouse), read_only=True)
    config = resolve({"model": model, "split": "random"})
    fit_parts = ("train", "validation")
    reading = prediction_reading(con, config, fit_parts)
    if model == "notebook":
        assert unread(con, config, fit_parts).at == first_rating(con, "random", fit_parts) is not None
        assert reading.test.at == first_rating(con, "random", ("test",)) is not None
        assert not reading.folds_in  # its lists rank from what it trained on
    else:
        assert unread(con, config, fit_parts) == Unread() == reading.fit == reading.test
        assert reading.folds_in
