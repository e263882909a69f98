"""Column tests (`-- test:` lines in the models' headers): a failing one stops the build, naming the model
file, the column, the test and offending rows, and leaves the previous warehouse as it was."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import duckdb
import pytest

from etl.build import build_warehouse
from etl.column_tests import ColumnTest, parse_test, run_tests
from etl.errors import EtlError
from etl.layouts import detect_layout
from etl.models import models_for


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# (model file, a statement appended to it: a bug, the error it must give). The conftest data: user 2 rated
# movies 1, 2 and 5; movie 4 was rated by users 1 and 3; occupation code 0 is 'other'.
BUGS = {
    "not_null": (
        "core/ratings.sql",
        "UPDATE ratings SET rating = NULL WHERE movie_id = 4;",
        # ratings declares no unique key (int_ratings_checked sets duplicates aside): the column alone
        r"sql/etl/core/ratings\.sql: column rating fails not_null: 2 rows, e\.g\. \(rating\) = \(NULL\), \(NULL\)$",
    ),
    "unique": (
        "core/movies.sql",
        "INSERT INTO movies SELECT * FROM movies WHERE movie_id = 5;",
        r"sql/etl/core/movies\.sql: column movie_id fails unique: 1 value repeated, "
        r"e\.g\. \(movie_id, rows\) = \(5, 2\)$",
    ),
    "relationships": (
        "core/ratings.sql",
        "UPDATE ratings SET user_id = 77 WHERE user_id = 2 AND movie_id = 5;",
        r"sql/etl/core/ratings\.sql: column user_id fails relationships to users\.user_id: 1 row, "
        r"e\.g\. \(user_id\) = \(77\)$",
    ),
    "accepted_values": (
        "core/users.sql",
        "UPDATE users SET gender = 'X' WHERE user_id = 2;",
        r"sql/etl/core/users\.sql: column gender fails accepted_values \('M', 'F'\): 1 row, "
        r"e\.g\. \(user_id, gender\) = \(2, 'X'\)$",
    ),
    # A TEMP table's tests run on the build's own connection.
    "unique, TEMP table": (
        "seeds/occupations.sql",
        "INSERT INTO occupations VALUES (0, 'none');",
        r"sql/etl/seeds/occupations\.sql: column occupation_code fails unique: 1 value repeated, "
        r"e\.g\. \(occupation_code, rows\) = \(0, 2\)$",
    ),
    # The matrices' tests run last, once both are built.
    "relationships, last stage": (
        "features/user_matrix.sql",
        "UPDATE user_matrix SET user_idx = 999 WHERE split = 'random' AND user_idx = 0;",
        r"sql/etl/features/user_matrix\.sql: column user_idx fails relationships to user_index\.user_idx: 1 row, "
        r"e\.g\. \(split, user_idx\) = \('random', 999\)$",
    ),
}


@pytest.mark.parametrize("bug", BUGS)
def test_failing_column_test_stops_the_build(previous, sql_copy, bug):
    folder, warehouse = previous
    file, statement, message = BUGS[bug]
    model = sql_copy / file
    model.write_text(model.read_text() + "\n" + statement + "\n")
    before = sha256(warehouse)
    with pytest.raises(EtlError, match=message):
        build_warehouse(folder, warehouse)
    assert sha256(warehouse) == before
    assert [p.name for p in warehouse.parent.iterdir() if ".building-" in p.name or p.name.endswith(".wal")] == []


def test_a_test_naming_a_missing_column_stops_the_build(previous, sql_copy):
    folder, warehouse = previous
    model = sql_copy / "core" / "movies.sql"
    model.write_text(model.read_text().replace("-- test: unique(movie_id)", "-- test: unique(movie_idd)"))
    with pytest.raises(
        EtlError, match=r"^sql/etl/core/movies\.sql: the test unique\(movie_idd\) cannot run: .*movie_idd"
    ):
        build_warehouse(folder, warehouse)


@pytest.mark.parametrize("layout", ["ml-100k", "ml-1m", "ml-10m", "ml-latest"])
def test_every_layout_passes_its_tests(movielens, layout, tmp_path):
    """The declared tests hold on every layout (the real data sets: tests/etl/test_real_data.py builds them)."""
    folder = movielens(layout)
    build_warehouse(folder, tmp_path / "warehouse.duckdb")
    tested = [m for m in models_for(detect_layout(folder)) if m.tests]
    assert {
        "ratings",
        "movies",
        "users",
        "user_index",
        "movie_index",
        "rating_splits",
        "splits",
        "user_matrix",
        "movie_matrix",
    } <= {m.name for m in tested}


def test_the_four_kinds_are_declared(movielens):
    models = models_for(detect_layout(movielens("ml-1m")))
    kinds = {test.kind for model in models for test in model.tests}
    assert kinds == {"unique", "not_null", "accepted_values", "relationships"}
    ratings = next(m for m in models if m.name == "ratings")
    assert ColumnTest("unique", ("movie_id",)) in next(m for m in models if m.name == "movies").tests
    assert ColumnTest("relationships", ("movie_id",), to=("movies", "movie_id")) in ratings.tests


def test_not_null_over_several_columns_is_one_test_each():
    assert parse_test(" not_null(a, b)", "f.sql") == [ColumnTest("not_null", ("a",)), ColumnTest("not_null", ("b",))]


def test_accepted_values_reads_quoted_strings_and_numbers():
    (test,) = parse_test("accepted_values(x, 'a,b', 'it''s', 3, 2.5)", "f.sql")
    assert test.values == ("a,b", "it's", 3, 2.5)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("uniq(movie_id)", r"cannot read the test 'uniq\(movie_id\)': write one of unique\("),
        ("unique movie_id", "cannot read the test 'unique movie_id'"),
        ("unique()", "its arguments must be column names"),
        ("not_null(movie_id, 'x')", "its arguments must be column names"),
        ("relationships(movie_id, movies)", r"write relationships\(column, table\.column\)"),
        ("accepted_values(gender, M, F)", "M is not a quoted string or a number"),
        ("accepted_values(gender)", r"write accepted_values\(column, 'value', \.\.\.\)"),
        ("accepted_values(gender, 'M', 'F',)", "cannot read the test"),
    ],
)
def test_a_malformed_test_line_names_the_file(line, why):
    with pytest.raises(EtlError, match=r"^sql/etl/core/users\.sql: .*" + why):
        parse_test(line, "sql/etl/core/users.sql")


def test_values_are_bound_not_spliced():
    """A value holding a quote and SQL stays a value."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES (1, 'a'), (2, 'x''); DROP TABLE t; --')) AS v(id, s)")
    (test,) = parse_test("accepted_values(s, 'a', 'x''); DROP TABLE t; --')", "t.sql")
    run_tests(con, "t.sql", "t", (test,), ())  # passes: both values are accepted
    (test,) = parse_test("accepted_values(s, 'a')", "t.sql")
    with pytest.raises(EtlError, match=re.escape("1 row, e.g. (s) = ('x''); DROP TABLE t; --')")):
        run_tests(con, "t.sql", "t", (test,), ())
    assert con.execute("SELECT count(*) FROM t").fetchall() == [(2,)]


def test_unique_skips_null_keys_and_not_null_reports_them():
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES (1, NULL), (2, NULL), (3, 7)) AS v(id, k)")
    run_tests(con, "t.sql", "t", parse_test("unique(k)", "t.sql"), ("k",))
    with pytest.raises(EtlError, match=r"column k fails not_null: 2 rows, e\.g\. \(id, k\) = \((1|2), NULL\)"):
        run_tests(con, "t.sql", "t", [*parse_test("unique(id)", "t.sql"), *parse_test("not_null(k)", "t.sql")], ("id",))


def test_long_values_are_cut_short_in_the_message():
    con = duckdb.connect()
    con.execute("CREATE TABLE m AS SELECT 1 AS row_idx, range(1000) AS cells")
    (test,) = parse_test("accepted_values(row_idx, 2)", "m.sql")
    with pytest.raises(EtlError) as error:
        run_tests(con, "m.sql", "m", (test,), ())
    assert str(error.value) == "m.sql: column row_idx fails accepted_values (2): 1 row, e.g. (row_idx) = (1)"


def test_per_row_tests_share_one_scan_and_the_first_failure_in_order_is_reported():
    """not_null and accepted_values tests of a table are counted in one query; the message is still the
    first failing test's, in the order given, with its own sample rows."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES (1, 'a', 5), (2, 'b', NULL), (3, 'z', 6)) AS v(id, s, n)")
    tests = [
        *parse_test("not_null(id, s)", "t.sql"),
        *parse_test("accepted_values(s, 'a', 'b', 'z')", "t.sql"),
        *parse_test("accepted_values(n, 5, 6)", "t.sql"),  # passes: NULL is accepted
        *parse_test("not_null(s)", "t.sql"),
        *parse_test("not_null(n)", "t.sql"),
        *parse_test("accepted_values(s, 'a', 'b')", "t.sql"),
    ]
    with pytest.raises(EtlError, match=re.escape("t.sql: column n fails not_null: 1 row, e.g. (id, n) = (2, NULL)")):
        run_tests(con, "t.sql", "t", tests, ("id",))
    counting = _Counting(con)
    run_tests(counting, "t.sql", "t", tests[:4], ("id",))  # passes, in one scan
    assert counting.queries == 1


def test_a_shared_scan_naming_a_missing_column_still_names_the_test():
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 1 AS id")
    tests = [*parse_test("not_null(id)", "t.sql"), *parse_test("accepted_values(gone, 1)", "t.sql")]
    with pytest.raises(EtlError, match=r"^t\.sql: the test accepted_values\(gone\) cannot run: .*gone"):
        run_tests(con, "t.sql", "t", tests, ())


class _Counting:
    """A connection that counts the queries run through it."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con, self.queries = con, 0

    def execute(self, *args):
        self.queries += 1
        return self.con.execute(*args)
