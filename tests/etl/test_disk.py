"""A full disk or an unwritable warehouse folder: `etl build` stops with a plain error, the previous warehouse
is left byte for byte as it was, and no side file stays behind.

Three ways to make writes fail: a tmpfs too small for the new build (a real ENOSPC; needs root to mount), a
read-only file system or folder, and RLIMIT_FSIZE (writes past a size fail with EFBIG: a per-process limit
that any user can set, standing in for a full disk where mounting is not allowed).
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from etl.build import build_warehouse
from etl.errors import EtlError


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def previous(movielens, ml1m_warehouse, tmp_path) -> tuple[Path, Path]:
    """An ml-1m folder, and a warehouse built from it (the session's build, copied; outside any small disk)."""
    return movielens("ml-1m"), ml1m_warehouse(tmp_path / "previous.duckdb")


def test_disk_full(previous, small_disk):
    folder, built = previous
    # Room for the previous warehouse, not for a second one beside it.
    disk = small_disk(built.stat().st_size + 512 * 1024, fill=lambda point: shutil.copyfile(built, point / "w.duckdb"))
    warehouse = disk / "w.duckdb"
    before = sha256(warehouse)
    with pytest.raises(EtlError, match=rf"^{warehouse}: cannot write the new warehouse: .*No space left on device"):
        build_warehouse(folder, warehouse)
    assert sha256(warehouse) == before
    assert os.listdir(disk) == ["w.duckdb"]


def test_read_only_file_system(previous, small_disk):
    folder, built = previous
    disk = small_disk(
        2 * built.stat().st_size, fill=lambda point: shutil.copyfile(built, point / "w.duckdb"), read_only=True
    )
    warehouse = disk / "w.duckdb"
    before = sha256(warehouse)
    with pytest.raises(
        EtlError, match=rf"^{warehouse}: cannot create the new warehouse beside it: .*Read-only file system"
    ):
        build_warehouse(folder, warehouse)
    assert sha256(warehouse) == before


def etl_build_process(folder: Path, warehouse: Path, *, prefix: tuple[str, ...] = (), preexec_fn=None):
    """`etl build` in a child process (for limits set on that process alone)."""
    command = [
        *prefix,
        sys.executable,
        "-m",
        "etl",
        "build",
        "--input",
        str(folder),
        "--warehouse",
        str(warehouse),
        "-q",
    ]
    return subprocess.run(command, capture_output=True, text=True, preexec_fn=preexec_fn)


def test_read_only_folder(previous, tmp_path):
    """A folder the user may not write to. Root may write anywhere, so as root the child runs without the
    capabilities that let it ignore file permissions (setpriv)."""
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE")
        prefix = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")
    folder, built = previous
    locked = tmp_path / "locked"
    locked.mkdir()
    warehouse = locked / "w.duckdb"
    shutil.copyfile(built, warehouse)
    before = sha256(warehouse)
    locked.chmod(0o555)
    try:
        done = etl_build_process(folder, warehouse, prefix=prefix)
    finally:
        locked.chmod(0o755)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"etl: error: {warehouse}: cannot create the new warehouse beside it: ")
    assert "Permission denied" in done.stderr and "Traceback" not in done.stderr
    assert sha256(warehouse) == before
    assert os.listdir(locked) == ["w.duckdb"]


def _file_size_limit() -> None:
    """In the child: writes past 1 MiB fail with EFBIG (SIGXFSZ ignored, or it would kill the process)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_file_size_limit(previous):
    folder, warehouse = previous
    before = sha256(warehouse)
    done = etl_build_process(folder, warehouse, preexec_fn=_file_size_limit)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"etl: error: {warehouse}: cannot write the new warehouse: ")
    assert "File too large" in done.stderr and "Traceback" not in done.stderr
    assert sha256(warehouse) == before
    assert os.listdir(warehouse.parent) == ["previous.duckdb"]
