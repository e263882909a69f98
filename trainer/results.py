"""Writing a run's results: staged as files first, then into the warehouse in one short transaction.

Staging first means nothing computed is lost when the warehouse is locked by another writer at the
end of a run: the results wait in the run's folder and `trainer publish RUN_DIR` writes them later.
Publishing is idempotent (a run's earlier rows are replaced), and the transaction means readers see a
run either whole or not at all.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from etl import warehouse as wh
from etl.errors import EtlError
from etl.models import SQL_DIR
from trainer.errors import TrainerError

RESULT_TABLES = ("runs", "epoch_metrics", "predictions")  # also the order of the DDL files
VIEWS = ("run_metrics", "latest_run", "latest_predictions", "recommendations")  # dependency order
BENCH_TABLE, BENCH_VIEW = "bench_results", "bench_summary"  # written by `trainer bench`
RUN_FILE = "run.json"
PUBLISHED_MARKER = "published"


def stage(run_dir: Path, run: dict[str, Any], epochs: pa.Table, predictions: pa.Table) -> None:
    """Write the run's row, learning curve and predictions into its folder."""
    (run_dir / RUN_FILE).unlink(missing_ok=True)  # restaging: the old marker must not vouch for new files
    try:
        # Written by DuckDB: importing pyarrow.parquet would add a quarter of a second to every run.
        scratch = duckdb.connect()
        scratch.from_arrow(epochs).write_parquet(str(run_dir / "epoch_metrics.parquet"))
        scratch.from_arrow(predictions).write_parquet(str(run_dir / "predictions.parquet"))
        scratch.close()
        # Written last: its presence says the staged results are complete.
        (run_dir / RUN_FILE).write_text(json.dumps(run, indent=2, default=str))
    except (duckdb.Error, OSError) as error:  # a full or read-only disk
        raise TrainerError(
            f"{run_dir}: cannot stage the results: {error}\nThe warehouse is untouched. Once there is room, "
            f"finish the run from its checkpoint with:\n    trainer run --resume {run_dir}"
        ) from error
    (run_dir / PUBLISHED_MARKER).unlink(missing_ok=True)


def publish(run_dir: Path, warehouse: Path, lock_wait_seconds: float) -> str:
    """Write a staged run into the warehouse; returns its run id."""
    run_file = run_dir / RUN_FILE
    if not run_file.exists():
        raise TrainerError(f"{run_dir}: no staged results ({RUN_FILE} is missing); the run did not finish")
    run = json.loads(run_file.read_text())
    try:
        con = wh.connect(warehouse, read_only=False, lock_wait_seconds=lock_wait_seconds)
    except EtlError as error:
        raise _kept(run_dir, warehouse, error) from error
    try:
        with transaction(con):
            _write_run(con, run_dir, run)
    except duckdb.Error as error:  # a full disk, most likely: the transaction was rolled back
        raise _kept(run_dir, warehouse, error) from error
    (run_dir / PUBLISHED_MARKER).touch()
    return run["run_id"]


def _write_run(con: duckdb.DuckDBPyConnection, run_dir: Path, run: dict[str, Any]) -> None:
    for table in RESULT_TABLES:
        con.execute((SQL_DIR / "results" / f"{table}.sql").read_text())
        con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run["run_id"]])
    # Column names come from a file: allow only the runs table's own columns.
    known = {row[0] for row in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = 'runs'").fetchall()}
    if not set(run) <= known:
        raise TrainerError(f"{run_dir / RUN_FILE}: unexpected fields {sorted(set(run) - known)}")
    columns = ", ".join(run)
    con.execute(f"INSERT INTO runs ({columns}) VALUES ({', '.join('?' for _ in run)})", list(run.values()))
    for table in ("epoch_metrics", "predictions"):
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet(?)", [str(run_dir / f"{table}.parquet")])
    for view in VIEWS:
        con.execute((SQL_DIR / "views" / f"{view}.sql").read_text())


def publish_bench(rows: list[dict[str, Any]], warehouse: Path, lock_wait_seconds: float = 30.0) -> None:
    """Append `trainer bench` rows to bench_results (and refresh bench_summary) in one transaction."""
    try:
        con = wh.connect(warehouse, read_only=False, lock_wait_seconds=lock_wait_seconds)
    except EtlError as error:
        raise TrainerError(f"could not write the bench results: {error}") from error
    bench_rows = pa.Table.from_pylist(rows)  # noqa: F841 (DuckDB reads it by name in the query below)
    with transaction(con):
        con.execute((SQL_DIR / "results" / f"{BENCH_TABLE}.sql").read_text())
        con.execute(f"INSERT INTO {BENCH_TABLE} BY NAME SELECT * FROM bench_rows")
        con.execute((SQL_DIR / "views" / f"{BENCH_VIEW}.sql").read_text())


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Readers see all of the writes or none of them; the connection is closed either way."""
    try:
        con.execute("BEGIN TRANSACTION")
        yield
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # a COMMIT that failed (disk full) has ended the transaction
            con.execute("ROLLBACK")
        raise
    finally:
        con.close()


def _kept(run_dir: Path, warehouse: Path, error: Exception) -> TrainerError:
    return TrainerError(
        f"could not write the results: {error}\nNothing is lost: the results are kept in {run_dir}. "
        f"Write them once the warehouse is free with:\n    trainer publish {run_dir} --warehouse {warehouse}"
    )
