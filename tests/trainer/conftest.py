"""Fixtures of the trainer's tests: a run's settings on the small warehouse, and runs trained on it once a session
for the tests that refit, fine-tune, blend or refuse them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from trainer.config import TrainConfig, resolve
from trainer.train import RunSummary, run


def run_settings(warehouse: Path, tmp_path: Path, **overrides: Any) -> TrainConfig:
    """A run of ``overrides`` on ``warehouse``, its folder under ``tmp_path``, published whatever its audit says (the
    small warehouse's tiny runs often fail it)."""
    return resolve(
        {"warehouse": str(warehouse), "runs_dir": str(tmp_path / "runs"), "publish_anyway": True, **overrides}
    )


@pytest.fixture(scope="session")
def settings() -> Callable[..., TrainConfig]:
    """run_settings above, for the tests."""
    return run_settings


@pytest.fixture(scope="session")
def _trained_once(small_warehouse, tmp_path_factory) -> Callable[[dict[str, Any]], tuple[Path, RunSummary]]:
    """A function giving a warehouse that holds a run of these settings, and that run: each trained the first time
    it is asked for, on a copy of the small warehouse of its own."""
    trained: dict[str, tuple[Path, RunSummary]] = {}

    def train(overrides: dict[str, Any]) -> tuple[Path, RunSummary]:
        key = repr(sorted(overrides.items()))
        if key not in trained:
            folder = tmp_path_factory.mktemp("trained")
            warehouse = folder / "warehouse.duckdb"
            shutil.copyfile(small_warehouse, warehouse)
            trained[key] = warehouse, run(run_settings(warehouse, folder, **overrides))
        return trained[key]

    return train


@pytest.fixture
def trained_warehouse(_trained_once, tmp_path) -> Callable[[dict[str, Any]], tuple[Path, RunSummary]]:
    """A function giving this test its copy of a warehouse that holds a run of these settings, and that run: trained
    once a session, so its folder (its checkpoint) is shared, to read and never to write."""

    def copy(overrides: dict[str, Any]) -> tuple[Path, RunSummary]:
        warehouse, summary = _trained_once(overrides)
        mine = tmp_path / "warehouse.duckdb"
        shutil.copyfile(warehouse, mine)
        return mine, summary

    return copy


TimedRating = tuple[int, int, float, int, str]  # user (id and index), movie (likewise), stars, seconds, part


@pytest.fixture(scope="session")
def timed_ratings() -> Callable[[list[TimedRating]], duckdb.DuckDBPyConnection]:
    """A function making the tables a warehouse times its ratings in (split_ratings, ratings) by hand, in memory:
    split random's parts, for the models that read when ratings were made."""

    def make(ratings: list[TimedRating]) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        con.execute("CREATE TABLE ratings (user_id INTEGER, movie_id INTEGER, rated_at TIMESTAMP)")
        con.execute(
            "CREATE TABLE split_ratings (split VARCHAR, user_id INTEGER, movie_id INTEGER, user_idx INTEGER, "
            "movie_idx INTEGER, rating FLOAT, part VARCHAR)"
        )
        for user, movie, stars, seconds, part in ratings:
            con.execute(
                "INSERT INTO ratings VALUES (?, ?, make_timestamp(?::BIGINT * 1000000))", [user, movie, seconds]
            )
            con.execute(
                "INSERT INTO split_ratings VALUES ('random', ?, ?, ?, ?, ?, ?)", [user, movie, user, movie, stars, part]
            )
        return con

    return make
