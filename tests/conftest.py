"""Shared fixtures: tiny hand-made MovieLens folders in every layout, and the real copies in ../shared/data."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pytest

from etl.build import EtlOptions, build_warehouse

SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"

# One thread, named (trainer/threads.py takes OMP_NUM_THREADS as --threads), for the tiny models trained here, in
# this process and the commands it starts. Left to choose, every command a test invokes would first measure the
# other processes' load over a window of a tenth of a second, waiting it out since the command has just started;
# and torch would start on a thread per core. Set before torch is imported; tests of the choice itself unset it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The 19 genres of ml-100k's u.genre, in flag order.
GENRES_100K = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]

# (movie_id, title, genres): a title with é (latin-1 0xE9 in the official files), one with a comma and
# quotes (CSV quoting), one with no genres.
MOVIES: list[tuple[int, str, list[str]]] = [
    (1, "Toy Story (1995)", ["Animation", "Children's", "Comedy"]),
    (2, "Jumanji (1995)", ["Adventure", "Children's", "Fantasy"]),
    (3, "Misérables, Les (1995)", ["Drama", "Musical"]),
    (4, 'Dr. "Strangelove", or How I Learned (1964)', ["Comedy", "War"]),
    (5, "Heat (1995)", []),
]
# (user_id, gender, age, occupation code): ml-1m's codes; ml-100k's u.user gets the occupation's name.
# User 5 rated nothing: with a users file the users table lists them, user_index does not.
USERS: list[tuple[int, str, int, int]] = [
    (1, "F", 1, 10),
    (2, "M", 56, 16),
    (3, "M", 25, 15),
    (4, "F", 35, 7),
    (5, "M", 18, 4),
]
# (user_id, movie_id, rating, epoch seconds); ratings are whole stars, valid on every scale.
RATINGS: list[tuple[int, int, float, int]] = [
    (1, 1, 5, 978300760),
    (1, 3, 3, 978302109),
    (1, 4, 4, 978301968),
    (2, 1, 4, 978298413),
    (2, 2, 2, 978299000),
    (2, 5, 1, 978299620),
    (3, 3, 5, 978297039),
    (3, 4, 3, 978298709),
    (3, 1, 2, 978297867),
    (4, 2, 4, 978294008),
    (4, 5, 5, 978294282),
    (4, 3, 1, 978294200),
]
OCCUPATION_NAMES = {10: "K-12 student", 16: "self-employed", 15: "scientist", 7: "executive/managerial", 4: "student"}


def _stars(rating: float, layout: str) -> str:
    """'4', '4.5' as in the .dat and u.data files; '4.0' as in the CSV files."""
    return f"{float(rating):.1f}" if layout == "ml-latest" else f"{rating:g}"


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if ("," in text or '"' in text) else text


def movielens_lines(
    layout: str,
    ratings: Sequence[tuple] = RATINGS,
    movies: Sequence[tuple] = MOVIES,
    users: Sequence[tuple] = USERS,
) -> dict[str, list[str]]:
    """The lines (without line endings) of each file of ``layout``, keyed by file name."""
    out: dict[str, list[str]] = {}
    if layout == "ml-100k":
        out["u.data"] = [f"{u}\t{m}\t{_stars(r, layout)}\t{t}" for u, m, r, t in ratings]
        out["u.item"] = [
            f"{m}|{title}|01-Jan-1995||http://us.imdb.com/M/title-exact?x|"
            + "|".join("1" if g in genres else "0" for g in GENRES_100K)
            for m, title, genres in movies
        ]
        out["u.user"] = [f"{u}|{age}|{g}|{OCCUPATION_NAMES.get(occ, 'other')}|0{u}123" for u, g, age, occ in users]
        out["u.genre"] = [f"{g}|{i}" for i, g in enumerate(GENRES_100K)] + [""]  # trailing blank, as the original
    elif layout in ("ml-1m", "ml-10m"):
        out["ratings.dat"] = [f"{u}::{m}::{_stars(r, layout)}::{t}" for u, m, r, t in ratings]
        out["movies.dat"] = [f"{m}::{title}::{'|'.join(genres) or '(no genres listed)'}" for m, title, genres in movies]
        if layout == "ml-1m":
            out["users.dat"] = [f"{u}::{g}::{age}::{occ}::4806{u}" for u, g, age, occ in users]
    else:
        out["ratings.csv"] = ["userId,movieId,rating,timestamp"] + [
            f"{u},{m},{_stars(r, layout)},{t}" for u, m, r, t in ratings
        ]
        out["movies.csv"] = ["movieId,title,genres"] + [
            f"{m},{_csv_field(title)},{'|'.join(genres) or '(no genres listed)'}" for m, title, genres in movies
        ]
    return out


WHOLLY_SLOW = "\npytestmark = pytest.mark.slow"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under `-m 'not slow'` (make test-fast), a module marked slow as a whole is not even imported: every worker
    would pay for its imports (hypothesis, child-process helpers) and run none of its tests."""
    if collection_path.suffix == ".py" and config.getoption("markexpr") == "not slow":
        return WHOLLY_SLOW in collection_path.read_text() or None
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Each test starts with one torch thread, the number the command line chooses for the tiny models trained
    here (trainer/threads.py: a small training step). In-process runs would otherwise get torch's default, a
    thread per core, and wait on every operation for a core that another process keeps busy. Set before the
    test's fixtures, module- and session-scoped ones included (they train too), and again for every test,
    since a test may set a number of its own."""
    torch = sys.modules.get("torch")  # not imported here: the ETL's tests never load it
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def typer_commands_built_once() -> Iterator[None]:
    """typer's CliRunner turns the app into its click command again on every invoke, reading every command's
    options anew; the installed commands do it once per process. Hundreds of tests invoke the CLI, so the
    command is built once per app here and reused (it holds no state between invocations)."""
    import typer.testing

    original = typer.testing._get_command
    built: dict[int, tuple[object, object]] = {}  # id(app) -> (app, command); the app kept so its id stays its own

    def get_command(app):  # type: ignore[no-untyped-def]
        if id(app) not in built:
            built[id(app)] = (app, original(app))
        return built[id(app)][1]

    typer.testing._get_command = get_command
    yield
    typer.testing._get_command = original


@pytest.fixture(scope="session")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """A function that writes a small MovieLens folder of a layout (ml-100k, ml-1m, ml-10m, ml-latest).

    Each call makes a new folder named after the layout, in a fresh temporary folder (the warehouse of
    etl_build goes beside it). ``ratings``/``movies``/``users`` replace the default rows. Files are latin-1
    with LF endings, except ml-latest's (UTF-8, CRLF, as in the official zips). Session-scoped, so that
    module-scoped fixtures can build once and share.
    """

    def write(
        layout: str,
        *,
        ratings: Sequence[tuple] = RATINGS,
        movies: Sequence[tuple] = MOVIES,
        users: Sequence[tuple] = USERS,
        encoding: str | None = None,
        newline: str | None = None,
    ) -> Path:
        folder = tmp_path_factory.mktemp("movielens") / layout
        folder.mkdir()
        csv = layout == "ml-latest"
        for file, lines in movielens_lines(layout, ratings, movies, users).items():
            content = "".join(line + (newline or ("\r\n" if csv else "\n")) for line in lines)
            (folder / file).write_bytes(content.encode(encoding or ("utf-8" if csv else "latin-1")))
        return folder

    return write


@pytest.fixture(scope="session")
def etl_build() -> Callable[..., Path]:
    """A function running the ETL in-process on a folder; returns the warehouse (default: beside the folder)."""

    def run(folder: Path, warehouse: Path | None = None, **options: object) -> Path:
        warehouse = warehouse or folder.parent / "warehouse.duckdb"
        build_warehouse(folder, warehouse, EtlOptions(**options))
        return warehouse

    return run


@pytest.fixture(scope="session")
def ml1m_built(movielens: Callable[..., Path]) -> tuple[Path, Path]:
    """The default small ml-1m folder and its warehouse, built once per session, for the tests whose previous
    warehouse it is. Neither is written to: take a copy of the warehouse (`ml1m_warehouse`), and a folder of
    your own (``movielens("ml-1m")``, the same files) to change or build from."""
    folder = movielens("ml-1m")
    warehouse = folder.parent / "warehouse.duckdb"
    build_warehouse(folder, warehouse)
    return folder, warehouse


@pytest.fixture
def ml1m_warehouse(ml1m_built: tuple[Path, Path]) -> Callable[[Path], Path]:
    """A function copying the default ml-1m warehouse to a path: what building ``movielens("ml-1m")`` there
    would give (the build records its input folder's paths, the session's own here), without the build."""

    def copy(path: Path) -> Path:
        shutil.copyfile(ml1m_built[1], path)
        return path

    return copy


@pytest.fixture(scope="session")
def shared_data() -> Callable[[str], Path]:
    """A function returning ../shared/data/<name>, or skipping the test when that copy is absent."""

    def locate(name: str) -> Path:
        folder = SHARED_DATA / name
        if not folder.is_dir():
            pytest.skip(f"{folder} is missing (real MovieLens copies live in ../shared/data)")
        return folder

    return locate


@pytest.fixture(scope="session")
def query() -> Iterator[Callable[..., list[tuple]]]:
    """A function running one SQL query on a warehouse file, read-only, and returning all rows.

    The file is attached to one in-memory connection for the query and detached after it (ten times
    cheaper than a connection of its own), so that nothing holds it open between queries.
    """
    con = duckdb.connect()

    def run(warehouse: Path, sql: str, params: Sequence[object] | None = None) -> list[tuple]:
        con.execute("ATTACH ? AS warehouse (READ_ONLY)", [str(warehouse)])
        try:
            con.execute("USE warehouse")
            return con.execute(sql, params).fetchall()
        finally:
            con.execute("USE memory")
            con.execute("DETACH warehouse")

    yield run
    con.close()


# The child of `kill_at`: `stop()` suspends it with SIGSTOP; `stop_around(module, name, when)` makes the
# function ``name`` of ``module`` call stop() "before" or "after" it runs; `stop_at_insert(table)` stops a
# warehouse writer as it first inserts into ``table``; then the command line runs.
_KILL_PRELUDE = """
import importlib, os, signal, sys

def stop():
    os.kill(os.getpid(), signal.SIGSTOP)

def stop_around(module, name, when):
    module = importlib.import_module(module)
    original = getattr(module, name)

    def patched(*args, **kwargs):
        if when == "before":
            stop()
        result = original(*args, **kwargs)
        if when == "after":
            stop()
        return result

    setattr(module, name, patched)

def stop_at_insert(table):
    # Stop when a writer of the warehouse (warehouse/swap.py's connections) first inserts into the table:
    # mid-write, inside the new version of the file.
    import duckdb
    import warehouse.swap as swap

    class Connection:
        def __init__(self, con):
            self.con = con

        def __getattr__(self, name):
            return getattr(self.con, name)

        def execute(self, sql, *args):
            if sql.startswith(f"INSERT INTO {table}"):
                stop()
            return self.con.execute(sql, *args)

    class DuckDB:
        def __getattr__(self, name):
            return getattr(duckdb, name)

        def connect(self, *args, **kwargs):
            return Connection(duckdb.connect(*args, **kwargs))

    swap.duckdb = DuckDB()
"""
_KILL_RUN = """
program, *args = sys.argv[1:]
importlib.import_module(f"{program}.cli").app(args=args, prog_name=program)
"""


@pytest.fixture(scope="session")
def kill_at() -> Callable[[str, list[str]], str]:
    """A function running a command (``["etl", "build", ...]``, ``["trainer", "run", ...]``) in a child
    process that stops itself at a named point, where it is then killed with SIGKILL; returns its output.

    ``patch`` is Python run in the child before the command, calling ``stop_around(module, function,
    "before" | "after")``, ``stop_at_insert(table)`` or ``stop()``. The child stops (SIGSTOP), the parent sees it stopped (waitpid
    with WUNTRACED), then kills it: the kill lands exactly at that point, with no timing guesswork and no
    hook in the product.
    """

    def run(patch: str, command: list[str], timeout: float = 120.0) -> str:
        with tempfile.TemporaryFile() as output:
            child = subprocess.Popen(
                [sys.executable, "-c", _KILL_PRELUDE + patch + _KILL_RUN, *command],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + timeout
            while True:
                pid, status = os.waitpid(child.pid, os.WUNTRACED | os.WNOHANG)
                if pid and os.WIFSTOPPED(status):
                    break
                if pid or time.monotonic() > deadline:
                    child.kill()
                    child.wait()
                    output.seek(0)
                    pytest.fail(f"{command} never reached its stop point:\n{output.read().decode(errors='replace')}")
                time.sleep(0.02)
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
            child.returncode = -signal.SIGKILL  # reaped here, not by Popen
            output.seek(0)
            return output.read().decode(errors="replace")

    return run


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """A function mounting a tmpfs of ``size`` bytes under tmp_path (a disk that fills up, or with
    ``read_only=True`` after ``fill`` has run, a read-only one); skips where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(size: int, *, fill: Callable[[Path], None] = lambda point: None, read_only: bool = False) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (root only): {done.stderr.strip()}")
        mounted.append(point)
        fill(point)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "--lazy", str(point)], check=True)


# A small warehouse for trainer and warehouse tests: generated ml-1m-layout files with a low-rank taste structure.


def write_movielens_1m(
    folder: Path, n_users: int = 60, n_movies: int = 40, density: float = 0.35, seed: int = 7
) -> Path:
    """ratings.dat / movies.dat / users.dat whose ratings follow 2 latent factors plus noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    taste, appeal = rng.normal(size=(n_users, 2)), rng.normal(size=(n_movies, 2))
    scores = np.clip(np.rint(3.2 + taste @ appeal.T + rng.normal(scale=0.4, size=(n_users, n_movies))), 1, 5)
    lines = []
    for user in range(n_users):
        rated = rng.random(n_movies) < density
        rated[rng.integers(n_movies)] = True  # every user rates something
        for movie in np.flatnonzero(rated):
            lines.append(f"{user + 1}::{movie + 1}::{int(scores[user, movie])}::{978300000 + len(lines)}")
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n")
    (folder / "movies.dat").write_bytes(
        "\n".join(
            f"{m + 1}::Movie {m + 1} ({1990 + m % 10})::{'Comedy' if m % 2 else 'Drama|War'}" for m in range(n_movies)
        ).encode("latin-1")
        + b"\n"
    )
    (folder / "users.dat").write_text(
        "\n".join(f"{u + 1}::{'MF'[u % 2]}::25::{u % 21}::0{u:04d}" for u in range(n_users)) + "\n"
    )
    return folder


@pytest.fixture(scope="session")
def small_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse built once per session; tests that write to it take a copy (see `warehouse`)."""
    root = tmp_path_factory.mktemp("small")
    folder = write_movielens_1m(root / "ml-small")
    path = root / "warehouse.duckdb"
    build_warehouse(folder, path, EtlOptions(validation_fraction=0.1))
    return path


@pytest.fixture
def warehouse(small_warehouse: Path, tmp_path: Path) -> Path:
    """A private copy of the small warehouse, so each test's runs start from the same state."""
    copy = tmp_path / "warehouse.duckdb"
    copy.write_bytes(small_warehouse.read_bytes())
    return copy


@pytest.fixture(scope="session")
def make_movielens_1m():
    """The generator above, for tests that need a second, different data set."""
    return write_movielens_1m


@pytest.fixture(scope="session")
def corrupt_test_ratings() -> Callable[[Path], None]:
    """A function flipping every test rating of split random (r -> 6 - r) wherever a warehouse holds it: for
    the leak tests, where nothing chosen before the final score may change."""

    def flip(warehouse: Path) -> None:
        con = duckdb.connect(str(warehouse))
        con.execute("UPDATE rating_splits SET rating = 6 - rating WHERE random = 'test'")
        for table in ("user_matrix", "movie_matrix"):
            con.execute(f"UPDATE {table} SET test_rating = list_transform(test_rating, lambda r: 6 - r)")
        con.close()

    return flip
