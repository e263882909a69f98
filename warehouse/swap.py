"""Writing the warehouse without ever blocking its readers: a new version of the file is written beside
it and swapped in with an atomic rename, under a writer lock.

DuckDB lets one process write a file or many read it, never both. So no writer here opens the
warehouse itself read-write: the ETL builds a new file, a publisher copies the current one, each writes
its side file, and `os.replace` puts it in place. Sessions already open (a notebook, the DuckDB CLI,
a BI tool) keep reading the snapshot they opened; sessions opened later see the new file.

Writers take turns through a writer lock (an flock on the warehouse's folder). Each one
reads the current warehouse only once it holds that lock, so no writer's results are lost to another's
swap: a rebuild that started before a run was published still carries that run over.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, get_args

import duckdb

from warehouse.connect import DEFAULT_LOCK_WAIT_SECONDS, connect
from warehouse.errors import WarehouseError

# The storage format new files are written in. DuckDB 2 writes, by default, a format no 1.x release
# reads; "v1.2.0" is read by DuckDB 1.2 and later: the PyPI duckdb-cli 1.x, DBeaver's and R's drivers.
StorageVersion = Literal["v1.2.0", "latest"]
STORAGE_VERSIONS: tuple[str, ...] = get_args(StorageVersion)
DEFAULT_STORAGE_VERSION: StorageVersion = "v1.2.0"


def new_file(
    path: Path,
    storage_version: StorageVersion = DEFAULT_STORAGE_VERSION,
    memory_limit_mb: int | None = None,
    row_group_size: int | None = None,
) -> duckdb.DuckDBPyConnection:
    """A read-write connection to a new database file (its storage format stays with the file).

    ``row_group_size`` (rows, a multiple of 2,048) is an option of ATTACH only: the file is then attached
    to an in-memory connection and made its default database, and further connections to it are opened
    with ``cursor``."""
    config: dict[str, str | bool | int | float | list[str]] = {"storage_compatibility_version": storage_version}
    if memory_limit_mb:
        config["memory_limit"] = f"{memory_limit_mb}MB"
    if not row_group_size:
        return duckdb.connect(str(path), config=config)
    con = duckdb.connect(":memory:", config=config)
    quoted = str(path).replace("'", "''")  # ATTACH takes no parameter for its path
    options = f"STORAGE_VERSION '{storage_version}', ROW_GROUP_SIZE {int(row_group_size)}"
    con.execute(f"ATTACH '{quoted}' AS building ({options})")
    con.execute("USE building")
    return con


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Another connection to ``con``'s database, in the same default database (a plain cursor starts in the
    in-memory one when ``con`` attached its file)."""
    ((name,),) = con.execute("SELECT current_database()").fetchall()
    other = con.cursor()
    other.execute(f'USE "{name}"')
    return other


@contextlib.contextmanager
def writer_lock(warehouse: Path, lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the writer lock of the warehouse's folder, waiting at most ``lock_wait_seconds`` for another writer.

    An flock on the folder itself: it leaves no lock file behind, and the OS releases it when a writer
    dies. Writers of other warehouses in the same folder take turns with this one too; each holds it
    only for the copy, write and swap of one file.
    """
    try:
        handle = os.open(warehouse.parent, os.O_RDONLY)
    except OSError as error:
        raise WarehouseError(f"{warehouse}: cannot open its folder to take the writer lock: {error}") from error
    try:
        deadline, delay = time.monotonic() + lock_wait_seconds, 0.05
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WarehouseError(
                        f"{warehouse} is being written by another process (waited {lock_wait_seconds:.0f} s for "
                        "the writer lock). Writers take turns; try again once it has finished."
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        yield
    finally:
        os.close(handle)  # releases the flock


@contextlib.contextmanager
def rewriting(
    warehouse: Path,
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
    storage_version: StorageVersion = DEFAULT_STORAGE_VERSION,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection to a copy of the warehouse (a new file when there is none yet), swapped in
    when the block ends without an error; otherwise the warehouse is left exactly as it was."""
    warehouse = warehouse.resolve()  # a link's target is what is replaced, under its own folder's lock
    with writer_lock(warehouse, lock_wait_seconds), contextlib.ExitStack() as stack:
        remove_stale(warehouse)
        side = side_file(warehouse, "writing")
        stack.callback(remove, side)  # nothing once the side file has been swapped in
        if warehouse.exists():
            # Held until the swap: no DuckDB writer (an analyst's read-write session) can open the warehouse
            # meanwhile and write what the swap would then discard.
            reader = connect(warehouse, read_only=True, lock_wait_seconds=lock_wait_seconds)
            stack.callback(reader.close)
            _copy(warehouse, side)
            con = duckdb.connect(str(side))
        else:
            con = new_file(side, storage_version)
        stack.callback(con.close)
        yield con
        con.execute("CHECKPOINT")
        con.close()
        swap_in(side, warehouse)


def _copy(warehouse: Path, side: Path) -> None:
    """Copy the warehouse file, and the WAL a writer that crashed left beside it (part of the data)."""
    try:
        shutil.copyfile(warehouse, side)
        if wal(warehouse).exists():
            shutil.copyfile(wal(warehouse), wal(side))
    except OSError as error:
        raise WarehouseError(f"{warehouse}: cannot copy it to write a new version beside it: {error}") from error


def wal(database: Path) -> Path:
    """The write-ahead log DuckDB keeps beside a database file."""
    return database.with_name(database.name + ".wal")


def side_file(warehouse: Path, purpose: str) -> Path:
    """``<warehouse>.<purpose>-<pid>``: a new version in the making (removed by remove_stale once its
    process is gone)."""
    return warehouse.with_name(f"{warehouse.name}.{purpose}-{os.getpid()}")


def swap_in(side: Path, warehouse: Path) -> None:
    """Atomically replace the warehouse with a finished side file, durable across a power cut."""
    with side.open("rb") as f:
        os.fsync(f.fileno())
    # A WAL left by a crashed writer belongs to the old file and must not be replayed onto the new one.
    wal(warehouse).unlink(missing_ok=True)
    os.replace(side, warehouse)
    directory = os.open(warehouse.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def remove(side: Path) -> None:
    for leftover in (side, wal(side)):
        leftover.unlink(missing_ok=True)


def remove_stale(warehouse: Path) -> None:
    """Delete the side files of writers that were killed."""
    for leftover in warehouse.parent.glob(f"{warehouse.name}.*-*"):
        purpose, _, pid = leftover.name[len(warehouse.name) + 1 :].partition("-")
        pid = pid.split(".")[0]
        if purpose in ("building", "writing") and pid.isdigit() and not _process_alive(int(pid)):
            if leftover.is_dir():  # DuckDB's spill folder (<side file>.tmp)
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
