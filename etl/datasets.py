"""The MovieLens data sets the ETL can download, and where from; the layouts `etl generate` writes.

Apart from etl.download so that `etl build` on a local folder does not import the network code.
"""

from __future__ import annotations

from typing import Literal, get_args

BASE_URL = "https://files.grouplens.org/datasets/movielens"

KNOWN_DATASETS: tuple[str, ...] = (
    "ml-100k",
    "ml-1m",
    "ml-10m",
    "ml-20m",
    "ml-25m",
    "ml-32m",
    "ml-latest-small",
    "ml-latest",
)

# `etl generate`'s layouts: csv as ml-32m (ratings.csv, movies.csv), dat as ml-1m (ratings.dat, movies.dat, users.dat).
SyntheticLayout = Literal["csv", "dat"]
SYNTHETIC_LAYOUTS: tuple[str, ...] = get_args(SyntheticLayout)
