"""sql/core/*_index and sql/features: dense 0-based indexes in id order, and the user × movie matrices of each
split as aligned, ascending lists that hold exactly the split's ratings."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import pytest

PARTS = ("train", "validation", "test")
# Sparse ids with gaps, a movie nobody rated (40), and a user who rated one movie only.
MOVIES = [(movie, f"Movie {movie} (1990)", ["Drama"]) for movie in (3, 7, 10, 25, 40, 1000)]
RATINGS = [
    (user, movie, 1 + (user + movie) % 5, 978300000 + user * 100 + movie)
    for user, movies in {12: (3, 7, 10, 25, 1000), 5: (7, 1000), 99: (3,), 40: (3, 7, 10, 25)}.items()
    for movie in movies
]


@pytest.fixture(scope="module")
def small(movielens, etl_build) -> Path:
    return etl_build(movielens("ml-10m", ratings=RATINGS, movies=MOVIES), validation_fraction=0.3)


@pytest.fixture(scope="module")
def medium(movielens, etl_build) -> Path:
    """Sparse enough that many users and movies have nothing in some part."""
    rng = random.Random(3)
    ratings = [
        (user, movie, rng.choice([0.5, 1.0, 2.5, 3.0, 4.5, 5.0]), 978300000 + rng.randrange(1000000))
        for user in range(2, 301)
        for movie in rng.sample(range(1, 201), rng.randint(1, 30))
    ]
    # Movie 201's only rating is user 1's latest: the temporal split's test, so its train part is empty.
    ratings += [(1, movie, 3.0, 978300000 + movie) for movie in range(1, 11)] + [(1, 201, 4.0, 979999999)]
    movies = [(movie, f"Movie {movie} (1990)", ["Drama"]) for movie in range(1, 202)]
    return etl_build(movielens("ml-10m", ratings=ratings, movies=movies))


def test_indexes_are_dense_from_zero_in_id_order(small, query):
    assert query(small, "SELECT user_id, user_idx FROM user_index ORDER BY user_idx") == [
        (5, 0),
        (12, 1),
        (40, 2),
        (99, 3),
    ]
    # Movie 40 was never rated: it is in movies, not in movie_index.
    assert query(small, "SELECT movie_id, movie_idx FROM movie_index ORDER BY movie_idx") == [
        (3, 0),
        (7, 1),
        (10, 2),
        (25, 3),
        (1000, 4),
    ]
    assert query(small, "SELECT n_users, n_movies FROM dataset") == [(4, 5)]


def test_indexes_and_matrices_do_not_depend_on_file_order(movielens, etl_build, small, query):
    shuffled = RATINGS.copy()
    random.Random(5).shuffle(shuffled)
    other = etl_build(movielens("ml-10m", ratings=shuffled, movies=MOVIES[::-1]), validation_fraction=0.3)
    for table in ("user_index", "movie_index", "user_matrix", "movie_matrix"):
        assert query(other, f"SELECT * FROM {table} ORDER BY ALL") == query(
            small, f"SELECT * FROM {table} ORDER BY ALL"
        )


def expected_rows(query, warehouse: Path, row_key: str, col_key: str) -> dict[tuple, tuple]:
    """The matrix rows split_ratings implies: (split, row index) -> per part (indexes ascending, ratings)."""
    lists: dict[tuple, dict[str, list]] = defaultdict(lambda: {part: [] for part in PARTS})
    for split, row, col, rating, part in query(
        warehouse, f"SELECT split, {row_key}, {col_key}, rating, part FROM split_ratings"
    ):
        lists[split, row][part].append((col, rating))
    return {
        key: tuple(x for part in PARTS for x in ([c for c, _ in sorted(by[part])], [r for _, r in sorted(by[part])]))
        for key, by in lists.items()
    }


@pytest.mark.parametrize("fixture", ["small", "medium"])
@pytest.mark.parametrize(
    "table, row_key, col_key", [("user_matrix", "user_idx", "movie_idx"), ("movie_matrix", "movie_idx", "user_idx")]
)
def test_matrices_hold_exactly_the_split_ratings(request, query, fixture, table, row_key, col_key):
    warehouse = request.getfixturevalue(fixture)
    rows = query(warehouse, f"SELECT * FROM {table}")
    actual = {(split, row): tuple(lists) for split, row, *lists in rows}
    assert len(actual) == len(rows)  # one row per (split, row index)
    assert actual == expected_rows(query, warehouse, row_key, col_key)
    # Every user (movie) has a row in every split, even with nothing in some part.
    (n_splits,) = query(warehouse, "SELECT count(*) FROM splits")[0]
    (n_rows,) = query(warehouse, f"SELECT count(*) FROM {row_key.replace('_idx', '_index')}")[0]
    assert len(rows) == n_splits * n_rows


@pytest.mark.parametrize("table, col", [("user_matrix", "movie_idx"), ("movie_matrix", "user_idx")])
def test_empty_parts_are_empty_lists_not_null(medium, query, table, col):
    columns = [f"{part}_{col}" for part in PARTS] + [f"{part}_rating" for part in PARTS]
    assert query(medium, f"SELECT count(*) FROM {table} WHERE " + " OR ".join(f"{c} IS NULL" for c in columns)) == [
        (0,)
    ]
    # ... and there are empty ones: a user with one rating has an empty part in every split.
    for part in PARTS:
        assert query(medium, f"SELECT count(*) > 0 FROM {table} WHERE len({part}_{col}) = 0") == [(True,)], part
    types = dict(query(medium, f"SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = '{table}'"))
    assert {c: types[c] for c in columns} == {c: "INTEGER[]" if c.endswith("_idx") else "FLOAT[]" for c in columns}


@pytest.mark.parametrize("table, col", [("user_matrix", "movie_idx"), ("movie_matrix", "user_idx")])
def test_lists_are_aligned_and_ascending(medium, query, table, col):
    for part in PARTS:
        assert query(
            medium,
            f"SELECT count(*) FROM {table} WHERE len({part}_{col}) <> len({part}_rating) "
            f"OR {part}_{col} <> list_sort({part}_{col}) OR len({part}_{col}) <> len(list_distinct({part}_{col}))",
        ) == [(0,)], part
