"""`trainer score`: fresh predictions from a trained run after new ratings, new users and renumbered movies,
on small generated data (ml-1m layout), without retraining."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from etl.build import EtlOptions, build_warehouse
from trainer.cli import app
from trainer.config import resolve
from trainer.errors import TrainerError
from trainer.train import run
from warehouse.sql import EXAMPLES_DIR

MODELS = ("autoencoder", "i-autorec", "mf", "ease")  # user rows (folds in), movie rows, factors, ranking only
SETTINGS = {"epochs": 8, "batch_size": 16, "seed": 5, "device": "cpu", "top_n": 5}
MOVIE_SHIFT = 10  # the generated movies' ids start above 1, so that a new movie can sort below them all
NEW_USER = 61  # the generated users are 1..60
TOP_N = (
    "SELECT user_id, rank, movie_id, predicted_rating FROM predictions WHERE run_id = ? AND kind = 'top_n' ORDER BY ALL"
)


@dataclass
class Trained:
    folder: Path  # the MovieLens files
    warehouse: Path
    runs_dir: Path
    runs: dict[str, str]  # model -> training run id


@pytest.fixture(scope="module")
def trained(make_movielens_1m, tmp_path_factory) -> Trained:
    """One training run of each kind of model on a generated data set, whose movie ids start at 11."""
    root = tmp_path_factory.mktemp("score")
    folder = make_movielens_1m(root / "ml-small", n_users=NEW_USER - 1)
    _shift_movie_ids(folder)
    warehouse = root / "warehouse.duckdb"
    build_warehouse(folder, warehouse, EtlOptions(validation_fraction=0.1))
    runs = {}
    for model in MODELS:
        config = {**SETTINGS, "model": model, "warehouse": str(warehouse), "runs_dir": str(root / "runs")}
        runs[model] = run(resolve({**config, "publish_anyway": True})).run_id  # tiny data: served whatever the audit
    return Trained(folder, warehouse, root / "runs", runs)


@pytest.fixture(scope="module")
def trained_rows(trained) -> list[list[list[tuple]]]:
    """Everything each training run wrote, as trained: what a refused command leaves in a test's copy."""
    return [training_rows(trained.warehouse, run_id) for run_id in trained.runs.values()]


@pytest.fixture
def copy(trained, tmp_path) -> Trained:
    """This test's own copy of the files and the warehouse (the runs' weights stay where they were trained)."""
    folder = tmp_path / "ml-small"
    shutil.copytree(trained.folder, folder)
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(trained.warehouse, warehouse)
    return Trained(folder, warehouse, tmp_path / "runs", trained.runs)


def serve(data: Trained, model: str) -> None:
    """Make the model's training run the one serving recommendations: a scoring run refreshes that run's lists."""
    promoted = CliRunner().invoke(
        app, ["promote", data.runs[model], "--as", "recommendations", "--warehouse", str(data.warehouse)]
    )
    assert promoted.exit_code == 0, promoted.output


def score_args(data: Trained, model: str, *options: str) -> list[str]:
    """`trainer score`'s arguments for the model's training run in ``data``, then ``options``."""
    return ["score", data.runs[model], "--warehouse", str(data.warehouse), "--runs-dir", str(data.runs_dir), *options]


def score(data: Trained, model: str, *options: str) -> tuple[str, str]:
    """`trainer score` of the model's training run, made the run serving recommendations first; the scoring run's
    id, and what the command said."""
    serve(data, model)
    result = CliRunner().invoke(app, score_args(data, model, "--device", "cpu", *options))
    assert result.exit_code == 0, result.output
    (run_id,) = query(data.warehouse, "SELECT run_id FROM runs WHERE kind = 'score' ORDER BY finished_at DESC LIMIT 1")[
        0
    ]
    return run_id, result.output


def rebuild(data: Trained, ratings: list[str] = (), movies: list[str] = (), users: list[str] = ()) -> None:
    """Append lines to the MovieLens files, then run the ETL again into the same warehouse."""
    for file, lines in (("ratings.dat", ratings), ("movies.dat", movies), ("users.dat", users)):
        with (data.folder / file).open("a", encoding="latin-1") as f:
            f.writelines(line + "\n" for line in lines)
    build_warehouse(data.folder, data.warehouse, EtlOptions(validation_fraction=0.1))


# This module runs hundreds of queries: each attaches the file to one in-memory connection, read-only, and
# detaches it (as conftest's `query` does), instead of opening a database instance of its own each time.
_READER = duckdb.connect()


@contextmanager
def attached(warehouse: Path) -> Iterator[Callable[..., list[tuple]]]:
    """A function running queries on the warehouse, attached read-only until the block ends."""
    _READER.execute("ATTACH ? AS warehouse (READ_ONLY)", [str(warehouse)])
    try:
        _READER.execute("USE warehouse")
        yield lambda sql, params=None: _READER.execute(sql, params).fetchall()
    finally:
        _READER.execute("USE memory")
        _READER.execute("DETACH warehouse")


def query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    with attached(warehouse) as run_query:
        return run_query(sql, params)


def training_rows(warehouse: Path, run_id: str) -> list[list[tuple]]:
    """Everything a training run wrote."""
    with attached(warehouse) as run_query:
        return [
            run_query(f"SELECT * EXCLUDE (promoted) FROM {table} WHERE run_id = ? ORDER BY ALL", [run_id])
            if table == "runs"
            else run_query(f"SELECT * FROM {table} WHERE run_id = ? ORDER BY ALL", [run_id])
            for table in ("runs", "epoch_metrics", "predictions", "run_index")
        ]


def unrated(warehouse: Path, user_id: int) -> list[int]:
    rows = query(
        warehouse,
        "SELECT movie_id FROM movie_index WHERE movie_id NOT IN "
        "(SELECT movie_id FROM ratings WHERE user_id = ?) ORDER BY movie_id",
        [user_id],
    )
    return [movie for (movie,) in rows]


def test_new_ratings_change_a_users_recommendations_and_leave_out_the_movies_just_rated(copy) -> None:
    serve(copy, "autoencoder")
    before = query(
        copy.warehouse, "SELECT movie_id, predicted_rating FROM recommendations WHERE user_id = 1 ORDER BY rank"
    )
    just_rated = [movie for movie, _ in before[:2]]  # the two movies the model liked best for user 1
    training = training_rows(copy.warehouse, copy.runs["autoencoder"])
    rebuild(copy, ratings=[f"1::{movie}::1::978400000" for movie in just_rated])

    scoring, output = score(copy, "autoencoder")
    assert f"scoring run {scoring} of run {copy.runs['autoencoder']}: {NEW_USER - 1} users scored" in output
    after = query(
        copy.warehouse, "SELECT movie_id, predicted_rating, run_id FROM recommendations WHERE user_id = 1 ORDER BY rank"
    )
    assert {run_id for *_, run_id in after} == {scoring}
    assert not set(just_rated) & {movie for movie, *_ in after}
    # The other movies' scores moved too: the new ratings are the model's inputs.
    old, new = dict(before), {movie: rating for movie, rating, _ in after}
    assert any(abs(old[movie] - new[movie]) > 1e-6 for movie in old.keys() & new.keys())
    assert query(copy.warehouse, "SELECT kind, parent_run_id, audit_passed FROM runs WHERE run_id = ?", [scoring]) == [
        ("score", copy.runs["autoencoder"], True)
    ]
    # Scoring trains nothing and never touches the training run's rows.
    assert training_rows(copy.warehouse, copy.runs["autoencoder"]) == training
    # The analysts' example finds the change.
    changed = query(copy.warehouse, (EXAMPLES_DIR / "changed_recommendations.sql").read_text())
    (user_1,) = [row for row in changed if row[0] == 1]
    assert user_1[1] == scoring and set(just_rated) <= set(user_1[5])


@pytest.mark.parametrize("model", ["autoencoder", "ease"])
def test_a_new_user_is_scored_from_their_ratings_alone_by_a_model_that_folds_in(copy, model) -> None:
    rated = unrated(copy.warehouse, 1)[:4]  # any four movies
    rebuild(copy, users=[f"{NEW_USER}::F::25::3::12345"], ratings=[f"{NEW_USER}::{m}::5::978400000" for m in rated])

    scoring, output = score(copy, model)
    assert f"{NEW_USER} users scored" in output and "skipped" not in output
    recommended = query(copy.warehouse, "SELECT movie_id, run_id FROM recommendations WHERE user_id = ?", [NEW_USER])
    assert len(recommended) == SETTINGS["top_n"] and {run_id for _, run_id in recommended} == {scoring}
    assert not set(rated) & {movie for movie, _ in recommended}
    assert query(copy.warehouse, "SELECT run_id, kind FROM latest_scoring WHERE user_id = ?", [NEW_USER]) == [
        (scoring, "score")
    ]
    ratings = query(copy.warehouse, "SELECT count(predicted_rating) FROM predictions WHERE run_id = ?", [scoring])
    assert ratings != [(0,)]
    # a ranking model predicts no rating: its lists show those of the run serving predictions
    (source,) = query(copy.warehouse, "SELECT ratings_from_run FROM runs WHERE run_id = ?", [scoring])
    rater = query(copy.warehouse, "SELECT run_id FROM served_runs WHERE role = 'predictions'")
    assert [source] == (rater if model == "ease" else [(None,)])


@pytest.mark.parametrize("model", ["i-autorec", "mf"])
def test_models_that_cannot_fold_in_score_the_users_they_know_and_report_the_others(copy, model) -> None:
    rebuild(copy, users=[f"{NEW_USER}::F::25::3::12345"], ratings=[f"{NEW_USER}::{MOVIE_SHIFT + 1}::5::978400000"])

    scoring, output = score(copy, model, "--publish-anyway")  # served whatever the audit says of 8 epochs
    assert f"skipping 1 users run {copy.runs[model]} never trained on" in output
    assert f"{NEW_USER - 1} users scored, 1 skipped" in output
    assert query(copy.warehouse, "SELECT n_scored_users, n_skipped_users FROM runs WHERE run_id = ?", [scoring]) == [
        (NEW_USER - 1, 1)
    ]
    assert query(copy.warehouse, "SELECT count(*) FROM recommendations WHERE user_id = ?", [NEW_USER]) == [(0,)]
    assert query(copy.warehouse, "SELECT DISTINCT run_id FROM recommendations WHERE user_id <= 3") == [(scoring,)]


@pytest.mark.parametrize("model", MODELS)
def test_a_movie_with_a_lower_id_leaves_every_other_prediction_unchanged(copy, model) -> None:
    first, _ = score(copy, model)
    index_before = dict(query(copy.warehouse, "SELECT movie_id, movie_idx FROM movie_index"))
    # Movie 1 sorts below every other: the rebuilt movie_index moves every movie up one place.
    rebuild(copy, movies=["1::A New Movie (2001)::Drama"], ratings=["2::1::4::978400000"])
    index_after = dict(query(copy.warehouse, "SELECT movie_id, movie_idx FROM movie_index"))
    assert all(index_after[movie] == idx + 1 for movie, idx in index_before.items())

    second, output = score(copy, model)
    assert "1 new movie (id 1)" in output and f"{len(index_before)} movies at another index" in output
    assert "1 ratings of 1 movies the model never saw left out" in output
    assert query(copy.warehouse, TOP_N, [second]) == query(copy.warehouse, TOP_N, [first])


def test_resuming_a_run_on_changed_data_says_what_changed(copy) -> None:
    config = {**SETTINGS, "epochs": 2, "warehouse": str(copy.warehouse), "runs_dir": str(copy.runs_dir)}
    trained = run(resolve(config))
    (trained.run_dir / "run.json").unlink()  # as if stopped before it staged its results (else: nothing to resume)
    rebuild(copy, movies=["1::A New Movie (2001)::Drama"], ratings=["2::1::4::978400000"])
    with pytest.raises(TrainerError, match=r"1 new movie \(id 1\); 40 movies at another index \(ids 11, 12, 13"):
        run(resolve({"device": "cpu"}), resume_dir=trained.run_dir)


@pytest.mark.slow
def test_which_users_to_score(copy) -> None:
    rebuild(copy, ratings=[f"3::{unrated(copy.warehouse, 3)[0]}::4::1600000000"])  # rated in 2020

    def scored(*options: str) -> list[int]:
        run_id, _ = score(copy, "autoencoder", *options)
        return [
            user
            for (user,) in query(
                copy.warehouse, "SELECT DISTINCT user_id FROM predictions WHERE run_id = ? ORDER BY 1", [run_id]
            )
        ]

    assert scored("--users", "5, 2,9") == [2, 5, 9]
    assert scored("--users", "SELECT user_id FROM users WHERE user_id % 20 = 0") == [20, 40, 60]
    assert scored("--since", "2019-01-01") == [3]
    assert scored("--since", "2019-01-01", "--users", "1,2,3") == [3]
    # it names the users it scores, and why
    rebuild(
        copy,
        users=[f"{NEW_USER}::F::25::3::12345"],
        ratings=[f"{NEW_USER}::{unrated(copy.warehouse, 1)[0]}::5::1600000100"],
    )
    _, said = score(copy, "autoencoder", "--since", "2019-01-01")
    assert f"scoring 2 users: 3 (rated since 2019-01-01 00:00), {NEW_USER} (a new user)" in said


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--users", "1,99999"], "--users names 1 users with no rating"),
        (["--users", "SELECT nothing FROM nowhere"], "--users is neither a list of ids nor a query"),
        (["--users", "SELECT user_id, gender FROM users"], "the query must return one column"),
        (["--since", "2100-01-01"], "no user has a rating at or after 2100-01-01 00:00:00: nothing to score"),
        # The query runs on a read-only connection, as one subquery: it can read, never write.
        (["--users", "SELECT 1); DROP TABLE runs; --"], "--users is neither a list of ids nor a query"),
        (["--users", "DELETE FROM runs RETURNING 1"], "--users is neither a list of ids nor a query"),
    ],
)
def test_bad_choices_of_users_are_refused(copy, trained_rows, options, message) -> None:
    before = trained_rows  # the copy's rows before the command: it is a copy of the trained warehouse
    result = CliRunner().invoke(app, score_args(copy, "autoencoder", *options))
    assert result.exit_code == 1 and message in result.output
    assert [training_rows(copy.warehouse, run_id) for run_id in copy.runs.values()] == before


@pytest.mark.slow
def test_only_a_training_run_scores(copy) -> None:
    scoring, _ = score(copy, "autoencoder", "--users", "1")
    for run_id, message in (
        (scoring, f"is a scoring run; use its training run, {copy.runs['autoencoder']}"),
        ("20990101-000000-beef", "no run '20990101-000000-beef' in the warehouse"),
    ):
        result = CliRunner().invoke(app, ["score", run_id, "--warehouse", str(copy.warehouse)])
        assert result.exit_code == 1 and message in result.output
    result = CliRunner().invoke(
        app, ["report", scoring, "--warehouse", str(copy.warehouse), "--out-dir", str(copy.runs_dir)]
    )
    assert result.exit_code == 1 and "a scoring run (trainer score) or a blend trains nothing" in result.output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("patch", "whole"),
    [
        # Mid-write, in the new version of the warehouse: the run's row inserted, its predictions not yet.
        ('stop_at_insert("predictions")\n', False),
        # Swapped in, the staged folder not yet marked as published.
        ('stop_around("warehouse.results", "publish", "after")\n', True),
    ],
    ids=["mid-write", "swapped-in"],
)
def test_a_killed_scoring_leaves_all_of_it_or_none(copy, kill_at, patch, whole) -> None:
    before = [training_rows(copy.warehouse, run_id) for run_id in copy.runs.values()]
    command = [
        "trainer",
        "score",
        copy.runs["autoencoder"],
        "--warehouse",
        str(copy.warehouse),
        "--runs-dir",
        str(copy.runs_dir),
        "--device",
        "cpu",
    ]
    kill_at(patch, command)

    scorings = query(copy.warehouse, "SELECT run_id, n_scored_users FROM runs WHERE kind = 'score'")
    if whole:
        ((run_id, n_users),) = scorings
        counted = query(copy.warehouse, "SELECT count(DISTINCT user_id) FROM predictions WHERE run_id = ?", [run_id])
        assert counted == [(n_users,)] == [(NEW_USER - 1,)]
    else:
        assert scorings == [] and query(copy.warehouse, "SELECT count(*) FROM runs") == [(len(MODELS),)]
    assert [training_rows(copy.warehouse, run_id) for run_id in copy.runs.values()] == before


def _shift_movie_ids(folder: Path) -> None:
    """Movie m becomes movie m + MOVIE_SHIFT in movies.dat and ratings.dat."""
    for file, field in (("movies.dat", 0), ("ratings.dat", 1)):
        path = folder / file
        lines = []
        for line in path.read_text(encoding="latin-1").splitlines():
            parts = line.split("::")
            parts[field] = str(int(parts[field]) + MOVIE_SHIFT)
            lines.append("::".join(parts))
        path.write_text("\n".join(lines) + "\n", encoding="latin-1")


@pytest.mark.slow
def test_a_scoring_is_audited_on_its_own_and_not_served_because_its_run_was(copy) -> None:
    """A weak run published anyway: its scoring fails its own audit, and is served only if asked."""
    config = {
        **SETTINGS,
        "epochs": 2,
        "learning_rate": 1000.0,
        "warehouse": str(copy.warehouse),
        "runs_dir": str(copy.runs_dir),
        "publish_anyway": True,
    }
    weak = run(resolve(config)).run_id
    data = Trained(copy.folder, copy.warehouse, copy.runs_dir, {"weak": weak})
    scoring, output = score(data, "weak")
    assert "Not served: the audit failed (scored users' RMSE" in output
    assert query(copy.warehouse, "SELECT count(*) FROM recommendations WHERE run_id = ?", [scoring]) == [(0,)]
    scoring, output = score(data, "weak", "--publish-anyway")
    assert "published despite its audit" in output
    assert query(copy.warehouse, "SELECT count(*) FROM recommendations WHERE run_id = ?", [scoring]) != [(0,)]


def test_users_by_ranges_and_from_a_file(copy, tmp_path) -> None:
    def scored(users: str) -> list[int]:
        run_id, _ = score(copy, "autoencoder", "--users", users)
        return [
            user
            for (user,) in query(
                copy.warehouse, "SELECT DISTINCT user_id FROM predictions WHERE run_id = ? ORDER BY 1", [run_id]
            )
        ]

    # A range names the users with a rating inside it, however wide; an id alone must have one.
    assert scored("1-3, 7, 58 - 99999999999") == [1, 2, 3, 7, 58, 59, 60]
    ids = tmp_path / "users.txt"
    ids.write_text("4\n5,6\n\n10-11\n")  # one a line, or comma-separated
    assert scored(f"@{ids}") == [4, 5, 6, 10, 11]
    assert scored("WITH young AS (SELECT user_id FROM users WHERE user_id < 3) SELECT user_id FROM young") == [1, 2]


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ("SELECT 1.5", "--users: the query must return user ids as whole numbers, not DECIMAL(2,1)"),
        ("SELECT user_id / 2 FROM users", "not DOUBLE"),
        ("1.5", "--users: '1.5' is not a user id or a range of them"),
        ("99999999999999999999", "--users: the user id 99999999999999999999 is past 64 bits"),
        ("SELECT 99999999999999999999", "--users: the query returned the user id 99999999999999999999, past 64 bits"),
        ("SELECT NULL::INTEGER", "--users: the query returned a NULL user id"),
        ("9-2", "--users: the range 9-2 is empty"),
        ("-3", "--users: '-3' is not a user id"),
        ("@no-such-file", "--users @no-such-file: cannot read the file of user ids"),
        ("SELECT 1; SELECT 2", "it must be one SELECT statement, not SELECT, SELECT"),
    ],
)
def test_bad_lists_and_queries_of_users_are_one_line_errors(copy, trained_rows, users, message) -> None:
    before = trained_rows  # the copy's rows before the command: it is a copy of the trained warehouse
    result = CliRunner().invoke(app, score_args(copy, "autoencoder", "--users", users))
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert [training_rows(copy.warehouse, run_id) for run_id in copy.runs.values()] == before


def test_a_file_of_ids_that_is_not_one_is_refused(copy, tmp_path) -> None:
    ids = tmp_path / "users.csv"
    ids.write_text("user_id\n1\n2\n")  # a CSV's header
    result = CliRunner().invoke(app, score_args(copy, "autoencoder", "--users", f"@{ids}"))
    assert result.exit_code == 1 and f"--users @{ids}: 'user_id' is not a user id" in result.output
