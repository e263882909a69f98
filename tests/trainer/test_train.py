"""End to end on a small generated warehouse: ETL -> run -> predictions and views, resume, streaming."""

from __future__ import annotations

import duckdb
import pytest
import torch

from trainer import checkpoint
from trainer.config import resolve
from trainer.train import run
from warehouse import results


def config(warehouse, tmp_path, **overrides):
    return resolve(
        {
            "warehouse": str(warehouse),
            "runs_dir": str(tmp_path / "runs"),
            "epochs": 12,
            "learning_rate": 0.05,
            **overrides,
        }
    )


def test_run_writes_runs_metrics_and_predictions_within_the_scale(warehouse, tmp_path) -> None:
    summary = run(config(warehouse, tmp_path, top_n=5))
    con = duckdb.connect(str(warehouse), read_only=True)
    n_test = con.execute("SELECT n_test FROM splits WHERE split = 'random'").fetchall()[0][0]
    run_id, test_rmse, stored_n = con.execute("SELECT run_id, test_rmse, n_test FROM runs").fetchall()[0]
    assert run_id == summary.run_id and stored_n == n_test and test_rmse == pytest.approx(summary.metrics["rmse"])
    assert con.execute("SELECT count(*) FROM epoch_metrics").fetchall()[0][0] == 12
    kinds = dict(con.execute("SELECT kind, count(*) FROM predictions GROUP BY kind").fetchall())
    assert kinds["test"] == n_test
    n_validation = "SELECT count(*) FROM split_ratings WHERE split = 'random' AND part = 'validation'"
    assert kinds["validation"] == con.execute(n_validation).fetchall()[0][0] > 0
    n_users = con.execute("SELECT n_users FROM dataset").fetchall()[0][0]
    assert 0 < kinds["top_n"] <= 5 * n_users
    low, high = con.execute("SELECT min(predicted_rating), max(predicted_rating) FROM predictions").fetchall()[0]
    assert low >= 1.0 and high <= 5.0
    # predictions carry MovieLens ids, and top-N never recommends a movie the user rated
    assert (
        con.execute(
            "SELECT count(*) FROM predictions p ANTI JOIN ratings r USING (user_id, movie_id) WHERE kind = 'test'"
        ).fetchall()[0][0]
        == 0
    )
    assert (
        con.execute(
            "SELECT count(*) FROM predictions p SEMI JOIN ratings r USING (user_id, movie_id) WHERE kind = 'top_n'"
        ).fetchall()[0][0]
        == 0
    )
    # test metrics in the runs table match the stored predictions
    recomputed = con.execute(
        "SELECT sqrt(avg((predicted_rating - actual_rating) ^ 2)) FROM predictions WHERE kind = 'test'"
    ).fetchall()[0][0]
    assert recomputed == pytest.approx(test_rmse, rel=1e-5)


def test_views_answer_for_analysts(warehouse, tmp_path) -> None:
    first = run(config(warehouse, tmp_path, epochs=2, publish_anyway=True))  # too short to pass the audit
    second = run(config(warehouse, tmp_path, epochs=2, seed=3, publish_anyway=True))
    better = second if second.validation_rmse <= first.validation_rmse else first  # champion/challenger
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("SELECT run_id FROM latest_run").fetchall()[0][0] == better.run_id
    con.close()
    results.promote(second.run_id, warehouse, ("recommendations", "predictions"))  # by hand, whatever it ranks
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("SELECT run_id FROM latest_run").fetchall()[0][0] == second.run_id
    assert con.execute("SELECT count(*) FROM run_metrics").fetchall()[0][0] == 2  # earlier runs stay
    row = con.execute(
        "SELECT user_id, rank, title, year, genres FROM recommendations ORDER BY user_id, rank LIMIT 1"
    ).fetchall()[0]
    assert row[1] == 1 and row[2].startswith("Movie ") and isinstance(row[4], list)
    assert con.execute("SELECT count(*) FROM latest_predictions WHERE title IS NULL").fetchall()[0][0] == 0


ITEM_BASED = dict(model="i-autorec", hidden=(16,), learning_rate=0.01)  # movie rows, small and quick


@pytest.mark.parametrize("model", [{}, ITEM_BASED])
def test_streaming_every_epoch_matches_the_cached_matrix_in_quality(model, warehouse, tmp_path) -> None:
    cached = run(config(warehouse, tmp_path, batch_size=16, **model))
    streamed = run(config(warehouse, tmp_path, batch_size=16, cache_budget_mb=1e-9, **model))
    # Different user orders (DuckDB hash vs torch permutation), same model and data: close results.
    assert streamed.metrics["rmse"] == pytest.approx(cached.metrics["rmse"], abs=0.1)
    assert streamed.metrics["n"] == cached.metrics["n"]


# Full-batch L-BFGS: one step an epoch, its line search's history in the optimiser's state.
FULL_BATCH_LBFGS = dict(
    model="kernel-ae",
    hidden=(8, 8),
    optimizer="lbfgs",
    learning_rate=1.0,
    batch_size=10_000,
    lbfgs_iterations=3,
    l2=1.0,
    kernel_l2=0.01,
)


def test_full_batch_lbfgs_takes_its_iterations_once_an_epoch_through_the_loop(warehouse, tmp_path) -> None:
    summary = run(config(warehouse, tmp_path, epochs=4, eval_every=1, checkpoint_seconds=0, **FULL_BATCH_LBFGS))
    saved = checkpoint.load(summary.run_dir, torch.device("cpu"))["optimizer"]
    assert saved["state"]["step"] == 4  # one batch of every movie: one step an epoch
    (lbfgs_state,) = saved["lbfgs"]["state"].values()
    assert lbfgs_state["n_iter"] == 4 * 3  # no tolerance ends a step early
    train = [h["train_rmse"] for h in summary.history]
    assert train[-1] < train[0]
    assert summary.validation_rmse is not None and summary.metrics["rmse"] < 1.5


# The second stalls from epoch 2 on: its learning rate drops after epochs 2, 3 and 4 (selection state too).
# The third draws dropout masks: the random generator's state must come back with the checkpoint.
# The fourth keeps L-BFGS's history (directions, steps, the last gradient) in the checkpoint.
@pytest.mark.parametrize(
    "model", [{}, {**ITEM_BASED, "patience": 1, "lr_drops": 3}, {"dropout": 0.5}, FULL_BATCH_LBFGS]
)
def test_resumed_run_ends_with_the_same_weights(model, warehouse, tmp_path) -> None:
    settings = {"epochs": 6, "checkpoint_seconds": 0, "batch_size": 16, **model}
    whole = run(config(warehouse, tmp_path / "a", **settings))

    class Interrupted(Exception):
        pass

    def interrupt_after_epoch_4(metrics):
        if metrics["epoch"] == 4:  # checkpointed after each epoch, but not yet after 4: it is lost and redone
            raise Interrupted

    with pytest.raises(Interrupted):
        run(config(warehouse, tmp_path / "b", **settings), on_epoch=interrupt_after_epoch_4)
    (run_dir,) = (tmp_path / "b" / "runs").iterdir()
    resumed = run(config(warehouse, tmp_path / "ignored"), resume_dir=run_dir)
    assert resumed.run_id == run_dir.name
    first = checkpoint.load(whole.run_dir, torch.device("cpu"))["model"]
    second = checkpoint.load(run_dir, torch.device("cpu"))["model"]
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert resumed.metrics["rmse"] == whole.metrics["rmse"]
    assert (resumed.best_epoch, resumed.validation_rmse) == (whole.best_epoch, whole.validation_rmse)


def test_notebook_preset_runs_one_user_per_step(warehouse, tmp_path) -> None:
    summary = run(config(warehouse, tmp_path, model="notebook", epochs=2, split="random"))
    assert summary.metrics["n"] > 0
    saved = checkpoint.load(summary.run_dir, torch.device("cpu"))
    assert saved["config"]["batch_size"] == 1 and saved["config"]["accumulate_gradients"]


def test_full_matrix_on_request(warehouse, tmp_path) -> None:
    run(config(warehouse, tmp_path, epochs=1, full_matrix=True))
    con = duckdb.connect(str(warehouse), read_only=True)
    n_users, n_movies = con.execute("SELECT n_users, n_movies FROM dataset").fetchall()[0]
    assert con.execute("SELECT count(*) FROM predictions WHERE kind = 'matrix'").fetchall()[0][0] == n_users * n_movies
    # every pair's prediction, rated cells included, is the model's score: finite, in scale, the same as the
    # test prediction of that pair (where the cold-start fallback did not replace it)
    low, high = con.execute(
        "SELECT min(predicted_rating), max(predicted_rating) FROM predictions WHERE kind = 'matrix'"
    ).fetchall()[0]
    assert low >= 1.0 and high <= 5.0
    differ = con.execute("""
        SELECT count(*) FROM predictions AS t JOIN predictions AS m USING (run_id, user_id, movie_id)
        WHERE t.kind = 'test' AND m.kind = 'matrix' AND NOT t.cold_start AND t.predicted_rating <> m.predicted_rating
    """).fetchall()[0][0]
    assert differ == 0


def test_a_checkpoint_that_is_not_plain_data_is_refused(tmp_path) -> None:
    """weights_only=True: a pickle that would run code on load is rejected, and does not run."""
    import pickle

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / checkpoint.FILE_NAME).write_bytes(pickle.dumps({"model": Exploit()}))
    from trainer.errors import TrainerError

    with pytest.raises(TrainerError, match="not a checkpoint"):
        checkpoint.load(tmp_path, torch.device("cpu"))
    assert not marker.exists()


def test_resuming_on_other_data_is_refused(warehouse, tmp_path, make_movielens_1m) -> None:
    from etl.build import EtlOptions, build_warehouse
    from trainer.errors import TrainerError

    summary = run(config(warehouse, tmp_path, epochs=2))
    (summary.run_dir / "run.json").unlink()  # as if stopped before it staged its results (else: nothing to resume)
    other = make_movielens_1m(tmp_path / "other", n_users=30, seed=11)
    build_warehouse(other, warehouse, EtlOptions())  # the ETL rebuilds the same warehouse file
    with pytest.raises(TrainerError, match="other data"):
        run(config(warehouse, tmp_path), resume_dir=summary.run_dir)
