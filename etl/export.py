"""The warehouse's feature tables as Parquet files, for engines and machines that cannot open a .duckdb file.

`etl export` writes one folder per table: the per-split tables hive-partitioned by split
(`user_matrix/split=random/data_0.parquet`), so Spark SQL, Trino or a cluster of trainers read just the
split they need; the small tables as one file each. The trainer reads them back through
warehouse.features.open_features.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from etl.errors import EtlError
from warehouse.connect import DEFAULT_LOCK_WAIT_SECONDS, connect
from warehouse.features import TABLES


def export_features(
    warehouse: Path, output: Path, lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
) -> dict[str, int]:
    """Write TABLES of ``warehouse`` under ``output`` (replaced whole, only once every file is written).

    Returns the rows written per table.
    """
    if not warehouse.exists():
        raise EtlError(f"{warehouse}: no warehouse here. Build it first: etl build --warehouse {warehouse}")
    output = output.resolve()
    building = output.with_name(f"{output.name}.partial-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    con = connect(warehouse, read_only=True, lock_wait_seconds=lock_wait_seconds)
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
