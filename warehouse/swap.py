"""Writing the warehouse without ever blocking its readers: a new version of the file is written beside
it and swapped in with an atomic rename, under a writer lock.

DuckDB lets one process write a file or many read it, never both. So no writer here opens the
warehouse itself read-write: the ETL builds a new file, a publisher copies the current one, each writes
its side file, and `os.replace` puts it in place. Sessions already open (a notebook, the DuckDB CLI,
a BI tool) keep reading the snapshot they opened; sessions opened later see the new file.

Writers take turns through a writer lock (an flock on the warehouse's folder). Each one
reads the current warehouse only once it holds that lock, so no writer's results are lost to another's
swap: a rebuild that started before a run was published still carries that run over.

Nor is an analyst's write lost to a swap. With the writer lock a writer also takes DuckDB's own lock on
the warehouse file, shared as a reader's (so readers keep reading), and holds it until the swap: a
read-write session open at that moment makes the writer wait ``--lock-wait`` seconds, then stop with
nothing changed; one that tries to open while the writer holds it is refused by DuckDB at once. Right
before the swap the writer also checks that the file and its WAL are still those it read (inode, size,
mtime and a checksum of their first and last MiB): a change made without DuckDB's lock (a file copied
over it, a file system whose locks do not work) stops the swap too, keeping that change
(WarehouseChanged).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import duckdb

from warehouse.connect import DEFAULT_LOCK_WAIT_SECONDS, locked
from warehouse.errors import WarehouseChanged, WarehouseError

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


# DuckDB locks a database file with a POSIX record lock over the whole file (fcntl F_SETLK): shared for a
# read-only session, exclusive for a read-write one. A process loses all its POSIX locks on a file when it
# closes any descriptor of that file (shutil.copyfile's, an in-process DuckDB connection's), so the writer
# takes an open file description lock instead (Linux's F_OFD_SETLK): only its own descriptor releases it,
# and it conflicts with DuckDB's locks as another process's would. Elsewhere, a POSIX lock (lockf), which
# the checksum below backs up.
_OFD_SETLK: int | None = getattr(fcntl, "F_OFD_SETLK", None)
_OFD_GETLK: int | None = getattr(fcntl, "F_OFD_GETLK", None)
_FLOCK = "hhqqi0q"  # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks), padded
SAMPLE_BYTES = 1 << 20  # the checksum reads the first and the last MiB of the file and of its WAL

Fingerprint = tuple[int, int, int, int, bytes]  # device, inode, size, mtime_ns, checksum


@dataclass(frozen=True)
class Seen:
    """The warehouse as a writer found it once it held the writer lock."""

    handle: int | None  # a descriptor of the warehouse file holding the shared lock; None: no warehouse yet
    file: Fingerprint | None
    wal: Fingerprint | None


_held: dict[Path, Seen] = {}  # by warehouse: what the writer of this process holding its lock found


@contextlib.contextmanager
def writer_lock(warehouse: Path, lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS) -> Iterator[Seen]:
    """Hold the writer lock of the warehouse's folder, and a shared DuckDB lock on the warehouse file,
    waiting at most ``lock_wait_seconds`` in all for another writer or a read-write session to finish.

    The writer lock is an flock on the folder itself: it leaves no lock file behind, and the OS releases
    it when a writer dies. Writers of other warehouses in the same folder take turns with this one too;
    each holds it only for the copy, write and swap of one file. ``swap_in`` refuses to replace a file
    that changed since (what the writer read of it would be lost).
    """
    warehouse = warehouse.resolve()
    deadline = time.monotonic() + lock_wait_seconds
    try:
        folder = os.open(warehouse.parent, os.O_RDONLY)
    except OSError as error:
        raise WarehouseError(f"{warehouse}: cannot open its folder to take the writer lock: {error}") from error
    try:
        if not _wait(lambda: _try_flock(folder), deadline):
            raise WarehouseError(
                f"{warehouse} is being written by another process (waited {lock_wait_seconds:.0f} s for "
                "the writer lock). Writers take turns; try again once it has finished."
            )
        seen = _hold(warehouse, deadline, lock_wait_seconds)
        _held[warehouse] = seen
        try:
            yield seen
        finally:
            del _held[warehouse]
            if seen.handle is not None:
                os.close(seen.handle)  # releases the shared lock
    finally:
        os.close(folder)  # releases the flock


def _wait(attempt: Callable[[], bool], deadline: float) -> bool:
    """Try ``attempt`` until it succeeds (True) or the deadline passes (False), backing off up to 1 s."""
    delay = 0.05
    while not attempt():
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    return True


def _try_flock(handle: int) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _hold(warehouse: Path, deadline: float, lock_wait_seconds: float) -> Seen:
    """Open the warehouse, take a shared DuckDB lock on it (waiting for a read-write session), and look at it."""
    try:
        handle = os.open(warehouse, os.O_RDONLY)
    except FileNotFoundError:
        return Seen(None, None, _wal_fingerprint(warehouse))
    except OSError as error:
        raise WarehouseError(f"{warehouse}: cannot open the warehouse: {error}") from error
    try:
        if not _wait(lambda: _try_read_lock(handle), deadline):
            raise locked(warehouse, _lock_holder(handle), lock_wait_seconds)
        return Seen(handle, _fingerprint(handle), _wal_fingerprint(warehouse))
    except BaseException:
        os.close(handle)
        raise


def _try_read_lock(handle: int) -> bool:
    try:
        if _OFD_SETLK is None:
            fcntl.lockf(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        else:
            fcntl.fcntl(handle, _OFD_SETLK, struct.pack(_FLOCK, fcntl.F_RDLCK, os.SEEK_SET, 0, 0, 0))
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _lock_holder(handle: int) -> str:
    """'PID 1234' of the process holding a lock that conflicts with a shared one (DuckDB's are POSIX locks,
    which name their process), or 'another process'."""
    if _OFD_GETLK is not None:
        with contextlib.suppress(OSError):
            answer = fcntl.fcntl(handle, _OFD_GETLK, struct.pack(_FLOCK, fcntl.F_RDLCK, os.SEEK_SET, 0, 0, 0))
            kind, _, _, _, pid = struct.unpack(_FLOCK, answer)
            if kind != fcntl.F_UNLCK and pid > 0:
                return f"PID {pid}"
    return "another process"


def _fingerprint(handle: int) -> Fingerprint:
    """Device, inode, size, mtime and a checksum of the first and last MiB of an open file.

    A DuckDB checkpoint rewrites the headers at the start of the file, and a commit appends to the WAL, so
    sampling both ends catches a DuckDB write however coarse the file system's clock; reading a whole
    multi-GB warehouse twice per write would not pay for itself (docs/reliability.md has the figures)."""
    status = os.fstat(handle)
    checksum = hashlib.blake2b(os.pread(handle, SAMPLE_BYTES, 0), digest_size=16)
    if status.st_size > SAMPLE_BYTES:
        checksum.update(os.pread(handle, SAMPLE_BYTES, max(SAMPLE_BYTES, status.st_size - SAMPLE_BYTES)))
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, checksum.digest()


def _wal_fingerprint(database: Path) -> Fingerprint | None:
    try:
        handle = os.open(wal(database), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _fingerprint(handle)
    finally:
        os.close(handle)


def _changes(warehouse: Path, seen: Seen) -> list[str]:
    """How the warehouse differs from what the writer holding its lock found; empty when it does not."""
    changes = []
    if seen.handle is None or seen.file is None:
        if os.path.lexists(warehouse):
            changes.append("a file was created there")
    else:
        try:
            status = os.stat(warehouse)
        except FileNotFoundError:
            changes.append("it was removed")
        else:
            if (status.st_dev, status.st_ino) != seen.file[:2]:
                changes.append("another file was put in its place")
            elif _fingerprint(seen.handle) != seen.file:
                changes.append("its contents changed")
    if _wal_fingerprint(warehouse) != seen.wal:
        changes.append("its write-ahead log changed")
    return changes


@contextlib.contextmanager
def rewriting(
    warehouse: Path,
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
    storage_version: StorageVersion = DEFAULT_STORAGE_VERSION,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection to a copy of the warehouse (a new file when there is none yet), swapped in
    when the block ends without an error; otherwise the warehouse is left exactly as it was."""
    warehouse = warehouse.resolve()  # a link's target is what is replaced, under its own folder's lock
    with writer_lock(warehouse, lock_wait_seconds) as seen, contextlib.ExitStack() as stack:
        remove_stale(warehouse)
        side = side_file(warehouse, "writing")
        stack.callback(remove, side)  # nothing once the side file has been swapped in
        if seen.handle is not None:
            _copy(warehouse, seen.handle, side)
            con = duckdb.connect(str(side))
        else:
            con = new_file(side, storage_version)
        stack.callback(con.close)
        yield con
        con.execute("CHECKPOINT")
        con.close()
        swap_in(side, warehouse)


def _copy(warehouse: Path, handle: int, side: Path) -> None:
    """Copy the warehouse file, through the descriptor that holds its lock (closing another would drop the
    locks of this process's own DuckDB connections to it), and the WAL a writer that crashed left beside it
    (part of the data)."""
    try:
        with side.open("wb") as out:
            size, done = os.fstat(handle).st_size, 0
            while done < size:
                chunk = os.pread(handle, min(8 << 20, size - done), done)
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
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
    """Atomically replace the warehouse with a finished side file, durable across a power cut, unless the
    warehouse changed since its writer lock was taken (WarehouseChanged: the warehouse is left as it is)."""
    warehouse = warehouse.resolve()
    seen = _held.get(warehouse)
    if seen is None:
        raise RuntimeError(f"swap_in({warehouse}) outside writer_lock: nothing would keep a change made meanwhile")
    with side.open("rb") as f:
        os.fsync(f.fileno())
    changes = _changes(warehouse, seen)
    if changes:
        raise WarehouseChanged(
            f"{warehouse} changed while this command was writing a new version of it ({'; '.join(changes)}): "
            "another process wrote to it without DuckDB's lock. It was not replaced, so that change is kept; "
            "run the command again."
        )
    if seen.handle is None:
        _create(side, warehouse)
    else:
        os.replace(side, warehouse)
    if seen.wal is not None:
        # A WAL left by a crashed writer belongs to the old file: the new one holds its changes (copied, or
        # carried over, then checkpointed), and DuckDB refuses to open the new file beside it. So it is removed
        # after the rename: a crash in between loses nothing (DuckDB's message then names the old WAL), and
        # no session can commit to the new file meanwhile. Without one, none is removed: it would be a new
        # session's.
        wal(warehouse).unlink(missing_ok=True)
    directory = os.open(warehouse.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _create(side: Path, warehouse: Path) -> None:
    """Put the side file at ``warehouse``, where there was no file, unless one appeared meanwhile."""
    try:
        os.link(side, warehouse)  # fails if a file is there: a rename would replace it
    except FileExistsError:
        raise WarehouseChanged(
            f"{warehouse} was created by another process while this command was writing it; it was kept. "
            "Run the command again."
        ) from None
    except OSError:  # a file system without hard links
        os.replace(side, warehouse)
        return
    side.unlink()


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
