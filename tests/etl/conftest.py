"""Fixtures of the SQL runner's tests: a copy of sql/etl to put bugs in, and a previous warehouse that a failing
build must leave untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from etl import models as models_module
from warehouse.sql import ETL_DIR


@pytest.fixture
def sql_copy(tmp_path, monkeypatch) -> Path:
    """A copy of sql/etl that the build reads instead: tests add a bug to one of its models."""
    copy = tmp_path / "sql" / "etl"
    shutil.copytree(ETL_DIR, copy)
    monkeypatch.setattr(models_module, "ETL_DIR", copy)
    return copy


@pytest.fixture
def previous(ml1m_built, tmp_path) -> tuple[Path, Path]:
    """An ml-1m folder, and a copy of the warehouse built from it with the real SQL (once per session): the
    previous one the next build must leave untouched."""
    folder, warehouse = ml1m_built
    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(warehouse, copy)
    return folder, copy
