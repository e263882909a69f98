"""A small warehouse for trainer tests: generated ml-1m-layout files with a low-rank taste structure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from etl.build import EtlOptions, build_warehouse


def write_movielens_1m(folder: Path, n_users: int = 60, n_movies: int = 40, density: float = 0.35, seed: int = 7) -> Path:
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
        "\n".join(f"{m + 1}::Movie {m + 1} ({1990 + m % 10})::{'Comedy' if m % 2 else 'Drama|War'}"
                  for m in range(n_movies)).encode("latin-1") + b"\n"
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
