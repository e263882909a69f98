"""Fixtures of the SQL runner's tests: a copy of sql/etl to put bugs in, and a previous warehouse that a failing
build must leave untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from etl import models as models_module
from etl.build import build_warehouse
from warehouse.sql import ETL_DIR


@pytest.fixture
def sql_copy(tmp_path, monkeypatch) -> Path:
    """A copy of sql/etl that the build reads instead: tests add a bug to one of its models."""
    copy = tmp_path / "sql" / "etl"
    shutil.copytree(ETL_DIR, copy)
    monkeypatch.setattr(models_module, "ETL_DIR", copy)
    return copy


@pytest.fixture(scope="module")
def built(movielens, tmp_path_factory) -> tuple[Path, Path]:
    """An ml-1m folder and the warehouse built from it with the real SQL, once for the module."""
    folder = movielens("ml-1m")
    warehouse = tmp_path_factory.mktemp("built") / "warehouse.duckdb"
    build_warehouse(folder, warehouse)
    return folder, warehouse


@pytest.fixture
def previous(built, tmp_path) -> tuple[Path, Path]:
    """The folder, and a copy of that warehouse: the previous one the next build must leave untouched."""
    folder, warehouse = built
    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(warehouse, copy)
    return folder, copy
