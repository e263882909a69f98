"""Starting a run from another run's weights (--init-from, trainer/trained.py start_from): GLocal-K's
fine-tuning of a kernel autoencoder, the checks that refuse a parent that does not fit, and the proof
that a fine-tuned run chooses nothing from the test part either."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
import torch

from trainer import checkpoint
from trainer.config import resolve
from trainer.coordinates import Coordinates
from trainer.errors import TrainerError
from trainer.models.base import build_model
from trainer.train import run
from trainer.trained import start_from

PARENT = {"model": "kernel-ae", "hidden": (8, 8), "epochs": 3, "lbfgs_iterations": 3, "seed": 2, "top_n": 0}
CHILD = {"model": "glocal-k", "hidden": (8, 8), "epochs": 3, "lbfgs_iterations": 3, "seed": 2, "top_n": 0}


def parent_weights(summary) -> dict[str, torch.Tensor]:
    saved = checkpoint.load(summary.run_dir, torch.device("cpu"))
    return saved["best"]["weights"]


def started(config, parent_id: str, warehouse):
    """The fine-tuned model ``config`` builds, started from run ``parent_id``'s weights, and the coordinates."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        coords = Coordinates.read(con)
        model = build_model(config, coords.n_users, coords.n_movies, 3.5)
        start_from(model, con, parent_id, coords, torch.device("cpu"))
    return model, coords


def test_a_glocal_k_run_starts_from_its_parents_weights_and_records_it(trained_warehouse, tmp_path, settings) -> None:
    warehouse, parent = trained_warehouse(PARENT)
    config = settings(warehouse, tmp_path, **CHILD, init_from=parent.run_id)
    model, _ = started(config, parent.run_id, warehouse)
    weights = model.state_dict()
    for name, tensor in parent_weights(parent).items():  # every weight of the parent, as it selected them
        assert torch.equal(weights[name], tensor)
    assert set(weights) - set(parent_weights(parent)) == {"conv_kernel"}  # GLocal-K's own, fresh

    child = run(config)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        found = con.execute("SELECT model, parent_run_id FROM runs WHERE run_id = ?", [child.run_id]).fetchall()
    assert found == [("glocal-k", parent.run_id)]


def test_glocal_k_starts_as_its_parent_predicts(trained_warehouse, tmp_path, settings) -> None:
    # The global kernel starts as the identity (the centre tap 1): the fine-tuning starts from the parent's
    # predictions, and validation can only choose a change that helps.
    warehouse, parent = trained_warehouse(PARENT)
    child, coords = started(settings(warehouse, tmp_path, **CHILD), parent.run_id, warehouse)
    before = build_model(settings(warehouse, tmp_path, **PARENT), coords.n_users, coords.n_movies, 3.5)
    before.load_state_dict(parent_weights(parent))
    ratings = torch.rand(coords.n_movies, coords.n_users) * (torch.rand(coords.n_movies, coords.n_users) < 0.2) * 5
    index = torch.arange(coords.n_movies)
    with torch.no_grad():
        torch.testing.assert_close(child(ratings, index), before(ratings, index))


def test_fine_tuning_that_never_helps_keeps_the_weights_it_started_from(trained_warehouse, tmp_path, settings) -> None:
    # A rate far too high: every epoch validates worse than the parent, so epoch 0 (its weights) is selected.
    warehouse, parent = trained_warehouse(PARENT)
    too_high = {"optimizer": "adam", "learning_rate": 10.0, "batch_size": 10_000, "patience": 2, "lr_drops": 0}
    child = run(settings(warehouse, tmp_path, **CHILD, **too_high, init_from=parent.run_id, eval_every=1))
    assert child.best_epoch == 0 and len(child.history) == 2
    assert all(h["validation_rmse"] > child.validation_rmse for h in child.history)
    assert child.validation_rmse == pytest.approx(parent.validation_rmse, abs=1e-6)
    assert child.metrics["rmse"] == pytest.approx(parent.metrics["rmse"], abs=1e-6)  # the parent's predictions


def test_the_global_convolution_is_a_3x3_cross_correlation_over_movies_by_users() -> None:
    torch.manual_seed(0)
    model = build_model(resolve({"model": "glocal-k", "hidden": (4, 4)}), 9, 6, 3.5)
    with torch.no_grad():
        model.conv_kernel.normal_()
    ratings = torch.rand(6, 9) * 5
    index = torch.tensor([3, 0, 5, 1, 4, 2])  # rows in any order: each is placed by its movie_idx
    with torch.no_grad():
        kernel = model.global_kernel(ratings, index)
        image = torch.zeros(6, 9).index_copy(0, index, ratings)
        expected = torch.relu(torch.nn.functional.conv2d(image[None, None], kernel[None, None], padding=1))[0, 0]
        torch.testing.assert_close(model.convolved(ratings, index), expected[index])


def test_glocal_k_refuses_batches_that_leave_movies_out() -> None:
    with pytest.raises(TrainerError, match="--batch-size must be at least 6"):
        build_model(resolve({"model": "glocal-k", "hidden": (4, 4), "batch_size": 5}), 9, 6, 3.5)


@pytest.mark.parametrize(
    "parent, why",
    [
        ({**PARENT, "hidden": (8, 4)}, "do not fit this model"),
        ({"model": "i-autorec", "hidden": (8,), "epochs": 2, "top_n": 0}, "has weights this model lacks"),
        ({"model": "mf", "hidden": (4,), "epochs": 2, "top_n": 0}, "has weights this model lacks"),
    ],
)
def test_a_parent_whose_weights_do_not_fit_is_refused(parent, why, warehouse, tmp_path, settings) -> None:
    first = run(settings(warehouse, tmp_path, **parent))
    runs_before = _runs(warehouse)
    with pytest.raises(TrainerError, match=why):
        run(settings(warehouse, tmp_path, **CHILD, init_from=first.run_id))
    assert _runs(warehouse) == runs_before  # nothing trained, nothing published


def test_an_unknown_parent_or_one_trained_on_other_movies_is_refused(
    warehouse, trained_warehouse, tmp_path, settings
) -> None:
    with pytest.raises(TrainerError, match="no run 'nope'"):
        run(settings(warehouse, tmp_path, **CHILD, init_from="nope"))  # a warehouse that holds no run yet
    warehouse, parent = trained_warehouse(PARENT)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        coords = Coordinates.read(con)
        other = Coordinates(coords.user_ids, np.concatenate([coords.movie_ids, [coords.movie_ids.max() + 1]]))
        model = build_model(resolve(CHILD), other.n_users, other.n_movies, 3.5)
        with pytest.raises(TrainerError, match="1 new movie"):
            start_from(model, con, parent.run_id, other, torch.device("cpu"))


def test_a_fine_tuned_run_chooses_nothing_from_the_test_part(
    small_warehouse, tmp_path, corrupt_test_ratings, settings
) -> None:
    clean, corrupt = tmp_path / "clean.duckdb", tmp_path / "corrupt.duckdb"
    clean.write_bytes(small_warehouse.read_bytes())
    corrupt.write_bytes(small_warehouse.read_bytes())
    corrupt_test_ratings(corrupt)
    summaries = []
    for warehouse in (clean, corrupt):
        parent = run(settings(warehouse, tmp_path, **PARENT))
        summaries.append(run(settings(warehouse, tmp_path, **CHILD, init_from=parent.run_id, eval_every=1)))
    a, b = summaries
    assert [(h["train_rmse"], h["validation_rmse"]) for h in a.history] == [
        (h["train_rmse"], h["validation_rmse"]) for h in b.history
    ]
    assert (a.best_epoch, a.validation_rmse) == (b.best_epoch, b.validation_rmse)
    for name, weights in parent_weights(a).items():
        assert torch.equal(weights, parent_weights(b)[name])
    assert a.metrics["rmse"] != b.metrics["rmse"]


def _runs(warehouse) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("SELECT run_id FROM runs ORDER BY run_id").fetchall()
