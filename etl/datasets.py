"""The MovieLens data sets the ETL can download, where from and their digests; the layouts `etl generate` writes.

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

# SHA-256 of each official zip at BASE_URL, checked after download; the .md5 published beside it is a second check.
# ml-latest has none: GroupLens republishes it from time to time, so only its published MD5 can check it.
OFFICIAL_SHA256: dict[str, str] = {
    "ml-100k": "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
    "ml-1m": "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
    "ml-10m": "813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862",
    "ml-20m": "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
    "ml-25m": "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
    "ml-32m": "e4a68655d7386b8f95f2f2424b2ff975dfdd15ffd59e0d864a14dca43e99d6ee",
    "ml-latest-small": "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
}

# `etl generate`'s layouts: csv as ml-32m (ratings.csv, movies.csv), dat as ml-1m (ratings.dat, movies.dat, users.dat).
SyntheticLayout = Literal["csv", "dat"]
SYNTHETIC_LAYOUTS: tuple[str, ...] = get_args(SyntheticLayout)
