"""The Bayesian factorisation machine (trainer/models/bayes_fm.py): its samples read as biases plus factors, the mean of
the samples chosen on validation is the model a run keeps, a refit averages as many sweeps, and the options that
do not apply to it are refused."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pytest
import torch

from trainer import checkpoint
from trainer.config import MachineSettings, from_dict, resolve
from trainer.errors import TrainerError
from trainer.models.registry import GIBBS_BURN_IN
from trainer.models.settings import BayesFmSettings
from trainer.refit import RefitOptions, refit_config
from trainer.train import run

pytest.importorskip("myfm")  # absent where bench/gpu_check.sh runs on a bundle (bench/gpu_bundle.sh)
import scipy.sparse as sps  # noqa: E402  (myFM's dependency)

from trainer.models.bayes_fm import blocks, movie_side, myfm, split_sample  # noqa: E402

SMALL = {"model": "bayes-fm", "hidden": (4,), "epochs": 15, "top_n": 0, "publish_anyway": True}


def settings(warehouse, tmp_path, **overrides):
    return resolve({"warehouse": str(warehouse), "runs_dir": str(tmp_path / "runs"), **SMALL, **overrides})


def test_a_sample_reads_as_biases_plus_factors_exactly_as_myfm_predicts() -> None:
    rng = np.random.default_rng(0)
    n_users, n_movies, n = 30, 20, 300
    users, movies = rng.integers(0, n_users, n), rng.integers(0, n_movies, n)
    ratings = rng.integers(1, 6, n).astype(float)
    genres = sps.csr_matrix(rng.integers(0, 2, (n_movies, 4)).astype(float))  # several a movie: they interact
    user_block, movie_block, shapes = blocks(users, movies, n_users, n_movies, [genres])
    assert shapes == [n_users, n_movies, n_movies, n_users, 4]
    relations = [myfm.RelationBlock(users, user_block), myfm.RelationBlock(movies, movie_block)]
    fm = myfm.MyFMRegressor(rank=3, random_seed=1).fit(
        sps.csr_matrix((n, 0)), ratings, X_rel=relations, n_iter=8, n_kept_samples=1, group_shapes=shapes
    )
    sample = fm.predictor_.samples[-1]
    w0, c_user, c_movie, v_user, v_movie = split_sample(sample, user_block, movie_block)
    ours = w0 + c_user[users] + c_movie[movies] + (v_user[users] * v_movie[movies]).sum(1)
    theirs = sample.predict_score(sps.csr_matrix((n, 0)), relations)
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-4, atol=1e-4)
    assert np.std(theirs) > 0.05  # the factors take part: not a constant


def test_movie_side_features_are_year_bins_and_genres() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE movie_index AS SELECT * FROM (VALUES (30, 0), (10, 1), (20, 2), (40, 3)) t(movie_id, movie_idx)"
    )
    con.execute(
        "CREATE TABLE movies AS SELECT * FROM (VALUES (10, 1950, ['Drama']), (20, 1990, ['Comedy', 'Drama']), "
        "(30, NULL, []), (40, 1990, NULL), (50, 2010, ['Western'])) t(movie_id, year, genres)"
    )
    years, genres = movie_side(con, 4)
    bins = years.toarray().argmax(1)  # in movie_idx order: movie 30 (no year), 10, 20, 40
    assert (years.sum(1) == 1).all() and bins[1] < bins[2] == bins[3] < bins[0] == years.shape[1] - 1
    # Comedy, Drama, Western: the genres (and the year bins) are the catalogue's, movie 50 unrated or not
    assert genres.toarray().tolist() == [[0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]]


def test_movie_side_leaves_out_what_the_data_set_lacks() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE movie_index AS SELECT * FROM (VALUES (10, 0), (20, 1)) t(movie_id, movie_idx)")
    con.execute("CREATE TABLE movies AS SELECT 10 AS movie_id, NULL::INTEGER AS year, []::VARCHAR[] AS genres")
    assert movie_side(con, 2) == []


def test_the_run_keeps_the_mean_of_the_samples_it_chose_on_validation(warehouse, tmp_path) -> None:
    summary = run(settings(warehouse, tmp_path, epochs=20))
    scored = [h for h in summary.history if h["validation_rmse"] is not None]
    assert [h["epoch"] for h in scored] == list(range(GIBBS_BURN_IN + 1, 21))  # every sweep after the burn-in
    best = min(scored, key=lambda h: h["validation_rmse"])
    assert (summary.best_epoch, summary.validation_rmse) == (best["epoch"], best["validation_rmse"])
    # The kept model predicts what the running mean scored: its validation predictions give the same RMSE.
    with duckdb.connect(str(warehouse), read_only=True) as con:
        kept = con.execute(
            "SELECT sqrt(avg((least(greatest(predicted_rating, 1), 5) - actual_rating) ** 2)) FROM predictions "
            "WHERE run_id = ? AND kind = 'validation'",
            [summary.run_id],
        ).fetchall()[0][0]
    assert math.isclose(kept, summary.validation_rmse, rel_tol=1e-4)
    # Its factors: one block per sample up to the chosen sweep, zero after it.
    weights = checkpoint.load(summary.run_dir, torch.device("cpu"))["model"]
    used = (weights["user_factors"].abs().sum(0) > 0).nonzero().flatten()
    assert used.tolist() == list(range(4 * (summary.best_epoch - GIBBS_BURN_IN)))


def test_last_epoch_keeps_the_mean_of_every_sample(warehouse, tmp_path) -> None:
    summary = run(settings(warehouse, tmp_path, select_best=False))
    weights = checkpoint.load(summary.run_dir, torch.device("cpu"))["model"]
    used = (weights["user_factors"].abs().sum(0) > 0).nonzero().flatten()
    assert summary.best_epoch == SMALL["epochs"] and used.numel() == 4 * (SMALL["epochs"] - GIBBS_BURN_IN)


def test_a_refit_averages_as_many_sweeps_on_train_and_validation(warehouse, tmp_path) -> None:
    parent = run(settings(warehouse, tmp_path))
    child = run(
        refit_config(
            RefitOptions(
                parent.run_id, warehouse, MachineSettings(runs_dir=str(tmp_path / "runs"), publish_anyway=True)
            )
        )
    )
    assert len(child.history) == parent.best_epoch and child.validation_rmse is None
    assert child.metrics["rmse"] != parent.metrics["rmse"]


@pytest.mark.parametrize(
    "overrides, refused",
    [
        ({"optimizer": "adam"}, "bayes-fm is sampled"),
        ({"model": "mf", "optimizer": "gibbs"}, "gibbs samples bayes-fm alone"),
        ({"epochs": GIBBS_BURN_IN}, f"--epochs must be more than {GIBBS_BURN_IN}"),
        ({"init_from": "20260101-000000-abcd"}, "neither --init-from nor --lr-drops"),
        ({"patience": 5, "lr_drops": 1}, "neither --init-from nor --lr-drops"),
    ],
)
def test_settings_that_do_not_apply_are_refused(overrides, refused) -> None:
    with pytest.raises(TrainerError, match=refused):
        resolve({**SMALL, **overrides})


def test_movie_features_are_bayes_fms_alone_and_off_for_configs_recorded_without_them() -> None:
    assert resolve({"model": "bayes-fm"}).own == BayesFmSettings(movie_features=True)
    assert "movie_features" not in resolve({"model": "mf"}).to_dict()
    recorded = resolve(SMALL).to_dict()
    del recorded["movie_features"]  # as a run saved before the setting existed
    assert from_dict(recorded).own == BayesFmSettings(movie_features=False)


def test_movie_features_can_be_left_out(warehouse, tmp_path) -> None:
    with_them = run(settings(warehouse, tmp_path))
    without = run(settings(warehouse, tmp_path, movie_features=False))
    assert without.validation_rmse != with_them.validation_rmse
    with duckdb.connect(str(warehouse), read_only=True) as con:
        recorded = con.execute(
            "SELECT json_extract(config, '$.movie_features')::BOOLEAN FROM runs WHERE run_id = ?", [without.run_id]
        ).fetchall()
    assert recorded == [(False,)]


def test_it_cannot_resume(warehouse, tmp_path) -> None:
    summary = run(settings(warehouse, tmp_path))
    (summary.run_dir / "run.json").unlink()  # as if stopped before it staged its results (else: nothing to resume)
    with pytest.raises(TrainerError, match="cannot --resume"):
        run(settings(warehouse, tmp_path), resume_dir=summary.run_dir)
