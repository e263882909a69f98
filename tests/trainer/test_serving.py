"""The analysts' two roles (warehouse/serving.py): a run takes one only when it does at least as well on that role's
validation metric as the run serving it, on the same data and split; `trainer promote` switches by hand; the views
serve only runs of the data in the warehouse now."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from trainer.cli import NOT_SERVED, app


def trainer(*arguments: str):
    return CliRunner().invoke(app, [*arguments])


def train(warehouse: Path, tmp_path: Path, *options: str):
    return trainer(
        "run", "--warehouse", str(warehouse), "--runs-dir", str(tmp_path / "runs"), "--threads", "1", *options
    )


def served(warehouse: Path) -> dict[str, str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return dict(con.execute("SELECT role, run_id FROM served_runs").fetchall())


def newest_run(warehouse: Path) -> str:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("SELECT run_id FROM runs ORDER BY finished_at DESC LIMIT 1").fetchall()[0][0]


@pytest.fixture(scope="module")
def trained(small_warehouse, tmp_path_factory) -> tuple[Path, str, str]:
    """A warehouse served by a ranking model (recommendations) and a rating model trained in full (predictions)."""
    root = tmp_path_factory.mktemp("serving")
    path = root / "warehouse.duckdb"
    shutil.copyfile(small_warehouse, path)
    ranked = train(path, root, "--model", "ease")
    assert ranked.exit_code == 0, ranked.output
    ease_run = newest_run(path)
    rated = train(path, root)
    assert rated.exit_code == 0, rated.output
    assert "now serves predictions" in rated.output
    return path, ease_run, newest_run(path)


@pytest.fixture
def warehouse(trained, tmp_path) -> tuple[Path, str, str]:
    path, ease_run, long_run = trained
    shutil.copyfile(path, tmp_path / "warehouse.duckdb")
    return tmp_path / "warehouse.duckdb", ease_run, long_run


def validation_ndcg(path: Path, run_id: str) -> float:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(
            "SELECT value FROM ranking_metrics WHERE run_id = ? AND part = 'validation' AND metric = 'ndcg@10'",
            [run_id],
        ).fetchall()[0][0]


def test_each_role_goes_to_the_run_that_plays_it(warehouse) -> None:
    path, ease_run, long_run = warehouse
    roles = served(path)
    assert roles["predictions"] == long_run  # ease predicts no ratings
    # the autoencoder came second: it took recommendations only if its lists ranked at least as well on validation
    better = long_run if validation_ndcg(path, long_run) >= validation_ndcg(path, ease_run) else ease_run
    assert roles["recommendations"] == better
    with duckdb.connect(str(path), read_only=True) as con:
        runs = {row[0] for row in con.execute("SELECT DISTINCT run_id FROM recommendations").fetchall()}
        (latest,) = con.execute("SELECT run_id FROM latest_run").fetchall()[0]
    assert runs == {better} and latest == long_run


def test_a_smoke_run_after_a_long_one_serves_nothing_and_says_so(warehouse, tmp_path) -> None:
    path, ease_run, long_run = warehouse
    # two epochs do not beat the training mean on this tiny data: published anyway, it meets the champion
    result = train(path, tmp_path, "--epochs", "2", "--publish-anyway")
    smoke = newest_run(path)
    assert result.exit_code == NOT_SERVED, result.output
    assert "It does not serve predictions: its validation RMSE" in result.output
    assert f"worse than run {long_run}'s" in result.output
    assert f"trainer promote {smoke} --as" in result.output
    before = served(path)
    assert before["predictions"] == long_run

    promoted = trainer("promote", smoke, "--as", "predictions", "--warehouse", str(path))
    assert promoted.exit_code == 0, promoted.output
    assert served(path) == before | {"predictions": smoke}
    back = trainer("promote", long_run, "--warehouse", str(path))  # back to the earlier run, in every role it plays
    assert back.exit_code == 0 and served(path)["predictions"] == long_run


def test_promote_refuses_what_a_run_cannot_serve(warehouse) -> None:
    path, ease_run, long_run = warehouse
    before = served(path)
    result = trainer("promote", ease_run, "--as", "predictions", "--warehouse", str(path))
    assert result.exit_code == 1 and "predicts no ratings" in result.output
    result = trainer("promote", "20990101-000000-0000", "--warehouse", str(path))
    assert result.exit_code == 1 and "no run 20990101-000000-0000" in result.output
    assert served(path) == before
    promoted = trainer("promote", ease_run, "--warehouse", str(path))  # every role it can play: recommendations
    assert promoted.exit_code == 0 and served(path) == before | {"recommendations": ease_run}


def test_a_model_that_ranks_worse_than_popular_does_not_serve_recommendations(warehouse, tmp_path) -> None:
    path, _, _ = warehouse
    before = served(path)
    result = train(path, tmp_path, "--model", "popular")  # ties popular: it may serve
    assert result.exit_code in (0, NOT_SERVED)
    with duckdb.connect(str(path), read_only=True) as con:
        worse = con.execute(
            "SELECT run_id FROM ranking_metrics WHERE part = 'validation' GROUP BY run_id "
            "HAVING max(value) FILTER (metric = 'ndcg@10') < max(value) FILTER (metric = 'popular ndcg@10')"
        ).fetchall()
    assert {before["recommendations"], served(path)["recommendations"]}.isdisjoint({row[0] for row in worse})


def test_no_publish_stages_the_run_and_changes_nothing(warehouse, tmp_path) -> None:
    path, ease_run, long_run = warehouse
    result = train(path, tmp_path, "--epochs", "2", "--no-publish")
    assert result.exit_code == 0 and "not published (--no-publish)" in result.output
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchall()[0][0] == 2
    (staged,) = (tmp_path / "runs").iterdir()
    assert (staged / "run.json").exists()
    assert served(path)["predictions"] == long_run


def test_a_rebuild_from_other_data_serves_none_of_the_old_runs(warehouse, movielens, etl_build) -> None:
    path, _, _ = warehouse
    other = movielens("ml-latest")
    etl_build(other, path)
    assert served(path) == {}
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM recommendations").fetchall()[0][0] == 0
        assert con.execute("SELECT count(*) FROM latest_predictions").fetchall()[0][0] == 0
        assert con.execute("SELECT count(*) FROM runs").fetchall()[0][0] == 2  # kept, not served


def test_a_scoring_of_a_run_that_serves_no_lists_is_recorded_and_not_shown(warehouse, tmp_path) -> None:
    path, ease_run, long_run = warehouse
    holder = served(path)["recommendations"]
    other = long_run if holder == ease_run else ease_run  # both score users from their ratings alone
    result = trainer("score", other, "--warehouse", str(path), "--runs-dir", str(tmp_path / "runs"), "--threads", "1")
    assert result.exit_code == NOT_SERVED, result.output
    assert f"Not shown: run {holder} serves them, not run {other}" in result.output
    assert f"trainer promote {other} --as recommendations shows these lists" in result.output
    with duckdb.connect(str(path), read_only=True) as con:
        scoring = con.execute("SELECT run_id FROM runs WHERE kind = 'score'").fetchall()[0][0]
        assert con.execute("SELECT count(*) FROM recommendations WHERE run_id = ?", [scoring]).fetchall() == [(0,)]


def test_a_ranking_runs_lists_show_the_ratings_of_the_run_serving_predictions(warehouse, tmp_path) -> None:
    import numpy as np
    import torch

    from trainer.trained import rate_pairs

    path, ease_run, long_run = warehouse
    assert train(path, tmp_path, "--model", "ease").exit_code in (0, NOT_SERVED)
    ranker = newest_run(path)
    promoted = trainer("promote", ranker, "--as", "recommendations", "--warehouse", str(path))
    assert promoted.exit_code == 0, promoted.output
    with duckdb.connect(str(path), read_only=True) as con:
        source = dict(con.execute("SELECT run_id, ratings_from_run FROM runs").fetchall())
        # the first ease run was made before any run served predictions: its lists show none
        assert source[ease_run] is None and source[ranker] == long_run

        def top_n(run_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            rows = con.execute(
                "SELECT user_id, movie_id, predicted_rating FROM predictions WHERE run_id = ? AND "
                "kind = 'top_n' ORDER BY user_id, movie_id",
                [run_id],
            ).fetchnumpy()
            return rows["user_id"], rows["movie_id"], rows["predicted_rating"]

        users, movies, shown = top_n(ranker)
        assert len(users) and not np.isnan(shown.astype(float)).any()
        rated = rate_pairs(con, long_run, users, movies, torch.device("cpu"))
        np.testing.assert_allclose(shown, rated, rtol=0, atol=1e-6)
        # the rating run's own lists, rated again the same way: the ids, columns and scale line up
        own_users, own_movies, own_shown = top_n(long_run)
        again = rate_pairs(con, long_run, own_users, own_movies, torch.device("cpu"))
        np.testing.assert_allclose(again, own_shown, rtol=0, atol=1e-5)
        shown_now = con.execute("SELECT DISTINCT run_id, predicted_rating IS NULL FROM recommendations").fetchall()
        assert shown_now == [(ranker, False)]
    # a scoring of the ranking run (its lists for users whose ratings changed) shows them too
    result = trainer("score", ranker, "--users", "1", "--warehouse", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    with duckdb.connect(str(path), read_only=True) as con:
        scoring = con.execute("SELECT run_id, ratings_from_run FROM runs WHERE kind = 'score'").fetchall()
        assert [source for _, source in scoring] == [long_run]
        shown = con.execute("SELECT predicted_rating FROM recommendations WHERE user_id = 1").fetchnumpy()
        assert len(shown["predicted_rating"]) and not np.isnan(shown["predicted_rating"].astype(float)).any()


def test_a_rebuild_drawing_the_split_anew_keeps_old_runs_out_of_refits_blends_and_comparisons(
    warehouse, tmp_path, small_warehouse
) -> None:
    """Same data, another --split-seed: the split keeps its name but its parts are drawn anew."""
    from etl.build import EtlOptions, build_warehouse

    path, ease_run, long_run = warehouse
    build_warehouse(small_warehouse.parent / "ml-small", path, EtlOptions(validation_fraction=0.1, split_seed=7))
    assert served(path) == {"recommendations": served(path)["recommendations"], "predictions": long_run}
    # a refit of a run on the old draw would train on ratings the new test part holds
    refit = trainer("refit", long_run, "--warehouse", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert refit.exit_code == 1
    assert "drawn with split seed 42" in refit.output and "rebuilt since with split seed 7" in refit.output
    # a run on the new draw takes the role without a comparison of figures from two draws
    holder = served(path)["recommendations"]
    result = train(path, tmp_path, "--model", "ease")
    smoke = newest_run(path)
    assert "It now serves recommendations" in result.output, result.output
    assert served(path)["recommendations"] == smoke
    with duckdb.connect(str(path), read_only=True) as con:
        ((reason,),) = con.execute("SELECT reason FROM served_runs WHERE role = 'recommendations'").fetchall()
        drawn = dict(con.execute("SELECT run_id, split_drawn_with FROM runs").fetchall())
    assert reason == f"run {holder} was trained on an earlier draw of split random ({drawn[holder]})"
    assert "split seed 7" in drawn[smoke] and "split seed 42" in drawn[long_run]
    # a blend's members predict the held-out ratings of one draw (a run that failed its audit is still recorded)
    assert train(path, tmp_path, "--model", "biases").exit_code in (0, NOT_SERVED)
    rater = newest_run(path)
    blend = trainer("blend", long_run, rater, "--warehouse", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert blend.exit_code == 1 and "drawn anew in between" in blend.output
