"""The run order comes from the models' `-- depends_on:` lines: a wrong line stops the build, naming the file,
before anything is written; each layout gets the same models as before, in a valid order, with the
matrices built side by side."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from etl import models as models_module
from etl.build import build_warehouse
from etl.dag import plan, runs_apart
from etl.errors import EtlError
from etl.layouts import detect_layout
from etl.models import models_for, read_model
from warehouse.sql import ETL_DIR

LAYOUTS = ("ml-100k", "ml-1m", "ml-10m", "ml-latest")

# What each layout built before the order was declared (the hand-written list of etl/models.py).
COMMON = [
    "macros/read_lines",
    "macros/whole_number",
    "macros/split_parts",
    "seeds/occupations",
    "staging/ratings_lines",
    "staging/stg_ratings",
    "intermediate/int_movies_checked",
    "intermediate/int_users_checked",
    "intermediate/int_ratings_checked",
    "core/movies",
    "core/ratings",
    "core/users",
    "core/rejected_rows",
    "core/user_index",
    "core/movie_index",
    "core/dataset",
    "core/dataset_lineage",
    "splits/rating_splits",
    "splits/split_ratings",
    "splits/splits",
    "macros/matrix_rows",
    "features/user_matrix",
    "features/movie_matrix",
]
STAGING = {
    "ml-100k": ["staging/ml100k/stg_genres", "staging/ml100k/stg_movies", "staging/ml100k/stg_users"],
    "ml-1m": ["staging/dat/stg_movies", "staging/dat/stg_users"],
    "ml-10m": ["staging/dat/stg_movies", "staging/no_users/stg_users"],
    "ml-latest": ["staging/csv/stg_movies", "staging/no_users/stg_users"],
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1))


def fails_untouched(folder: Path, warehouse: Path, match: str) -> EtlError:
    """Build, expecting EtlError matching ``match``; the previous warehouse is left byte for byte."""
    before = sha256(warehouse)
    with pytest.raises(EtlError, match=match) as error:
        build_warehouse(folder, warehouse)
    assert sha256(warehouse) == before
    assert sorted(p.name for p in warehouse.parent.iterdir() if ".building-" in p.name) == []
    return error.value


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_builds_the_models_it_built_before(movielens, layout):
    models = models_for(detect_layout(movielens(layout)))
    chosen = {m.path.relative_to(ETL_DIR).with_suffix("").as_posix() for m in models}
    assert chosen == set(COMMON + STAGING[layout])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_stages_are_a_valid_order(movielens, layout):
    models = models_for(detect_layout(movielens(layout)))
    stages = plan(models)
    order = [m.name for stage in stages for m in stage.models]
    assert sorted(order) == sorted(m.name for m in models)  # each once
    position = {name: i for i, name in enumerate(order)}
    stage_of = {m.name: n for n, stage in enumerate(stages) for m in stage.models}
    for model in models:
        for dependency in model.depends_on:
            assert stage_of[dependency] < stage_of[model.name], (model.name, dependency)
            assert position[dependency] < position[model.name]
    # A model's tests run once it and the tables its relationships point to are built.
    tested_in = {(m.name, test): n for n, stage in enumerate(stages) for m, test in stage.tests}
    assert len(tested_in) == sum(len(m.tests) for m in models)  # each once
    for model in models:
        for test in model.tests:
            assert tested_in[model.name, test] > stage_of[model.name]
            for parent in test.parents:
                assert tested_in[model.name, test] > stage_of[parent]


def test_the_matrices_are_built_side_by_side(movielens):
    models = models_for(detect_layout(movielens("ml-1m")))
    together = next(stage for stage in plan(models) if any(m.name == "user_matrix" for m in stage.models))
    assert [m.name for m in together.models] == ["movie_matrix", "user_matrix"]
    assert all(runs_apart(m, models) for m in together.models)
    # TEMP tables and views belong to the build's connection: what builds or reads one stays on it.
    by_name = {m.name: m for m in models}
    for name in ("stg_ratings", "int_ratings_checked", "ratings", "users", "read_lines"):
        assert not runs_apart(by_name[name], models), name


def test_unknown_dependency_stops_the_build_naming_the_file(previous, sql_copy):
    folder, warehouse = previous
    edit(sql_copy / "core" / "ratings.sql", "-- depends_on: int_ratings_checked", "-- depends_on: int_ratings_checkd")
    fails_untouched(folder, warehouse, r"^sql/etl/core/ratings\.sql: depends on unknown model 'int_ratings_checkd'$")


def test_dependency_of_another_layout_is_unknown(previous, sql_copy):
    """stg_genres is ml-100k's: a model of every layout cannot read it."""
    folder, warehouse = previous
    edit(
        sql_copy / "staging" / "stg_ratings.sql",
        "-- depends_on: ratings_lines",
        "-- depends_on: stg_genres, ratings_lines",
    )
    fails_untouched(folder, warehouse, r"^sql/etl/staging/stg_ratings\.sql: depends on unknown model 'stg_genres'$")


def test_cycle_stops_the_build_naming_a_file(previous, sql_copy):
    folder, warehouse = previous
    edit(
        sql_copy / "intermediate" / "int_movies_checked.sql",
        "-- depends_on: stg_movies",
        "-- depends_on: stg_movies, movies",
    )
    error = fails_untouched(folder, warehouse, r"^sql/etl/\S+\.sql: dependency cycle: ")
    message = str(error)
    assert "movies" in message and "int_movies_checked" in message
    # The file named is one of the cycle's.
    assert message.split(":")[0] in ("sql/etl/core/movies.sql", "sql/etl/intermediate/int_movies_checked.sql")


def test_model_depending_on_itself_is_a_cycle(previous, sql_copy):
    folder, warehouse = previous
    edit(
        sql_copy / "core" / "users.sql",
        "-- depends_on: int_users_checked, ratings",
        "-- depends_on: int_users_checked, ratings, users",
    )
    fails_untouched(folder, warehouse, r"^sql/etl/core/users\.sql: depends on itself$")


def test_missing_depends_on_line_stops_the_build(previous, sql_copy):
    folder, warehouse = previous
    edit(sql_copy / "core" / "movies.sql", "-- depends_on: int_movies_checked\n", "")
    fails_untouched(folder, warehouse, r"^sql/etl/core/movies\.sql: its header has no '-- depends_on:' line")


def test_relationships_to_an_unknown_table_stops_the_build(previous, sql_copy):
    folder, warehouse = previous
    edit(sql_copy / "core" / "ratings.sql", "movies.movie_id)", "moviez.movie_id)")
    fails_untouched(
        folder, warehouse, r"^sql/etl/core/ratings\.sql: a relationships test refers to unknown model 'moviez'$"
    )


def test_a_model_reads_only_its_header(tmp_path):
    """A depends_on after the first statement is not a declaration (test_sql_declarations checks none is there)."""
    path = tmp_path / "example.sql"
    path.write_text(
        "-- example: a table.\n-- depends_on: ratings, movies\n\nCREATE TABLE example AS SELECT 1;\n"
        "-- depends_on: users\n"
    )
    model = read_model(path)
    assert model.depends_on == ("ratings", "movies")
    assert model.name == "example"


def test_an_empty_depends_on_line_declares_no_dependency(tmp_path):
    path = tmp_path / "seed.sql"
    path.write_text("-- seed: constants.\n-- depends_on:\nCREATE TEMP TABLE seed AS SELECT 1 AS x;\n")
    model = read_model(path)
    assert model.depends_on == ()
    assert model.builds_temp


def test_a_bad_name_in_depends_on_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(models_module, "ETL_DIR", tmp_path)
    path = tmp_path / "core" / "bad.sql"
    path.parent.mkdir()
    path.write_text("-- depends_on: ratings movies\nCREATE TABLE bad AS SELECT 1;\n")
    with pytest.raises(
        EtlError, match=r"^sql/etl/core/bad\.sql: 'ratings movies' in its depends_on line is not a model name$"
    ):
        read_model(path)


def test_model_failing_while_tests_run_stops_the_build_with_its_own_error(previous, sql_copy):
    """The tests queued before it (ratings', in the background) are dropped, not reported."""
    folder, warehouse = previous
    model = sql_copy / "splits" / "rating_splits.sql"
    model.write_text(model.read_text() + "\nSELECT * FROM no_such_table;\n")
    fails_untouched(folder, warehouse, r"^sql/etl/splits/rating_splits\.sql failed on .*no_such_table")
