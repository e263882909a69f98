"""etl.build: a failed ETL leaves the previous warehouse as it was; a rebuild keeps the tables it does not build
and the run history; the same input always gives the same tables."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from etl import build as build_module
from etl.build import EtlOptions, build_warehouse
from etl.errors import EtlError
from warehouse.errors import WarehouseError
from warehouse.sql import SQL_DIR

RUN_TABLES = {"etl_runs", "etl_run_files"}  # they record times and ids: excluded from determinism checks


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".building-" in p.name or p.name.endswith(".wal"))


def break_ratings(folder: Path) -> None:
    with (folder / "ratings.dat").open("a") as f:
        f.write("1::1::7::978300760\n")


@pytest.fixture
def previous(movielens, ml1m_warehouse, tmp_path) -> tuple[Path, Path]:
    """An ml-1m folder and a warehouse built from it (the session's build, copied), with tables and views the
    ETL does not build."""
    folder = movielens("ml-1m")
    warehouse = ml1m_warehouse(tmp_path / "warehouse.duckdb")
    with duckdb.connect(str(warehouse)) as con:
        # As the trainer might: a sequence-numbered runs table with a key, a table that refers to it.
        con.execute("CREATE SEQUENCE run_seq")
        con.execute(
            "CREATE TABLE runs (run_id INTEGER PRIMARY KEY DEFAULT nextval('run_seq'), model VARCHAR NOT NULL, "
            "rmse DOUBLE CHECK (rmse >= 0))"
        )
        con.execute("INSERT INTO runs (model, rmse) VALUES ('autorec', 0.91), ('mf', 0.87)")
        con.execute(
            "CREATE TABLE predictions (run_id INTEGER REFERENCES runs (run_id), user_id INTEGER, movie_id INTEGER, rating FLOAT)"
        )
        con.execute("INSERT INTO predictions VALUES (1, 1, 2, 3.5), (2, 1, 2, 3.75)")
        con.execute("CREATE INDEX predictions_user ON predictions (user_id)")
        # As an analyst might: a table and views, one on top of another created before it.
        con.execute("CREATE TABLE zz_notes AS SELECT 'Heat is underrated' AS note")
        con.execute("CREATE VIEW zz_best AS SELECT model, rmse FROM runs WHERE rmse < 0.9")
        con.execute("CREATE VIEW best_model AS SELECT model FROM zz_best ORDER BY rmse LIMIT 1")
        con.execute("CREATE VIEW rating_counts AS SELECT user_id, count(*) AS n FROM ratings GROUP BY user_id")
    return folder, warehouse


def test_failed_build_leaves_previous_warehouse_untouched(previous, query):
    folder, warehouse = previous
    before = sha256(warehouse)
    break_ratings(folder)
    with pytest.raises(EtlError, match="line 13: rating '7'"):
        build_warehouse(folder, warehouse)
    assert sha256(warehouse) == before
    assert leftovers(warehouse.parent) == []
    assert query(warehouse, "SELECT count(*) FROM ratings") == [(12,)]
    assert query(warehouse, "SELECT count(*) FROM etl_runs") == [(1,)]


def test_interrupt_after_carrying_tables_over_leaves_previous_warehouse_untouched(previous, monkeypatch):
    """Ctrl-C at the last step before the swap: the previous warehouse has been attached and read by then."""
    folder, warehouse = previous
    before = sha256(warehouse)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module, "_record_run", interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_warehouse(folder, warehouse)
    assert sha256(warehouse) == before
    assert leftovers(warehouse.parent) == []


def test_rebuild_keeps_other_tables_and_views(previous, query):
    folder, warehouse = previous
    build_warehouse(folder, warehouse)

    assert query(warehouse, "SELECT run_id, model, rmse FROM runs ORDER BY run_id") == [
        (1, "autorec", 0.91),
        (2, "mf", 0.87),
    ]
    assert query(warehouse, "SELECT * FROM predictions ORDER BY run_id") == [(1, 1, 2, 3.5), (2, 1, 2, 3.75)]
    assert query(warehouse, "SELECT * FROM zz_notes") == [("Heat is underrated",)]
    assert query(warehouse, "SELECT * FROM best_model") == [("mf",)]
    assert query(warehouse, "SELECT n FROM rating_counts ORDER BY user_id") == [(3,), (3,), (3,), (3,)]
    # Kept as they were defined, not just their rows: keys, defaults, checks and indexes still hold.
    assert query(warehouse, "SELECT index_name FROM duckdb_indexes() WHERE table_name = 'predictions'") == [
        ("predictions_user",)
    ]
    with duckdb.connect(str(warehouse)) as con:
        con.execute("INSERT INTO runs (model, rmse) VALUES ('vae', 0.85)")
        assert con.sql("SELECT max(run_id) FROM runs").fetchall() == [(3,)]
        for bad in ("INSERT INTO runs VALUES (1, 'again', 1.0)", "INSERT INTO runs (model, rmse) VALUES ('x', -1)"):
            with pytest.raises(duckdb.ConstraintException):
                con.execute(bad)


def test_rebuild_keeps_the_trainers_tables_and_views(movielens, tmp_path, query):
    """The trainer's own models (sql/results, sql/views) in a warehouse survive an ETL rebuild, keys included."""
    models = sorted((SQL_DIR / "results").glob("*.sql")) + sorted((SQL_DIR / "views").glob("*.sql"))
    if not models:
        pytest.skip("no trainer models in sql/results or sql/views")
    folder = movielens("ml-1m")
    warehouse = tmp_path / "warehouse.duckdb"
    build_warehouse(folder, warehouse)
    with duckdb.connect(str(warehouse)) as con:
        pending = models
        while pending:  # the views name each other: each round creates those whose views exist
            failed = []
            for model in pending:
                try:
                    con.execute(model.read_text())
                except duckdb.CatalogException:
                    failed.append(model)
            assert len(failed) < len(pending), failed
            pending = failed
    catalogue = (
        "SELECT 'table', table_name, sql FROM duckdb_tables() UNION ALL "
        "SELECT 'view', view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY ALL"
    )
    keys = "SELECT table_name, constraint_type FROM duckdb_constraints() ORDER BY ALL"
    before = query(warehouse, catalogue), query(warehouse, keys)
    build_warehouse(folder, warehouse)
    assert (query(warehouse, catalogue), query(warehouse, keys)) == before
    for view in [name for kind, name, _ in before[0] if kind == "view"]:
        query(warehouse, f'SELECT * FROM "{view}"')


def test_broken_view_stops_the_rebuild_and_says_which(previous):
    """A view whose table was dropped cannot be recreated: say so, rather than silently lose it."""
    folder, warehouse = previous
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE TABLE scratch AS SELECT 1 AS x")
        con.execute("CREATE VIEW scratch_view AS SELECT x FROM scratch")
        con.execute("DROP TABLE scratch")  # DuckDB allows it; the view is left dangling
    before = sha256(warehouse)
    with pytest.raises(
        WarehouseError, match=f"^{warehouse}: cannot keep the view scratch_view of the existing warehouse"
    ):
        build_warehouse(folder, warehouse)
    assert sha256(warehouse) == before
    assert leftovers(warehouse.parent) == []


def test_ratings_with_a_non_ascii_byte_load_as_the_plain_ascii_file_does(movielens, etl_build, query):
    """A plain-ASCII ratings file is read as UTF-8, one with any other byte as latin-1 (etl.build._set_variables):
    both give the same ratings, and the odd line is set aside with its text as latin-1 reads it."""
    plain = movielens("ml-1m")
    odd = movielens("ml-1m")
    with (odd / "ratings.dat").open("ab") as f:
        f.write(b"1::1::4::97830076\xe9\n")
    built = {folder: etl_build(folder, max_bad_rows=1) for folder in (plain, odd)}
    with duckdb.connect(str(built[plain]), read_only=True) as con:
        con.execute("ATTACH ? AS odd (READ_ONLY)", [str(built[odd])])
        for first, second in [("ratings", "odd.ratings"), ("odd.ratings", "ratings")]:
            assert con.sql(f"SELECT * FROM {first} EXCEPT ALL SELECT * FROM {second}").fetchall() == []
    assert query(built[odd], "SELECT count(*) FROM ratings") == [(12,)]
    assert query(built[odd], "SELECT line_no, raw_line FROM rejected_rows") == [(13, "1::1::4::97830076é")]


def test_run_history_accumulates(movielens, tmp_path, query):
    folder = movielens("ml-1m")
    warehouse = tmp_path / "warehouse.duckdb"
    for runs in (1, 2):
        build_warehouse(folder, warehouse, EtlOptions(split_seed=runs))
        assert query(warehouse, "SELECT count(*), count(DISTINCT run_id) FROM etl_runs") == [(runs, runs)]
        assert query(warehouse, "SELECT count(*) FROM etl_run_files") == [(3 * runs,)]
    assert query(warehouse, "SELECT list(options->>'$.split_seed' ORDER BY started_at) FROM etl_runs") == [
        (["1", "2"],)
    ]
    assert query(warehouse, "SELECT DISTINCT layout, n_ratings, n_movies, n_users, n_rejected FROM etl_runs") == [
        ("ml-1m", 12, 5, 5, 0)
    ]
    files = query(
        warehouse, "SELECT DISTINCT role, file, bytes, sha256, encoding, newline FROM etl_run_files ORDER BY role"
    )
    assert files == [
        (role, str(folder / name), (folder / name).stat().st_size, sha256(folder / name), encoding, r"\n")
        # users.dat is plain ASCII, so it decodes as UTF-8; ratings are always read as latin-1.
        for role, name, encoding in [
            ("movies", "movies.dat", "latin-1"),
            ("ratings", "ratings.dat", "latin-1"),
            ("users", "users.dat", "utf-8"),
        ]
    ]
    # Carried over from run to run, etl_runs keeps its key.
    assert query(
        warehouse,
        "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'etl_runs' AND constraint_type = 'PRIMARY KEY'",
    ) == [(1,)]
    # A failed run is not recorded.
    break_ratings(folder)
    with pytest.raises(EtlError):
        build_warehouse(folder, warehouse)
    assert query(warehouse, "SELECT count(*) FROM etl_runs") == [(2,)]


def test_stale_builds_of_dead_processes_are_removed(movielens, tmp_path):
    folder = movielens("ml-1m")
    warehouse = tmp_path / "warehouse.duckdb"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"warehouse.duckdb.building-{int(dead.stdout)}"
    stale.write_bytes(b"half a warehouse")
    stale.with_name(stale.name + ".wal").write_bytes(b"half a log")
    spill = stale.with_name(stale.name + ".tmp")  # DuckDB's spill folder, left by a build killed mid-spill
    spill.mkdir()
    (spill / "duckdb_temp_storage-0.tmp").write_bytes(b"spilled")
    alive = tmp_path / f"warehouse.duckdb.building-{os.getppid()}"  # another ETL still at work
    alive.write_bytes(b"in progress")
    build_warehouse(folder, warehouse)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["warehouse.duckdb", alive.name]


def etl_tables(warehouse: Path) -> dict[str, list[tuple]]:
    """Every table the ETL builds, all rows, sorted by all columns."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        names = [row[0] for row in con.sql("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        return {
            name: con.sql(f'SELECT * FROM "{name}" ORDER BY ALL').fetchall() for name in names if name not in RUN_TABLES
        }


@pytest.fixture(scope="module")
def bigger_ml10m(movielens) -> Path:
    """An ml-10m folder of 5,000 ratings (100 users × 50 movies), so that the splits have work to do."""
    ratings = [
        (user, movie, 0.5 * (1 + (user * 7 + movie * 13) % 10), 978300000 + (user * 31 + movie * 17) % 100000)
        for user in range(1, 101)
        for movie in range(1, 51)
    ]
    movies = [(movie, f"Movie {movie} (19{movie % 100:02d})", ["Drama"]) for movie in range(1, 51)]
    return movielens("ml-10m", ratings=ratings, movies=movies)


@pytest.mark.parametrize("layout", ["ml-100k", "bigger ml-10m"])
def test_same_input_same_tables(movielens, bigger_ml10m, tmp_path, layout):
    folder = bigger_ml10m if layout == "bigger ml-10m" else movielens(layout)
    first, second = tmp_path / "first.duckdb", tmp_path / "second.duckdb"
    build_warehouse(folder, first)
    build_warehouse(folder, second)
    tables = etl_tables(first)
    assert {
        "ratings",
        "movies",
        "users",
        "rejected_rows",
        "user_index",
        "movie_index",
        "dataset",
        "rating_splits",
        "splits",
        "user_matrix",
        "movie_matrix",
    } <= set(tables)
    assert etl_tables(second) == tables
    if layout == "bigger ml-10m":
        # A rebuild in place (carrying the first run's tables over) gives the same tables again.
        build_warehouse(folder, first)
        assert etl_tables(first) == tables


@pytest.mark.slow  # half a million ratings, 12 MB: a build at the real files' scale
def test_line_numbers_hold_across_a_large_file_read_on_every_core(tmp_path, query):
    """ratings_lines numbers a line by its stored position; a 12 MB file is read in several chunks at once,
    and each rating must still name its own line, blank lines counted."""
    n_users, n_movies = 1000, 500
    lines = [
        f"{u}::{m}::{1 + (u * m) % 5}::9{u:04d}{m:04d}" for u in range(1, n_users + 1) for m in range(1, n_movies + 1)
    ]
    for at in (1, 123_457, 250_001, 377_777):  # blank lines in several of DuckDB's 8 MB reading chunks
        lines.insert(at, "")
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    (folder / "movies.dat").write_text("".join(f"{m}::Movie {m} (1999)::Drama\n" for m in range(1, n_movies + 1)))
    (folder / "users.dat").write_text("".join(f"{u}::F::25::0::12345\n" for u in range(1, n_users + 1)))
    warehouse = tmp_path / "warehouse.duckdb"
    build_warehouse(folder, warehouse)
    expected = {(int(line.split("::")[0]), int(line.split("::")[1])): n for n, line in enumerate(lines, 1) if line}
    found = {(u, m): n for u, m, n in query(warehouse, "SELECT user_id, movie_id, source_line FROM ratings")}
    assert len(found) == n_users * n_movies and found == expected


def test_a_file_that_is_not_a_warehouse_is_refused_before_any_work(movielens, tmp_path) -> None:
    notes = tmp_path / "notes.duckdb"
    notes.write_text("my notes, not a database\n" * 10)
    with pytest.raises(EtlError, match="is not a DuckDB database: the build would replace it"):
        build_warehouse(movielens("ml-1m"), notes, EtlOptions())
    assert notes.read_text() == "my notes, not a database\n" * 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.duckdb"]  # no side file, nothing built
