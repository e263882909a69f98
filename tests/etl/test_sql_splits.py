"""sql/splits: ml-100k's u1..u5 folds, the seeded random split, the temporal split, validation carved from train,
and every split a partition of the ratings."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

PARTS = {"train", "validation", "test"}


def generated(n_users: int, n_movies: int, seed: int) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Every user rates every movie, in a shuffled order, at distinct-ish times; ratings, movies and users."""
    rng = random.Random(seed)
    ratings = [
        (user, movie, rng.randint(1, 5), 880000000 + rng.randrange(10_000_000))
        for user in range(1, n_users + 1)
        for movie in range(1, n_movies + 1)
    ]
    rng.shuffle(ratings)
    movies = [(movie, f"Movie {movie} (1990)", ["Drama"]) for movie in range(1, n_movies + 1)]
    users = [(user, "MF"[user % 2], 20 + user % 40, 0) for user in range(1, n_users + 1)]
    return ratings, movies, users


@pytest.fixture(scope="module")
def ml100k_sized(movielens, etl_build) -> Path:
    """An ml-100k folder with u.data exactly as long as the real one (100,000 lines): 200 users × 500 movies."""
    ratings, movies, users = generated(200, 500, seed=1)
    return etl_build(movielens("ml-100k", ratings=ratings, movies=movies, users=users))


@pytest.fixture(scope="module")
def medium(movielens, etl_build):
    """A 10,000-rating ml-10m folder (200 users × 50 movies), and a function building it with some options
    (each set of options built once)."""
    ratings, movies, _ = generated(200, 50, seed=2)
    folder = movielens("ml-10m", ratings=ratings, movies=movies)
    built: dict[tuple, Path] = {}

    def build(**options: float) -> Path:
        key = tuple(sorted(options.items()))
        if key not in built:
            built[key] = etl_build(folder, folder.parent / f"warehouse-{len(built)}.duckdb", **options)
        return built[key]

    return build


def pairs(query, warehouse: Path, split: str, parts: tuple[str, ...]) -> set[tuple[int, int]]:
    rows = query(
        warehouse,
        "SELECT user_id, movie_id FROM split_ratings WHERE split = ? AND list_contains(?, part)",
        [split, list(parts)],
    )
    return set(rows)


def test_folds_follow_the_lines_of_u_data(ml100k_sized, query):
    """Fold k tests on lines 20000(k-1)+1 .. 20000k of u.data, as mku.sh cuts u1.test .. u5.test."""
    assert query(
        ml100k_sized,
        """
        SELECT count(*) FROM split_ratings AS s JOIN ratings AS r USING (user_id, movie_id)
        WHERE s.split LIKE 'u_'
          AND (s.part = 'test') <> (r.source_line BETWEEN 20000 * (s.split[2]::INT - 1) + 1 AND 20000 * s.split[2]::INT)
        """,
    ) == [(0,)]
    assert query(ml100k_sized, "SELECT split, n_test, n_train + n_validation FROM splits WHERE split LIKE 'u_'") == [
        (f"u{k}", 20000, 80000) for k in range(1, 6)
    ]
    # Each rating is tested in exactly one fold.
    assert query(
        ml100k_sized,
        "SELECT count(*) FROM (SELECT count(*) FILTER (WHERE part = 'test') AS n FROM split_ratings "
        "WHERE split LIKE 'u_' GROUP BY user_id, movie_id) WHERE n <> 1",
    ) == [(0,)]


def test_folds_only_for_ml100k(medium, query):
    assert query(medium(), "SELECT list(split ORDER BY split) FROM splits") == [(["random", "temporal"],)]


@pytest.mark.parametrize("fixture", ["ml100k_sized", "medium"])
def test_every_split_is_a_partition_of_the_ratings(request, query, fixture):
    warehouse = request.getfixturevalue(fixture)
    if fixture == "medium":
        warehouse = warehouse()
    (n,) = query(warehouse, "SELECT count(*) FROM ratings")[0]
    splits = query(
        warehouse,
        "SELECT split, count(*), count(DISTINCT (user_id, movie_id)), list(DISTINCT part) "
        "FROM split_ratings GROUP BY split ORDER BY split",
    )
    for split, rows, distinct, parts in splits:
        assert (rows, distinct) == (n, n), split
        assert set(parts) <= PARTS
    # Nothing in a split that is not a rating, with the rating's own value and coordinates.
    assert query(
        warehouse,
        """
        SELECT count(*) FROM split_ratings AS s
        LEFT JOIN ratings AS r USING (user_id, movie_id)
        LEFT JOIN user_index AS u ON u.user_id = s.user_id
        LEFT JOIN movie_index AS m ON m.movie_id = s.movie_id
        WHERE r.rating IS DISTINCT FROM s.rating OR u.user_idx IS DISTINCT FROM s.user_idx
           OR m.movie_idx IS DISTINCT FROM s.movie_idx
        """,
    ) == [(0,)]
    # The catalogue agrees.
    assert query(warehouse, "SELECT split, n_train, n_validation, n_test FROM splits ORDER BY split") == query(
        warehouse,
        "SELECT split, count(*) FILTER (WHERE part = 'train'), count(*) FILTER (WHERE part = 'validation'), "
        "count(*) FILTER (WHERE part = 'test') FROM split_ratings GROUP BY split ORDER BY split",
    )


@pytest.mark.parametrize("test_fraction", [0.1, 0.3])
def test_random_split_holds_out_about_the_fraction(medium, ml100k_sized, query, test_fraction):
    warehouse = ml100k_sized if test_fraction == 0.1 else medium(test_fraction=test_fraction)
    ((n_test, n_validation, n),) = query(
        warehouse,
        "SELECT count(*) FILTER (WHERE part = 'test'), count(*) FILTER (WHERE part = 'validation'), count(*) "
        "FROM split_ratings WHERE split = 'random'",
    )
    # Binomial: at 10,000 ratings one standard deviation is under 0.5 %.
    assert n_test / n == pytest.approx(test_fraction, abs=0.02)
    assert n_validation / (n - n_test) == pytest.approx(0.05, abs=0.02)


def test_random_split_depends_on_the_seed(medium, query):
    default, other = medium(), medium(split_seed=7)
    test_default = pairs(query, default, "random", ("test",))
    test_other = pairs(query, other, "random", ("test",))
    assert len(test_default) == pytest.approx(len(test_other), rel=0.15)
    # Independent draws of 10 % overlap on about 1 % of the ratings, not 10 %.
    assert len(test_default & test_other) < 0.3 * len(test_default)
    assert pairs(query, default, "random", ("validation",)) != pairs(query, other, "random", ("validation",))
    # The temporal split does not depend on the seed, only its validation slice does.
    assert pairs(query, default, "temporal", ("test",)) == pairs(query, other, "temporal", ("test",))


@pytest.mark.parametrize("split", ["random", "temporal"])
def test_validation_is_carved_from_train_only(medium, query, split):
    small, large = medium(), medium(validation_fraction=0.5)
    # The test part does not move when the validation share changes: validation never takes test ratings.
    assert pairs(query, small, split, ("test",)) == pairs(query, large, split, ("test",))
    train_side = pairs(query, small, split, ("train", "validation"))
    assert train_side == pairs(query, large, split, ("train", "validation"))
    validation = pairs(query, large, split, ("validation",))
    assert len(validation) / len(train_side) == pytest.approx(0.5, abs=0.03)
    # The same seeded hash against a higher threshold: the small slice lies within the large one.
    assert pairs(query, small, split, ("validation",)) <= validation


def test_temporal_split_holds_out_each_users_latest_ratings(movielens, etl_build, query):
    t = 978300000
    ratings = [
        # user 1: ten ratings in shuffled file order; the latest two (movies 3 and 8) are test at 20 %.
        *[
            (1, movie, 3, t + when)
            for movie, when in [(1, 5), (2, 1), (3, 90), (4, 7), (5, 2), (6, 3), (7, 9), (8, 80), (9, 4), (10, 6)]
        ],
        # user 2: five ratings, two at the latest time: the tie goes to the higher movie id.
        *[(2, movie, 4, t + when) for movie, when in [(1, 10), (2, 50), (3, 50), (4, 20), (5, 30)]],
        # user 3: one rating; 20 % of one rounds to none.
        (3, 1, 5, t),
        # user 4: three ratings; 20 % of three rounds to one.
        *[(4, movie, 2, t + when) for movie, when in [(7, 3), (8, 2), (9, 1)]],
    ]
    movies = [(movie, f"Movie {movie} (1990)", ["Drama"]) for movie in range(1, 11)]
    warehouse = etl_build(movielens("ml-10m", ratings=ratings, movies=movies), test_fraction=0.2)
    assert query(
        warehouse,
        "SELECT user_id, list(movie_id ORDER BY movie_id) FROM split_ratings "
        "WHERE split = 'temporal' AND part = 'test' GROUP BY user_id ORDER BY user_id",
    ) == [(1, [3, 8]), (2, [3]), (4, [7])]


@pytest.mark.parametrize("fixture", ["ml100k_sized", "medium"])
def test_temporal_split_rule(request, query, fixture):
    """For every user: round(n × test_fraction) test ratings, none earlier than any training rating."""
    warehouse = request.getfixturevalue(fixture)
    test_fraction = 0.1
    if fixture == "medium":
        test_fraction = 0.3
        warehouse = warehouse(test_fraction=test_fraction)
    assert query(
        warehouse,
        """
        SELECT count(*) FROM (
            SELECT count(*) AS n, count(*) FILTER (WHERE s.part = 'test') AS n_test,
                   min(r.rated_at) FILTER (WHERE s.part = 'test') AS first_test,
                   max(r.rated_at) FILTER (WHERE s.part <> 'test') AS last_train
            FROM split_ratings AS s JOIN ratings AS r USING (user_id, movie_id)
            WHERE s.split = 'temporal'
            GROUP BY s.user_id
        )
        WHERE n_test <> round(n * ?) OR first_test < last_train
        """,
        [test_fraction],
    ) == [(0,)]
