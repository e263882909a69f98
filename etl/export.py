"""The warehouse's feature tables as Parquet files, for engines and machines that cannot open a .duckdb file.

`etl export` writes one folder per table: the per-split tables hive-partitioned by split
(`user_matrix/split=random/data_0.parquet`), so Spark SQL, Trino or a cluster of trainers read just the
split they need; the small tables as one file each. `open_features` gives the trainer a DuckDB
connection whose views over those files carry the warehouse's table names, so it reads Parquet exactly
as it reads the warehouse.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from etl import warehouse as wh
from etl.errors import EtlError

# Table -> its partition column (None: one file). What the trainer reads, plus movies for the titles.
TABLES: dict[str, str | None] = {
    "dataset": None,
    "splits": None,
    "user_index": None,
    "movie_index": None,
    "movies": None,
    "split_ratings": "split",
    "user_matrix": "split",
    "movie_matrix": "split",
}


def export_features(warehouse: Path, output: Path, lock_wait_seconds: float = wh.DEFAULT_LOCK_WAIT_SECONDS) -> dict[str, int]:
    """Write TABLES of ``warehouse`` under ``output`` (replaced whole, only once every file is written).

    Returns the rows written per table.
    """
    if not warehouse.exists():
        raise EtlError(f"{warehouse}: no warehouse here. Build it first: etl build --warehouse {warehouse}")
    output = output.resolve()
    building = output.with_name(f"{output.name}.partial-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    con = wh.connect(warehouse, read_only=True, lock_wait_seconds=lock_wait_seconds)
    rows = {}
    try:
        present = con.execute(
            "SELECT table_name FROM duckdb_tables() UNION ALL SELECT view_name FROM duckdb_views() WHERE NOT internal"
        ).fetchall()
        missing = set(TABLES) - {name for (name,) in present}
        if missing:
            raise EtlError(f"{warehouse} was not built by the ETL (no {', '.join(sorted(missing))})")
        for table, partition in TABLES.items():
            # Table and column names come from TABLES, never from input.
            if partition:
                con.execute(f"COPY {table} TO ? (FORMAT parquet, PARTITION_BY ({partition}))", [str(building / table)])
            else:
                con.execute(f"COPY {table} TO ? (FORMAT parquet)", [str(building / f"{table}.parquet")])
            rows[table] = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    finally:
        con.close()
    # Swap in: the old folder (if any) is moved aside first, so a reader never sees a half-written one.
    old = output.with_name(f"{output.name}.old-{os.getpid()}")
    if output.exists():
        os.replace(output, old)
    os.replace(building, output)
    shutil.rmtree(old, ignore_errors=True)
    return rows


def open_features(folder: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with a view per exported table, named as in the warehouse."""
    if not folder.is_dir():
        raise EtlError(f"{folder}: no such folder of Parquet features. Write it with: etl export --output {folder}")
    con = duckdb.connect()
    for table, partition in TABLES.items():
        path = folder / table if partition else folder / f"{table}.parquet"
        if not path.exists():
            con.close()
            raise EtlError(f"{folder}: {path.name} is missing; this is not a folder written by `etl export`")
        if partition:
            source = f"read_parquet({_quote(str(path / '**' / '*.parquet'))}, hive_partitioning = true, hive_types = {{'{partition}': VARCHAR}})"
        else:
            source = f"read_parquet({_quote(str(path))})"
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM {source}")
    return con


def _quote(text: str) -> str:
    """A SQL string literal (views cannot take parameters)."""
    return "'" + text.replace("'", "''") + "'"
