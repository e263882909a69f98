"""Opening the DuckDB warehouse: a bounded wait for a lock held by another process, then a plain message."""

from __future__ import annotations

import re
import time
from pathlib import Path

import duckdb

from warehouse.errors import WarehouseError

DEFAULT_LOCK_WAIT_SECONDS = 30.0


def is_lock_error(error: Exception) -> bool:
    text = str(error)
    return isinstance(error, duckdb.IOException) and ("Could not set lock" in text or "Conflicting lock" in text)


def lock_holder(error: Exception) -> str:
    """'PID 1234' (or 'another process') from DuckDB's lock-conflict message."""
    match = re.search(r"PID (\d+)", str(error))
    return f"PID {match.group(1)}" if match else "another process"


def locked(path: Path, holder: str, waited_seconds: float) -> WarehouseError:
    """The plain message for a warehouse another process holds open read-write."""
    return WarehouseError(
        f"{path} is locked by {holder} (waited {waited_seconds:.0f} s). "
        "DuckDB allows one writer or many readers at a time: close the other session "
        "(DuckDB CLI, notebook, trainer) and try again."
    )


def connect(
    path: Path, *, read_only: bool, lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
) -> duckdb.DuckDBPyConnection:
    """Open ``path``, retrying while another process holds a conflicting lock.

    DuckDB lets one process write a file or many read it, never both; a batch job that meets an
    analyst's open session should wait a little, then say who holds the file rather than crash.
    """
    deadline = time.monotonic() + lock_wait_seconds
    delay = 0.1
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as error:
            if not is_lock_error(error):
                raise WarehouseError(f"{path}: cannot open the warehouse: {error}") from error
            if time.monotonic() >= deadline:
                raise locked(path, lock_holder(error), lock_wait_seconds) from error
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def missing_tables(con: duckdb.DuckDBPyConnection, names: tuple[str, ...]) -> set[str]:
    """Which of the tables ``names`` the database lacks."""
    return set(names) - {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}


def open_for_reading(path: Path, lock_wait_seconds: float, needs: tuple[str, ...] = ()) -> duckdb.DuckDBPyConnection:
    """A read-only connection to a warehouse the ETL built (holding the tables ``needs``)."""
    if not path.exists():
        raise WarehouseError(f"{path}: no warehouse here. Build it first: make etl (or: etl build --warehouse {path})")
    con = connect(path, read_only=True, lock_wait_seconds=lock_wait_seconds)
    missing = missing_tables(con, needs)
    if missing:
        con.close()
        raise WarehouseError(f"{path} was not built by the ETL (no {', '.join(sorted(missing))}); run make etl first")
    return con
