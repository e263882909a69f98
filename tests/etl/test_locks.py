"""`etl build` beside other processes: analysts reading the warehouse keep reading while it is rebuilt; a
process writing to it makes the ETL wait a bounded time, then stop with a plain message, nothing changed."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.build import build_warehouse
from etl.cli import app

# Holds the warehouse open; answers "count" on stdin with the number of ratings it sees.
ANALYST = """
import duckdb, sys
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read-only")
print("open", flush=True)
for command in sys.stdin:
    print(con.execute("SELECT count(*) FROM ratings").fetchall()[0][0], flush=True)
"""


def analyst(warehouse: Path, mode: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", ANALYST, str(warehouse), mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "open"
    return process


def ask(process: subprocess.Popen) -> int:
    process.stdin.write("count\n")
    process.stdin.flush()
    return int(process.stdout.readline())


pytestmark = pytest.mark.slow  # every test holds the warehouse open from other processes


@pytest.fixture
def rebuilt(movielens, tmp_path) -> tuple[Path, Path]:
    """A warehouse of 12 ratings, and a folder that rebuilds it with 13."""
    warehouse = tmp_path / "warehouse.duckdb"
    build_warehouse(movielens("ml-1m"), warehouse)
    bigger = movielens("ml-1m")
    with (bigger / "ratings.dat").open("a") as f:
        f.write("4::4::3::978294300\n")
    return warehouse, bigger


def test_analysts_keep_reading_while_the_etl_replaces_the_warehouse(rebuilt) -> None:
    warehouse, bigger = rebuilt
    analysts = [analyst(warehouse, "read-only") for _ in range(3)]
    try:
        build_warehouse(bigger, warehouse)  # not kept waiting by readers
        # Each open session still sees the file it opened, whole; a new session sees the new build.
        assert [ask(a) for a in analysts] == [12, 12, 12]
        late = analyst(warehouse, "read-only")
        assert ask(late) == 13
        late.kill()
    finally:
        for a in analysts:
            a.kill()
            a.wait()


def test_a_writer_makes_the_etl_give_up_after_its_bounded_wait(rebuilt) -> None:
    warehouse, bigger = rebuilt
    before = hashlib.sha256(warehouse.read_bytes()).hexdigest()
    writer = analyst(warehouse, "read-write")
    try:
        started = time.monotonic()
        result = CliRunner().invoke(
            app, ["build", "--input", str(bigger), "--warehouse", str(warehouse), "--lock-wait", "1", "--quiet"]
        )
        elapsed = time.monotonic() - started
    finally:
        writer.kill()
        writer.wait()
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"is locked by PID {writer.pid} (waited 1 s)" in result.output
    assert elapsed < 30
    assert hashlib.sha256(warehouse.read_bytes()).hexdigest() == before
    assert [p.name for p in warehouse.parent.iterdir()] == ["warehouse.duckdb"]
