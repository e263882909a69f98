"""End to end on the real MovieLens copies in ../shared/data (skipped where they are absent). Each data set is
built once for this module."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.build import build_warehouse

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory):
    """A function building ../shared/data/<name> once, returning (folder, warehouse)."""
    cache: dict[str, tuple[Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path]:
        if name not in cache:
            folder = shared_data(name)
            warehouse = tmp_path_factory.mktemp(name) / "warehouse.duckdb"
            build_warehouse(folder, warehouse)
            cache[name] = folder, warehouse
        return cache[name]

    return get


def counts(query, warehouse: Path) -> tuple:
    return query(
        warehouse,
        "SELECT (SELECT count(*) FROM ratings), (SELECT count(*) FROM users), (SELECT count(*) FROM movies), "
        "(SELECT count(*) FROM rejected_rows)",
    )[0]


def test_ml_1m(built, query):
    _, warehouse = built("ml-1m")
    assert counts(query, warehouse) == (1_000_125, 6_040, 3_883, 0)
    assert query(warehouse, "SELECT layout, rating_min, rating_max, rating_step, n_users, n_movies FROM dataset") == [
        ("ml-1m", 1.0, 5.0, 1.0, 6_040, 3_650)
    ]
    # movies.dat is latin-1: both titles with é come out right.
    assert query(
        warehouse, "SELECT movie_id, title, year, genres FROM movies WHERE title LIKE 'Mis_rables%' ORDER BY 1"
    ) == [
        (73, "Misérables, Les (1995)", 1995, ["Drama", "Musical"]),
        (1873, "Misérables, Les (1998)", 1998, ["Drama"]),
    ]
    assert query(warehouse, "SELECT * FROM users WHERE user_id IN (1, 6040) ORDER BY 1") == [
        (1, "F", 1, "K-12 student", "48067"),
        (6040, "M", 25, "doctor/health care", "11106"),
    ]
    assert query(
        warehouse, "SELECT split, n_train + n_validation + n_test, round(n_test / 1000125, 2) FROM splits"
    ) == [("random", 1_000_125, 0.1), ("temporal", 1_000_125, 0.1)]
    assert query(warehouse, "SELECT count(*) FROM user_matrix") == [(2 * 6_040,)]


def test_ml_100k(built, query):
    _, warehouse = built("ml-100k")
    assert counts(query, warehouse) == (100_000, 943, 1_682, 0)
    assert query(warehouse, "SELECT title, year, genres FROM movies WHERE movie_id = 1") == [
        ("Toy Story (1995)", 1995, ["Animation", "Children's", "Comedy"])
    ]
    assert query(warehouse, "SELECT title FROM movies WHERE title LIKE 'Mis_rables%'") == [("Misérables, Les (1995)",)]


@pytest.mark.parametrize("fold", [1, 2, 3, 4, 5])
def test_ml_100k_folds_are_the_official_files(built, query, fold):
    """uN's test part is uN.test and its train + validation parts are uN.base, row for row."""
    folder, warehouse = built("ml-100k")

    def official(file: str) -> list[tuple]:
        rows = (line.split("\t") for line in (folder / file).read_text().splitlines())
        return sorted((int(u), int(m), float(r), int(t)) for u, m, r, t in rows)

    def ours(parts: list[str]) -> list[tuple]:
        return query(
            warehouse,
            "SELECT s.user_id, s.movie_id, s.rating, epoch(r.rated_at)::BIGINT FROM split_ratings AS s "
            "JOIN ratings AS r USING (user_id, movie_id) WHERE s.split = ? AND list_contains(?, s.part) ORDER BY ALL",
            [f"u{fold}", parts],
        )

    assert ours(["test"]) == official(f"u{fold}.test")
    assert ours(["train", "validation"]) == official(f"u{fold}.base")


def test_ml_latest_small(built, query):
    _, warehouse = built("ml-latest-small")
    assert counts(query, warehouse) == (100_836, 610, 9_742, 0)
    assert query(warehouse, "SELECT layout, rating_min, rating_max, rating_step, n_users, n_movies FROM dataset") == [
        ("ml-latest", 0.5, 5.0, 0.5, 610, 9_724)
    ]
    assert query(warehouse, "SELECT list(DISTINCT rating ORDER BY rating) FROM ratings") == [
        ([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0],)
    ]
    assert query(warehouse, "SELECT count(*) FROM users WHERE gender IS NOT NULL OR age IS NOT NULL") == [(0,)]
    assert query(warehouse, "SELECT count(*) FROM movies WHERE genres = []") == [(34,)]
    assert query(warehouse, "SELECT title, year FROM movies WHERE movie_id IN (11, 73, 171749) ORDER BY movie_id") == [
        ("American President, The (1995)", 1995),
        ("Misérables, Les (1995)", 1995),
        ("Death Note: Desu nôto (2006–2007)", 2006),
    ]
    assert query(warehouse, "SELECT list(split ORDER BY split) FROM splits") == [(["random", "temporal"],)]
