"""The warehouse's feature tables as Parquet files (written by `etl export`), read back as the warehouse.

`open_features` gives the trainer a DuckDB connection whose views over those files carry the
warehouse's table names, so it reads Parquet exactly as it reads the warehouse.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from warehouse.errors import WarehouseError

# Table -> its partition column (None: one file). What the trainer reads (movies: bayes-fm's features, the titles).
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


def open_features(folder: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with a view per exported table, named as in the warehouse."""
    if not folder.is_dir():
        raise WarehouseError(
            f"{folder}: no such folder of Parquet features. Write it with: etl export --output {folder}"
        )
    con = duckdb.connect()
    for table, partition in TABLES.items():
        path = folder / table if partition else folder / f"{table}.parquet"
        if not path.exists():
            con.close()
            raise WarehouseError(f"{folder}: {path.name} is missing; this is not a folder written by `etl export`")
        if partition:
            files = _quote(str(path / "**" / "*.parquet"))
            source = f"read_parquet({files}, hive_partitioning = true, hive_types = {{'{partition}': VARCHAR}})"
        else:
            source = f"read_parquet({_quote(str(path))})"
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM {source}")
    return con


def _quote(text: str) -> str:
    """A SQL string literal (views cannot take parameters)."""
    return "'" + text.replace("'", "''") + "'"
