"""Synthetic MovieLens files of any size: ml-32m-like CSVs or the ml-1m `.dat` layout.

For scale tests where the real ml-32m cannot be shipped (licence) or is not big enough. The shape
follows the real data sets: a long tail of movie popularity, users with 20 to thousands of ratings
(lognormal, as in ml-32m: median about 80, mean 160), ratings with the real data sets' star
distribution, driven by user and movie biases and a few latent tastes so that a model has
something to learn, timestamps that cluster per user, titles with years, genres, and demographics
for `users.dat`.

Everything is drawn with NumPy and written with Polars, one block of users at a time, so memory is
bounded by a block (about 2,048 users) whatever the number of ratings. Each block has its own
random stream seeded by (seed, block), so the same options always give byte-identical files. No
(user, movie) pair is drawn twice: each user's movies are sampled without replacement.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from etl.datasets import SYNTHETIC_LAYOUTS
from etl.errors import EtlError

MIN_USER_RATINGS = 20  # as in every MovieLens release
USERS_PER_BLOCK = 2048
RATINGS_PER_USER = 160  # ml-32m: 32,000,204 ratings / 200,948 users
LATENT_DIM = 8
FIRST_SECOND = 820_454_400  # 1996-01-01, about when MovieLens starts
LAST_SECOND = 1_697_155_200  # 2023-10-13, the end of ml-32m

# Share of each star value among all ratings: ml-latest-small's (half stars, as ml-32m) and ml-1m's.
HALF_STAR_SHARES = {
    0.5: 0.0137,
    1.0: 0.0279,
    1.5: 0.0178,
    2.0: 0.0749,
    2.5: 0.0551,
    3.0: 0.1988,
    3.5: 0.1304,
    4.0: 0.2660,
    4.5: 0.0848,
    5.0: 0.1306,
}
WHOLE_STAR_SHARES = {1.0: 0.0562, 2.0: 0.1075, 3.0: 0.2612, 4.0: 0.3489, 5.0: 0.2262}

GENRES = [
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
# How common each genre is (roughly ml-32m's counts of movies per genre): Drama and Comedy lead.
GENRE_WEIGHTS = np.array([9, 6, 4, 4, 23, 6, 6, 34, 4, 1, 8, 0.3, 2, 3, 10, 4, 12, 2, 1], dtype=np.float64)
# Title words; a few accented (latin-1 in .dat files) and a few titles carry commas or quotes, which
# the CSV layout must quote and the ETL must parse.
ADJECTIVES = [
    "Silent",
    "Last",
    "Dark",
    "Broken",
    "Golden",
    "Hidden",
    "Lost",
    "Wild",
    "Crimson",
    "Frozen",
    "Secret",
    "Little",
    "Burning",
    "Electric",
    "Lonely",
    "Eternal",
    "Midnight",
    "Savage",
    "Bitter",
    "Distant",
    "Amélie's",
    "Señor",
    "Café",
]
NOUNS = [
    "River",
    "Kingdom",
    "Summer",
    "Road",
    "Garden",
    "Dream",
    "Storm",
    "Mirror",
    "City",
    "Heart",
    "Stranger",
    "Empire",
    "Island",
    "Shadow",
    "Promise",
    "Harbor",
    "Machine",
    "Frontier",
    "Night",
    "Letter",
    "Dance",
    "Fortune",
    "Château",
    "Naïve",
]
AGES = np.array([1, 18, 25, 35, 45, 50, 56])  # ml-1m's age bracket codes
AGE_SHARES = np.array([0.037, 0.183, 0.347, 0.197, 0.091, 0.082, 0.063])


@dataclass(frozen=True)
class GenerateOptions:
    ratings: int
    users: int | None = None  # default: ratings / 160, as in ml-32m
    movies: int | None = None  # default: 1.1 x ratings^0.65 (ml-100k's and ml-32m's sizes)
    layout: str = "csv"  # "csv": ratings.csv + movies.csv (ml-32m); "dat": ratings/movies/users.dat (ml-1m)
    seed: int = 0

    @property
    def n_users(self) -> int:
        return self.users or max(1, self.ratings // RATINGS_PER_USER)

    @property
    def n_movies(self) -> int:
        # The catalogue grows slower than the ratings: 1.1 x ratings^0.65 gives ml-100k's 1,682 movies at
        # 100,000 ratings (1,960) and ml-32m's 87,585 at 32 M (82,000).
        return self.movies or max(3 * MIN_USER_RATINGS, round(1.1 * self.ratings**0.65))

    @property
    def max_user_ratings(self) -> int:
        # A third of the catalogue: ml-32m's most active user rated 33,332 of 87,585 movies.
        return self.n_movies // 3


@dataclass
class GenerateReport:
    folder: Path
    files: dict[str, int]  # file name -> bytes
    n_ratings: int
    n_users: int
    n_movies: int


def generate(
    options: GenerateOptions, folder: Path, log: Callable[[str], None] = lambda message: None
) -> GenerateReport:
    """Write a synthetic MovieLens folder; files appear only once complete (written aside, then renamed)."""
    _check(options)
    folder.mkdir(parents=True, exist_ok=True)
    world = _World.draw(options)
    csv = options.layout == "csv"
    names = ["ratings.csv", "movies.csv"] if csv else ["ratings.dat", "movies.dat", "users.dat"]
    partial = {name: folder / f".{name}.partial-{os.getpid()}" for name in names}
    try:
        with partial[names[0]].open("wb") as f:
            if csv:
                f.write(b"userId,movieId,rating,timestamp\n")
            for done, block in enumerate(_rating_blocks(options, world), 1):
                _write_ratings(block, f, csv)
                if done % 10 == 0:
                    log(f"  {done * USERS_PER_BLOCK:,} of {options.n_users:,} users written")
        _write_movies(options, world, partial[names[1]], csv)
        if not csv:
            _write_users(options, world, partial["users.dat"])
        for name in names:
            os.replace(partial[name], folder / name)
    finally:
        for path in partial.values():
            path.unlink(missing_ok=True)
    files = {name: (folder / name).stat().st_size for name in names}
    return GenerateReport(folder, files, options.ratings, options.n_users, options.n_movies)


def _check(options: GenerateOptions) -> None:
    if options.layout not in SYNTHETIC_LAYOUTS:
        raise EtlError(f"layout must be one of {', '.join(SYNTHETIC_LAYOUTS)}, not {options.layout!r}")
    if options.n_movies < 3 * MIN_USER_RATINGS:
        raise EtlError(
            f"at least {3 * MIN_USER_RATINGS} movies are needed (each user rates {MIN_USER_RATINGS} "
            f"or more, at most a third of the catalogue), not {options.n_movies}"
        )
    low, high = options.n_users * MIN_USER_RATINGS, options.n_users * options.max_user_ratings
    if not low <= options.ratings <= high:
        raise EtlError(
            f"{options.ratings:,} ratings cannot be spread over {options.n_users:,} users with "
            f"{MIN_USER_RATINGS} to {options.max_user_ratings:,} ratings each "
            f"({low:,} to {high:,} ratings): change --users or --movies"
        )


@dataclass
class _World:
    """What every block shares: per-user counts and tastes, per-movie popularity and qualities, ids."""

    counts: np.ndarray  # ratings per user
    user_bias: np.ndarray
    user_taste: np.ndarray  # users x LATENT_DIM
    movie_ids: np.ndarray  # by movie index; increasing, with gaps as in ml-32m
    movie_cdf: np.ndarray  # cumulative popularity, by movie index
    movie_bias: np.ndarray
    movie_taste: np.ndarray  # movies x LATENT_DIM
    shares: np.ndarray  # cumulative share of the star values below each one
    stars: np.ndarray  # the star values, ascending

    @staticmethod
    def draw(options: GenerateOptions) -> _World:
        rng = np.random.default_rng([options.seed, 0])
        n_users, n_movies = options.n_users, options.n_movies
        # Popularity: Zipf-like over a random order of the movies, so popular ones are spread over the ids.
        rank = rng.permutation(n_movies)
        popularity = 1.0 / (rank + 10.0) ** 1.1
        movie_cdf = np.cumsum(popularity / popularity.sum())
        # Popular movies are rated a little higher on average, as in the real data.
        pop_z = -np.log(rank + 10.0)
        pop_z = (pop_z - pop_z.mean()) / pop_z.std()
        movie_bias = 0.4 * pop_z + math.sqrt(1 - 0.4**2) * rng.standard_normal(n_movies)
        shares = HALF_STAR_SHARES if options.layout == "csv" else WHOLE_STAR_SHARES
        return _World(
            counts=_user_counts(rng, options),
            user_bias=rng.standard_normal(n_users),
            user_taste=rng.standard_normal((n_users, LATENT_DIM)).astype(np.float32),
            # ml-32m's ids run to 292,757 for 87,585 movies: about a third of the ids are gaps.
            movie_ids=np.cumsum(1 + (rng.random(n_movies) < 0.3) * rng.geometric(0.2, n_movies)),
            movie_cdf=movie_cdf,
            movie_bias=movie_bias,
            movie_taste=rng.standard_normal((n_movies, LATENT_DIM)).astype(np.float32),
            shares=np.cumsum(list(shares.values()))[:-1] / sum(shares.values()),
            stars=np.array(list(shares)),
        )

    def score(self, rng: np.random.Generator, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        """A latent liking of each (user, movie): biases, shared tastes and noise."""
        taste = np.einsum("ij,ij->i", self.user_taste[users], self.movie_taste[movies]) / math.sqrt(LATENT_DIM)
        return (
            0.45 * self.user_bias[users]
            + 0.55 * self.movie_bias[movies]
            + 0.5 * taste
            + 0.5 * rng.standard_normal(users.size)
        )


def _user_counts(rng: np.random.Generator, options: GenerateOptions) -> np.ndarray:
    """Ratings per user: 20 plus a lognormal share of the rest, at most max_user_ratings, summing exactly."""
    n, total, cap = options.n_users, options.ratings, options.max_user_ratings
    weights = rng.lognormal(0.0, 1.3, n)
    counts = MIN_USER_RATINGS + np.floor((total - MIN_USER_RATINGS * n) * weights / weights.sum()).astype(np.int64)
    counts = np.minimum(counts, cap)
    # Hand out what rounding and the cap left over, one rating each, to the users with room, most active first.
    order = np.argsort(-weights, kind="stable")
    while (left := total - int(counts.sum())) > 0:
        room = order[counts[order] < cap][:left]
        counts[room] += 1
    return counts


def _rating_blocks(options: GenerateOptions, world: _World) -> Iterator[pl.DataFrame]:
    """The ratings, one block of users at a time, sorted by user then movie (as ml-32m's file is)."""
    for block, start in enumerate(range(0, options.n_users, USERS_PER_BLOCK)):
        rng = np.random.default_rng([options.seed, 1, block])
        end = min(start + USERS_PER_BLOCK, options.n_users)
        users, movies = _sample_movies(rng, world.counts[start:end], world.movie_cdf)
        users += start
        # Stars by the block's own quantiles of the score: the shares come out as the real ones whatever
        # the mix of users and movies (cut points fixed in advance missed them by up to 5 points).
        score = world.score(rng, users, movies)
        rating = world.stars[np.searchsorted(np.quantile(score, world.shares), score)]
        # Each user rates within their own active span: a start date, and a year or so (exponential) after it.
        first = rng.integers(FIRST_SECOND, LAST_SECOND, end - start)
        span = np.minimum(rng.exponential(365 * 86400, end - start), LAST_SECOND - first)
        local = users - start
        when = first[local] + (rng.random(users.size) * span[local]).astype(np.int64)
        yield pl.DataFrame(
            {
                "userId": users + 1,
                "movieId": world.movie_ids[movies],
                "rating": rating,
                "timestamp": when,
            }
        )


def _sample_movies(rng: np.random.Generator, counts: np.ndarray, cdf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each user i, counts[i] distinct movies drawn by popularity: (user, movie) pairs, sorted.

    Draws with replacement, drops repeats, and draws again for the users still short, until every user
    has their count. Surplus distinct draws are dropped at random (a random priority per draw), so the
    kept movies are not biased towards any ids.
    """
    n_users = counts.size
    n_movies = cdf.size
    kept_users, kept_movies = [], []
    pending_users = np.arange(n_users)
    have_users = np.empty(0, np.int64)
    have_movies = np.empty(0, np.int64)
    while pending_users.size:
        short = counts[pending_users] - np.bincount(have_users, minlength=n_users)[pending_users]
        draws = short + short // 2 + 4
        new_users = np.repeat(pending_users, draws)
        new_movies = np.minimum(np.searchsorted(cdf, rng.random(new_users.size)), n_movies - 1)
        users = np.concatenate([have_users, new_users])
        movies = np.concatenate([have_movies, new_movies])
        priority = np.concatenate([np.full(have_users.size, -1.0), rng.random(new_users.size)])
        # One row per (user, movie), the one with the lowest priority (a kept draw beats a new one) ...
        key = users * n_movies + movies
        order = np.lexsort((priority, key))
        first = np.ones(order.size, bool)
        first[1:] = key[order][1:] != key[order][:-1]
        order = order[first]
        # ... then, per user, the lowest priorities up to the user's count.
        order = order[np.lexsort((priority[order], users[order]))]
        users, movies = users[order], movies[order]
        seen = np.bincount(users, minlength=n_users)
        starts = np.cumsum(seen) - seen
        within = np.arange(users.size) - starts[users]
        keep = within < counts[users]
        users, movies = users[keep], movies[keep]
        done = np.bincount(users, minlength=n_users) == counts
        finished = done[users]
        kept_users.append(users[finished])
        kept_movies.append(movies[finished])
        have_users, have_movies = users[~finished], movies[~finished]
        pending_users = np.flatnonzero(~done & np.isin(np.arange(n_users), pending_users))
    users, movies = np.concatenate(kept_users), np.concatenate(kept_movies)
    order = np.lexsort((movies, users))
    return users[order], movies[order]


def _write_ratings(block: pl.DataFrame, f, csv: bool) -> None:
    if csv:
        # Half stars written as ml-32m writes them: 4.0, 3.5.
        block.with_columns(pl.col("rating").round(1)).write_csv(f, include_header=False, float_precision=1)
    else:
        line = pl.concat_str(
            [pl.col("userId"), pl.col("movieId"), pl.col("rating").cast(pl.Int64), pl.col("timestamp")], separator="::"
        )
        block.select(line).write_csv(f, include_header=False, quote_style="never")


def _write_movies(options: GenerateOptions, world: _World, path: Path, csv: bool) -> None:
    """Titles like ml-32m's ("Silent River, The (1987)"), genres '|'-separated; latin-1 for .dat."""
    rng = np.random.default_rng([options.seed, 2])
    n = options.n_movies
    # Release years lean recent, as the catalogue does: most movies are from the last few decades.
    years = np.clip(2023 - np.floor(rng.exponential(18.0, n)).astype(int), 1902, 2023)
    adjectives = rng.integers(0, len(ADJECTIVES), n)
    nouns = rng.integers(0, len(NOUNS), n)
    style = rng.random(n)
    genre_counts = rng.choice([0, 1, 2, 3], n, p=[0.01, 0.45, 0.34, 0.20])
    # Up to 3 distinct genres per movie, weighted, all at once: the top keys of log(weight) + Gumbel noise
    # are a weighted draw without replacement.
    keys = np.log(GENRE_WEIGHTS) + rng.gumbel(size=(n, len(GENRES)))
    top_genres = np.argsort(-keys, axis=1)[:, :3]
    lines = ["movieId,title,genres"] if csv else []
    for i in range(n):
        name = f"{ADJECTIVES[adjectives[i]]} {NOUNS[nouns[i]]}"
        if style[i] < 0.15:
            name = f"{name}, The"  # MovieLens moves a leading article to the end
        elif style[i] < 0.18:
            name = f"{name}, Part {1 + i % 3}"
        elif style[i] < 0.19:
            name = f'"{name}"'
        elif style[i] > 0.93:
            name = f"{name} {2 + i % 4}"  # a sequel
        title = f"{name} ({years[i]})"
        picked = sorted(top_genres[i, : genre_counts[i]])
        genres = "|".join(_genre_name(GENRES[g], csv) for g in picked) or "(no genres listed)"
        movie_id = world.movie_ids[i]
        if csv:
            quoted = '"' + title.replace('"', '""') + '"' if ("," in title or '"' in title) else title
            lines.append(f"{movie_id},{quoted},{genres}")
        else:
            lines.append(f"{movie_id}::{title}::{genres}")
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8" if csv else "latin-1"))


def _genre_name(genre: str, csv: bool) -> str:
    return genre if csv or genre != "Children" else "Children's"  # ml-1m's spelling


def _write_users(options: GenerateOptions, world: _World, path: Path) -> None:
    """users.dat: UserID::Gender::Age::Occupation::Zip-code, with ml-1m's codes and proportions."""
    rng = np.random.default_rng([options.seed, 3])
    n = options.n_users
    frame = pl.DataFrame(
        {
            "user": np.arange(1, n + 1),
            "gender": np.where(rng.random(n) < 0.717, "M", "F"),
            "age": rng.choice(AGES, n, p=AGE_SHARES / AGE_SHARES.sum()),
            "occupation": rng.integers(0, 21, n),
            "zip": rng.integers(0, 100_000, n),
        }
    )
    line = pl.concat_str(
        [
            pl.col("user"),
            pl.col("gender"),
            pl.col("age"),
            pl.col("occupation"),
            pl.col("zip").cast(pl.String).str.zfill(5),
        ],
        separator="::",
    )
    frame.select(line).write_csv(path, include_header=False, quote_style="never")
