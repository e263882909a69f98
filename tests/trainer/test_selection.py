"""Model selection reads the validation slice only: the test part cannot change what is trained or chosen."""

from __future__ import annotations

import importlib.util

import duckdb
import pytest
import torch

from trainer import checkpoint
from trainer.config import resolve
from trainer.train import run


def config(warehouse, tmp_path, **overrides):
    return resolve({"warehouse": str(warehouse), "runs_dir": str(tmp_path / "runs"), "top_n": 0, **overrides})


def runs_on_clean_and_corrupt(small_warehouse, tmp_path, corrupt_test_ratings, model, overrides):
    """The same run on a copy of the warehouse and on a copy whose test ratings are flipped: (warehouse, summary)
    of each."""
    clean, corrupt = tmp_path / "clean.duckdb", tmp_path / "corrupt.duckdb"
    clean.write_bytes(small_warehouse.read_bytes())
    corrupt.write_bytes(small_warehouse.read_bytes())
    corrupt_test_ratings(corrupt)
    return [(path, run(config(path, tmp_path, model=model, **overrides))) for path in (clean, corrupt)]


def selected(saved: dict) -> dict:
    """The weights a run scored with: the best epoch's, or the model's own (bayes-fm keeps only its chosen mean)."""
    return saved["best"]["weights"] if saved["best"]["weights"] is not None else saved["model"]


# Every model's leak test runs in make test; make test-fast keeps one model for each way an epoch or a setting
# is chosen on validation (early stopping on RMSE, full-batch L-BFGS, Gibbs samples, a closed-form λ, epochs on
# nDCG) and marks the others slow: each is two full runs, trained and published.
slow = pytest.mark.slow


@pytest.mark.parametrize(
    "model, overrides",
    [
        ("i-autorec", {"hidden": (32,), "epochs": 15, "learning_rate": 0.01, "patience": 4, "batch_size": 16}),
        pytest.param(
            "i-autorec",
            {"hidden": (32,), "epochs": 8, "learning_rate": 0.01, "batch_size": 16, "input_dropout": 0.2},
            marks=slow,
        ),
        pytest.param("autoencoder", {"epochs": 15, "learning_rate": 0.05, "eval_every": 1, "patience": 4}, marks=slow),
        pytest.param("mf", {"hidden": (4,), "epochs": 15, "patience": 4}, marks=slow),
        # dropout and re-feeding too
        pytest.param("deep-ae", {"hidden": (16, 8, 16), "epochs": 6, "batch_size": 16}, marks=slow),
        pytest.param(
            "kernel-ae",
            {"hidden": (16, 16), "epochs": 6, "optimizer": "adam", "batch_size": 16, "learning_rate": 0.01},
            marks=slow,
        ),
        (
            "kernel-ae",
            {
                "hidden": (16, 16),
                "epochs": 4,
                "optimizer": "lbfgs",
                "learning_rate": 1.0,
                "batch_size": 10_000,
                "lbfgs_iterations": 3,
                "eval_every": 1,
            },
        ),
        pytest.param(  # sampled, not trained: the same proof (myFM is absent from the GPU machines' bundle)
            "bayes-fm",
            {"hidden": (4,), "epochs": 12},
            marks=pytest.mark.skipif(importlib.util.find_spec("myfm") is None, reason="myfm is not installed"),
        ),
    ],
)
def test_corrupted_test_ratings_change_nothing_before_the_test_is_scored(
    model, overrides, small_warehouse, tmp_path, corrupt_test_ratings
) -> None:
    (clean, a), (corrupt, b) = runs_on_clean_and_corrupt(
        small_warehouse, tmp_path, corrupt_test_ratings, model, overrides
    )

    def curve(summary):
        return [(h["epoch"], h["train_rmse"], h["validation_rmse"]) for h in summary.history]

    assert curve(a) == curve(b)  # the same learning curve, epoch for epoch
    assert (a.best_epoch, a.validation_rmse) == (b.best_epoch, b.validation_rmse)  # the same epoch selected
    saved_a, saved_b = (checkpoint.load(s.run_dir, torch.device("cpu")) for s in (a, b))
    for name, weights in selected(saved_a).items():  # the same selected weights
        assert torch.equal(weights, selected(saved_b)[name])
    assert a.metrics["rmse"] != b.metrics["rmse"]  # while the test scores do see the corruption
    # The validation predictions each run keeps (what a blend is fitted on) are the same too.
    held_out = "SELECT user_id, movie_id, predicted_rating, actual_rating FROM predictions WHERE kind = 'validation'"
    with duckdb.connect(str(clean), read_only=True) as one, duckdb.connect(str(corrupt), read_only=True) as other:
        validation = one.execute(held_out + " ORDER BY ALL").fetchall()
        assert validation and validation == other.execute(held_out + " ORDER BY ALL").fetchall()


def test_early_stopping_scores_the_epoch_best_on_validation(warehouse, tmp_path) -> None:
    # A learning rate too high for the data: validation RMSE soon stops improving.
    summary = run(
        config(
            warehouse,
            tmp_path,
            model="i-autorec",
            hidden=(32,),
            epochs=200,
            learning_rate=0.05,
            patience=3,
            lr_drops=0,
            batch_size=16,
        )
    )
    scored = [(h["validation_rmse"], h["epoch"]) for h in summary.history]
    best_rmse, best_epoch = min(scored)
    assert (summary.best_epoch, summary.validation_rmse) == (best_epoch, best_rmse)
    assert len(summary.history) == best_epoch + 3 < 200  # stopped `patience` epochs after the best
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("SELECT best_epoch, epochs_run, validation_rmse FROM runs").fetchall()[0] == (
        best_epoch,
        len(summary.history),
        pytest.approx(best_rmse),
    )


def test_a_stall_drops_the_learning_rate_before_it_stops_the_run() -> None:
    from trainer.train import Best

    settings = resolve({"patience": 2, "lr_drops": 1})
    model, best = torch.nn.Linear(1, 1), Best()
    drops = [best.update(epoch, rmse, model, settings) for epoch, rmse in enumerate([0.9, 0.8, 0.85, 0.81], 1)]
    assert drops == [False, False, False, True] and not best.stopped  # 2 epochs without a better score: drop
    assert best.update(5, 0.82, model, settings) is False and not best.stopped  # patience counts from the drop
    assert best.update(6, 0.82, model, settings) is False and best.stopped  # no drops left: stop
    assert (best.epoch, best.rmse) == (2, 0.8)


@pytest.mark.parametrize(
    "model, overrides",
    [
        pytest.param("popular", {}, marks=slow),
        ("ease", {"l2": 20.0, "ease_session_gap": 300}),  # with sessions: their rows too must hold no test rating
        ("mult-vae", {"hidden": (16, 8), "epochs": 4, "batch_size": 16, "patience": 0}),
        pytest.param("mult-dae", {"hidden": (16, 8), "epochs": 4, "batch_size": 16, "patience": 0}, marks=slow),
    ],
)
def test_corrupted_test_ratings_change_nothing_a_ranking_model_chooses(
    model, overrides, small_warehouse, tmp_path, corrupt_test_ratings
) -> None:
    """The leak test for the models that only rank: their fit, the λ chosen on validation and the validation lists
    are the same whatever the test part holds; only the test figures see it."""
    (clean, a), (corrupt, b) = runs_on_clean_and_corrupt(
        small_warehouse, tmp_path, corrupt_test_ratings, model, overrides
    )
    assert [h.get("ndcg@10") for h in a.history] == [h.get("ndcg@10") for h in b.history]
    assert a.best_epoch == b.best_epoch and a.ranking["validation"] == b.ranking["validation"]
    saved_a, saved_b = (checkpoint.load(s.run_dir, torch.device("cpu")) for s in (a, b))
    for name, weights in saved_a["model"].items():
        assert torch.equal(weights, saved_b["model"][name])
    lists = "SELECT user_id, movie_id, rank FROM predictions WHERE kind = 'validation_top_n' ORDER BY ALL"
    with duckdb.connect(str(clean), read_only=True) as one, duckdb.connect(str(corrupt), read_only=True) as other:
        assert one.execute(lists).fetchall() == other.execute(lists).fetchall()
    assert a.ranking["test"] != b.ranking["test"]  # while the test figures do see the corruption
