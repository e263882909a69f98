"""Recognise which MovieLens layout a folder holds, and how each of its files is encoded."""

from __future__ import annotations

import re
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
    r"""The line ending, spelt as DuckDB's read_csv wants it: r'\r\n' when the file's lines end so (the
    official ml-latest-small does), else r'\n'.

    The whole file is checked, not a sample: DuckDB's reader does not keep to the ending it is given (a lone
    CR breaks a line in either mode, and with r'\r\n' the text after a lone CR can vanish), so a file whose
    endings are mixed would load with shifted line numbers or lose lines. It is refused instead, naming the
    first line that differs. Counting is cheap (a few ms for ml-1m's 24 MB), the search only runs on a failure.
    """
    crlf = None  # the convention, from the first line ending
    offset = 0  # bytes before the current chunk
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            if chunk.endswith(b"\r"):
                chunk += f.read(1)  # keep a CR LF pair in one chunk
            if crlf is None and b"\n" in chunk:
                crlf = chunk[chunk.index(b"\n") - 1 : chunk.index(b"\n")] == b"\r"
            if crlf:
                consistent = chunk.count(b"\r") == chunk.count(b"\n") == chunk.count(b"\r\n")
            else:
                consistent = b"\r" not in chunk  # one memchr: the common case costs next to nothing
            if not consistent:
                odd = _ODD_ENDING[bool(crlf)].search(chunk)
                assert odd is not None, "a chunk that is not consistent holds an odd ending"
                convention = "CR LF" if crlf else "LF"
                found = "a lone CR" if odd.group() == b"\r" else ("an LF ending" if crlf else "a CR LF ending")
                raise EtlError(
                    f"{path}, line {_line_at(path, offset + odd.start())}: {found} where the file's "
                    f"lines end with {convention} (mixed line endings are not read reliably); convert "
                    "the file to one convention"
                )
            offset += len(chunk)
    return r"\r\n" if crlf else r"\n"


def _line_at(path: Path, offset: int) -> int:
    """The line number of the byte at ``offset`` (read again only when an error needs it)."""
    with path.open("rb") as f:
        return f.read(offset).count(b"\n") + 1


# The first line ending that breaks the file's convention: for LF, any CR; for CR LF, a lone CR or a lone LF.
_ODD_ENDING = {False: re.compile(rb"\r\n?"), True: re.compile(rb"\r(?!\n)|(?<!\r)\n")}


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


# Bytes 0x80-0x9F are C1 control codes in latin-1, never text: DuckDB's latin-1 reader refuses a whole file
# holding one ("File is not latin-1 encoded", naming no line). A file with such a byte is in another
# encoding (Windows-1252 curly quotes, say) or holds binary junk.
_LATIN1_TEXT = bytes(b for b in range(256) if not 0x80 <= b <= 0x9F)


def check_latin1_text(path: Path) -> None:
    """Raise EtlError naming the line of the first byte in ``path`` that DuckDB cannot read as latin-1."""
    offset = 0  # bytes before the current chunk
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            # isascii() first: it is ten times faster, and the ratings files are plain ASCII.
            unreadable = b"" if chunk.isascii() else chunk.translate(None, _LATIN1_TEXT)
            if unreadable:
                at = min(chunk.find(bytes([byte])) for byte in set(unreadable))
                raise EtlError(
                    f"{path}, line {_line_at(path, offset + at)}: byte 0x{chunk[at]:02X} cannot be read as latin-1 "
                    "text (bytes 0x80 to 0x9F are not characters there): the file is in another encoding, or damaged"
                )
            offset += len(chunk)
