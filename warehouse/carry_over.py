"""Keeping, in a rebuilt warehouse, everything of the previous one that the rebuild does not create: the
trainer's runs and predictions, `trainer bench`'s results, an analyst's own tables and views.

Runs under the writer lock (warehouse/swap.py), so a run published while the ETL was building is kept.
The results live in the same file as the ETL's tables because analysts' tools open one file: DuckDB
keeps no ATTACH from one session to the next, so a view over another file would fail in their hands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from warehouse.connect import connect
from warehouse.errors import WarehouseError

PREVIOUS = '"previous.warehouse"'  # the alias the previous warehouse is attached under while carrying over


def carry_over(
    con: duckdb.DuckDBPyConnection, warehouse: Path, lock_wait_seconds: float, log: Callable[[str], None]
) -> None:
    """Copy every sequence, table, view and index of the previous warehouse that this build did not create.

    Each is recreated from its own CREATE statement, so a kept table keeps its keys, defaults and checks
    (CREATE TABLE AS SELECT would drop them). DuckDB does not keep the order objects were created in, and a
    view or a foreign key may name an object that sorts after it: what names an object not yet recreated
    is retried in the next round.
    """
    if not warehouse.exists():
        return
    # Read-only: analysts may keep reading the old file; a writer (a trainer saving results) makes us wait.
    connect(warehouse, read_only=True, lock_wait_seconds=lock_wait_seconds).close()
    try:
        # A dotted alias: DuckDB names the build's own database after its file name up to the first dot, so no
        # warehouse name can take it (one named previous.duckdb could not be rebuilt with the alias `previous`).
        con.execute(f"ATTACH ? AS {PREVIOUS} (READ_ONLY)", [str(warehouse)])
    except duckdb.Error as error:
        raise WarehouseError(
            f"{warehouse}: cannot read the existing warehouse to keep its other tables ({error}). "
            "Move it aside and rerun."
        ) from error
    _extend_lineage(con, log)
    pending = con.execute(_PREVIOUS_OBJECTS).fetchall()
    while pending:
        waiting = []
        for kind, name, sql in pending:
            try:
                started = time.perf_counter()
                _keep(con, kind, name, sql)
                # aligned with the build's own lines (etl/build.py): name, what happened, seconds
                log(f"  {name:<20} {'kept ' + kind:>17} {time.perf_counter() - started:6.2f} s")
            except duckdb.CatalogException as error:
                waiting.append((kind, name, sql, error))
            except duckdb.Error as error:
                raise _cannot_keep(warehouse, kind, name, error) from error
        if len(waiting) == len(pending):
            kind, name, _, stuck = waiting[0]
            raise _cannot_keep(warehouse, kind, name, stuck) from stuck
        pending = [(kind, name, sql) for kind, name, sql, _ in waiting]
    con.execute(f"DETACH {PREVIOUS}")


def _extend_lineage(con: duckdb.DuckDBPyConnection, log: Callable[[str], None]) -> None:
    """The previous data's fingerprints join this build's lineage (dataset_lineage) when every movie it held is
    still here under the same title: its runs' ids still mean the same movies, and they stay served. Otherwise
    their runs are kept but served no more, and the log says so."""
    previous = {
        name
        for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'previous.warehouse' AND schema_name = 'main'"
        ).fetchall()
    }
    if not {"dataset", "movies"} <= previous:
        return
    source = "dataset_lineage" if "dataset_lineage" in previous else "dataset"
    ((changed,),) = con.execute(
        f"SELECT count(*) FROM {PREVIOUS}.main.movies AS m "
        "WHERE NOT EXISTS (SELECT 1 FROM movies AS n WHERE n.movie_id = m.movie_id AND n.title = m.title)"
    ).fetchall()
    if not changed:
        con.execute(
            f"INSERT INTO dataset_lineage SELECT DISTINCT fingerprint FROM {PREVIOUS}.main.{source} "
            "WHERE fingerprint NOT IN (SELECT fingerprint FROM dataset_lineage)"
        )
        return
    runs = con.execute(f"SELECT count(*) FROM {PREVIOUS}.main.runs").fetchall()[0][0] if "runs" in previous else 0
    if runs:
        log(
            f"  {changed:,} movies of the previous data are gone or retitled here: its {runs:,} runs are kept in runs "
            "but no longer served (their ids mean other movies now)"
        )


def _keep(con: duckdb.DuckDBPyConnection, kind: str, name: str, sql: str) -> None:
    """Recreate one object of the previous warehouse in this build; a table with its rows."""
    con.execute(sql)
    if kind == "table":
        # Generated columns cannot be inserted into: they are computed again.
        columns = ", ".join(
            _identifier(column)
            for (column,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = 'previous.warehouse' "
                "AND schema_name = 'main' AND table_name = ? AND NOT is_generated ORDER BY column_index",
                [name],
            ).fetchall()
        )
        table = _identifier(name)
        con.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM {PREVIOUS}.main.{table}")


def _identifier(name: str) -> str:
    """A name from the previous warehouse's catalog, quoted for SQL: a quote in it cannot end the name."""
    return '"' + name.replace('"', '""') + '"'


def _cannot_keep(warehouse: Path, kind: str, name: str, error: duckdb.Error) -> WarehouseError:
    return WarehouseError(
        f"{warehouse}: cannot keep the {kind} {name} of the existing warehouse ({error}). "
        "Fix or drop it there, or move the warehouse aside, and rerun."
    )


# The previous warehouse's objects (main schema) that this build did not create: sequences first (a default
# may draw from one), then tables, views, and the indexes of kept tables (built once their rows are in).
_PREVIOUS_OBJECTS = """
WITH previous AS (
    SELECT 1 AS rank, 'sequence' AS kind, sequence_name AS name, sql, NULL AS on_table
    FROM duckdb_sequences() WHERE database_name = 'previous.warehouse' AND schema_name = 'main'
    UNION ALL
    SELECT 2, 'table', table_name, sql, NULL
    FROM duckdb_tables() WHERE database_name = 'previous.warehouse' AND schema_name = 'main'
    UNION ALL
    SELECT 3, 'view', view_name, sql, NULL
    FROM duckdb_views() WHERE database_name = 'previous.warehouse' AND schema_name = 'main' AND NOT internal
    UNION ALL
    SELECT 4, 'index', index_name, sql, table_name
    FROM duckdb_indexes() WHERE database_name = 'previous.warehouse' AND schema_name = 'main' AND sql IS NOT NULL
),
built AS (
    SELECT sequence_name AS name FROM duckdb_sequences() WHERE database_name = current_database()
    UNION ALL SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()
    UNION ALL SELECT view_name FROM duckdb_views() WHERE database_name = current_database() AND NOT internal
)
SELECT kind, name, sql
FROM previous
WHERE name NOT IN (SELECT name FROM built) AND coalesce(on_table, '') NOT IN (SELECT name FROM built)
ORDER BY rank, name
"""
