"""Recognise which MovieLens layout a folder holds, and how each of its files is encoded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from etl.errors import EtlError


@dataclass(frozen=True)
class RatingScale:
    minimum: float
    maximum: float
    step: float


@dataclass(frozen=True)
class Layout:
    """A MovieLens file layout: which files, how they are split, which SQL staging models read them."""

    name: str  # ml-100k | ml-1m | ml-10m | ml-latest (also ml-20m, ml-25m, ml-32m)
    staging: str  # the folder under sql/staging/ whose models read the movies (and users) files
    files: dict[str, Path]  # role (ratings, movies, users, genres) -> path
    ratings_delimiter: str
    scale: RatingScale

    @property
    def has_users_file(self) -> bool:
        return "users" in self.files


WHOLE_STARS = RatingScale(1.0, 5.0, 1.0)
HALF_STARS = RatingScale(0.5, 5.0, 0.5)

# What the first file found says about the folder: layout name, staging folder, the files it needs
# (role -> name), the optional ones, the ratings delimiter, and the scale. ml-10m is the .dat layout
# without users.dat, and rates in half stars.
_LAYOUTS = (
    ("ml-100k", "ml100k", {"ratings": "u.data", "movies": "u.item", "users": "u.user", "genres": "u.genre"}, "\t"),
    ("ml-1m", "dat", {"ratings": "ratings.dat", "movies": "movies.dat"}, "::"),
    ("ml-latest", "csv", {"ratings": "ratings.csv", "movies": "movies.csv"}, ","),
)


def detect_layout(folder: Path) -> Layout:
    """Return the layout of ``folder``, or raise EtlError saying what is missing."""
    if not folder.is_dir():
        raise EtlError(f"{folder}: no such folder")
    for name, staging, needed, delimiter in _LAYOUTS:
        if not (folder / needed["ratings"]).exists():
            continue
        files = {role: folder / file for role, file in needed.items()}
        missing = [path.name for path in files.values() if not path.is_file()]
        if missing:
            raise EtlError(
                f"{folder}: looks like the {name} layout ({needed['ratings']} is there) but "
                f"{', '.join(missing)} is missing; that layout needs {', '.join(needed.values())}"
            )
        scale = WHOLE_STARS if name == "ml-100k" else HALF_STARS
        if name == "ml-1m":
            if (folder / "users.dat").is_file():
                files["users"] = folder / "users.dat"
                scale = WHOLE_STARS
            else:
                name = "ml-10m"
        return Layout(name, staging, files, delimiter, scale)
    raise EtlError(
        f"{folder}: not a MovieLens folder: found none of u.data (ml-100k), ratings.dat (ml-1m, ml-10m) "
        f"or ratings.csv (ml-latest, ml-20m, ml-25m, ml-32m)"
    )


def detect_newline(path: Path) -> str:
    r"""The line ending, spelt as DuckDB's read_csv wants it: r'\r\n' when the first lines end so
    (the official ml-latest-small does), else r'\n'."""
    with path.open("rb") as f:
        head = f.read(1 << 16)
    return r"\r\n" if b"\r\n" in head else r"\n"


def detect_encoding(path: Path) -> str:
    """'utf-8' for a file that decodes as UTF-8 (circulating re-encoded copies), else 'latin-1'.

    The official files are latin-1; a latin-1 file with accented titles is never valid UTF-8, so
    this cannot mistake one for the other. Only the small text files (movies, users) are checked.
    """
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"
