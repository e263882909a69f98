"""SQL injection through every flag of `etl build`, the input files and the previous warehouse's own names.

Every value from a flag or a file reaches SQL as a bound parameter (paths, options: `SET VARIABLE x = ?`,
`ATTACH ?`), through read_csv as data (file contents), quoted as an identifier (the names of the tables an
analyst added, carried over on a rebuild), or is refused by type (numbers). Each test tries a payload that
would create a table named pwned if it were spliced into SQL, and checks that the value arrived intact.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from etl.build import build_warehouse
from etl.cli import app

# Closes a string literal, a quoted identifier or a statement, then creates a table: spliced anywhere, it acts.
PAYLOAD = "x'\"); CREATE TABLE pwned (i INT); --"


def etl(*args: str):
    return CliRunner().invoke(app, ["build", "--quiet", *args])


def assert_untouched(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        names = [
            name
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() UNION ALL "
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        ]
        assert not [name for name in names if name.startswith("pwned")]
        assert con.execute("SELECT count(*) FROM ratings").fetchall() == [(12,)]


def test_input_folder_named_like_sql(movielens, tmp_path):
    folder = movielens("ml-1m")
    hostile = folder.parent / PAYLOAD
    folder.rename(hostile)
    warehouse = tmp_path / "warehouse.duckdb"
    for _ in range(2):  # the second build also reads the previous warehouse
        result = etl("--input", str(hostile), "--warehouse", str(warehouse))
        assert result.exit_code == 0, result.output
    assert_untouched(warehouse)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT name FROM dataset").fetchall() == [(PAYLOAD,)]
        assert {path for (path,) in con.execute("SELECT input_dir FROM etl_runs").fetchall()} == {str(hostile)}


def test_input_folder_from_the_environment(movielens, tmp_path):
    folder = movielens("ml-1m")
    hostile = folder.parent / PAYLOAD
    folder.rename(hostile)
    warehouse = tmp_path / f"{PAYLOAD}.duckdb"
    result = CliRunner().invoke(
        app, ["build", "--quiet"], env={"MOVIELENS_DIR": str(hostile), "WAREHOUSE": str(warehouse)}
    )
    assert result.exit_code == 0, result.output
    assert_untouched(warehouse)


def test_warehouse_path_named_like_sql(movielens, tmp_path):
    folder = movielens("ml-1m")
    warehouse = tmp_path / PAYLOAD / f"{PAYLOAD}.duckdb"
    for _ in range(2):  # the second build attaches the first to carry its tables over
        result = etl("--input", str(folder), "--warehouse", str(warehouse))
        assert result.exit_code == 0, result.output
    assert_untouched(warehouse)
    assert sorted(p.name for p in warehouse.parent.iterdir()) == [warehouse.name]


@pytest.mark.parametrize(
    "option", ["--max-bad-rows", "--seed", "--test-fraction", "--validation-fraction", "--lock-wait"]
)
def test_numeric_options_refuse_text(movielens, tmp_path, option):
    result = etl("--input", str(movielens("ml-1m")), "--warehouse", str(tmp_path / "w.duckdb"), option, f"1; {PAYLOAD}")
    assert result.exit_code == 2 and "Invalid value" in result.output
    assert not (tmp_path / "w.duckdb").exists()


def test_file_contents_are_data(movielens, etl_build, query):
    folder = movielens("ml-1m")
    with (folder / "ratings.dat").open("a") as f:
        f.write(f"1::{PAYLOAD}::4::978300760\n")
    with (folder / "movies.dat").open("a", encoding="latin-1") as f:
        f.write(f"6::{PAYLOAD} (1999)::Drama\n")
    warehouse = etl_build(folder, max_bad_rows=1)
    assert_untouched(warehouse)
    assert query(warehouse, "SELECT raw_line FROM rejected_rows") == [(f"1::{PAYLOAD}::4::978300760",)]
    assert query(warehouse, "SELECT title FROM movies WHERE movie_id = 6") == [(f"{PAYLOAD} (1999)",)]


@pytest.mark.parametrize("name", [PAYLOAD, 'pwned"', "previous", "main", "select"])
def test_names_in_the_previous_warehouse_are_quoted(movielens, ml1m_warehouse, tmp_path, name):
    """An analyst's table, column and view may be named anything: a rebuild carries them over as they are."""
    folder = movielens("ml-1m")
    # a warehouse named previous.duckdb once could not be rebuilt (the first build: the session's, copied)
    warehouse = ml1m_warehouse(tmp_path / f"{name}.duckdb")
    quoted = '"' + name.replace('"', '""') + '"'
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"CREATE TABLE {quoted} ({quoted} VARCHAR, n INT)")
        con.execute(f"INSERT INTO {quoted} VALUES (?, 1)", [name])
        con.execute(f'CREATE VIEW "v {name.replace(chr(34), chr(34) * 2)}" AS SELECT * FROM {quoted}')
    build_warehouse(folder, warehouse)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute(f"SELECT * FROM {quoted}").fetchall() == [(name, 1)]
        assert con.execute(f'SELECT * FROM "v {name.replace(chr(34), chr(34) * 2)}"').fetchall() == [(name, 1)]
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'pwned'").fetchall() == [(0,)]
