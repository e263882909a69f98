"""An analyst's read-write session beside our writers (issue #27): whatever it commits is never lost to a
publish's or a rebuild's swap, at any moment of it.

The analyst is another process holding a real DuckDB connection, driven line by line through a pipe: each
command is done when it answers, so every step lands exactly at the writer's moment under test (the
writer's functions are wrapped to hand over to it there), with no sleeps. The moments:

- open read-write before the writer starts, and still open: the writer waits ``--lock-wait``, then stops
  with the warehouse as the analyst has it and the results staged;
- commits and closes while the writer waits for it: kept;
- commits and closes while the ETL builds its new file (before its writer lock): carried over;
- tries to open after the copy, during the carry-over, or right before the swap: DuckDB refuses the
  session at once (the writer holds a shared lock on the file), and it opens once the writer is done;
- a change made without DuckDB's lock (a backup copied over the file) before the swap: the writer refuses
  to swap (WarehouseChanged) and the change stays.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from etl import build as etl_build
from etl.build import build_warehouse
from trainer.config import resolve
from trainer.train import run
from warehouse import results, swap
from warehouse.errors import WarehouseChanged, WarehouseError
from warehouse.swap import rewriting, side_file, swap_in, writer_lock

ANALYST = """
import duckdb, sys
con = None
for line in sys.stdin:
    command, _, note = line.strip().partition(" ")
    try:
        if command == "open":
            con = duckdb.connect(sys.argv[1])
        elif command == "write":
            con.execute("CREATE TABLE IF NOT EXISTS analyst_notes (note VARCHAR)")
            con.execute("INSERT INTO analyst_notes VALUES (?)", [note])
        elif command == "close":
            con.close()
            con = None
        print("ok", flush=True)
    except Exception as error:
        print("refused:", str(error).splitlines()[0], flush=True)
"""


# Tests whose analyst, or other DuckDB user, is a process of its own: marked slow (make test and CI run them,
# make test-fast does not). The rest run here in one process.
in_another_process = pytest.mark.slow


class Analyst:
    """A DuckDB session in another process: ``do("open", "write x", "close")`` returns its answers."""

    def __init__(self, warehouse: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", ANALYST, str(warehouse)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.pid = self.process.pid

    def do(self, *commands: str) -> list[str]:
        answers = []
        for command in commands:
            assert self.process.stdin and self.process.stdout
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
            answers.append(self.process.stdout.readline().strip())
        return answers

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def analyst(warehouse: Path) -> Iterator[Analyst]:
    session = Analyst(warehouse)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def staged(small_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run's results, staged in its folder (trained on a scratch copy of the warehouse)."""
    folder = tmp_path_factory.mktemp("staged")
    scratch = folder / "scratch.duckdb"
    shutil.copyfile(small_warehouse, scratch)
    return run(resolve({"warehouse": str(scratch), "runs_dir": str(folder / "runs"), "epochs": 2})).run_dir


def notes(warehouse: Path) -> set[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'analyst_notes'").fetchone()[0]:
            return set()
        return {note for (note,) in con.execute("SELECT note FROM analyst_notes").fetchall()}


def run_ids(warehouse: Path) -> set[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'runs'").fetchone()[0]:
            return set()
        return {run_id for (run_id,) in con.execute("SELECT run_id FROM runs").fetchall()}


def leftovers(warehouse: Path) -> list[str]:
    return sorted(p.name for p in warehouse.parent.iterdir() if p.name.startswith(warehouse.name + "."))


def before(function: Callable[..., Any], step: Callable[[], None]) -> Callable[..., Any]:
    """``function``, with ``step`` run first each time."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        step()
        return function(*args, **kwargs)

    return wrapped


def after(function: Callable[..., Any], step: Callable[[], None]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        step()
        return result

    return wrapped


# -- publishing (trainer run, score, blend, publish: warehouse.results.publish)


@in_another_process
def test_a_session_open_before_a_publish_makes_it_wait_then_stop_and_nothing_is_lost(
    warehouse, staged, analyst
) -> None:
    assert analyst.do("open", "write before") == ["ok", "ok"]
    with pytest.raises(WarehouseError) as refused:
        results.publish(staged, warehouse, lock_wait_seconds=0.5)
    message = str(refused.value)
    assert f"is locked by PID {analyst.pid} (waited 0 s)" in message
    assert f"trainer publish {staged}" in message  # the results stay staged
    assert analyst.do("write still-open", "close") == ["ok", "ok"]  # the session was never disturbed
    assert leftovers(warehouse) == []
    results.publish(staged, warehouse, lock_wait_seconds=0.5)
    assert notes(warehouse) == {"before", "still-open"} and run_ids(warehouse) == {staged.name}


@in_another_process
def test_a_session_that_commits_and_closes_while_the_publisher_waits_is_kept(warehouse, staged, analyst) -> None:
    assert analyst.do("open", "write first") == ["ok", "ok"]
    errors: list[Exception] = []

    def publish() -> None:
        try:
            results.publish(staged, warehouse, lock_wait_seconds=60)
        except Exception as error:  # noqa: BLE001 (reported by the assertion below)
            errors.append(error)

    publisher = threading.Thread(target=publish)
    publisher.start()
    # Whether the publisher already waits or has not reached the lock yet, the commit lands before its copy.
    assert analyst.do("write last", "close") == ["ok", "ok"]
    publisher.join()
    assert not errors
    assert notes(warehouse) == {"first", "last"} and run_ids(warehouse) == {staged.name}


@in_another_process
@pytest.mark.parametrize("moment", ["after the copy", "right before the swap"])
def test_a_session_opened_during_a_publish_is_refused_then_opens_once_it_is_done(
    warehouse, staged, analyst, monkeypatch, moment
) -> None:
    answers: list[list[str]] = []

    def analyst_tries() -> None:
        answers.append(analyst.do("open", "write during"))

    if moment == "after the copy":
        monkeypatch.setattr(swap, "_copy", after(swap._copy, analyst_tries))
    else:
        monkeypatch.setattr(swap, "swap_in", before(swap.swap_in, analyst_tries))
    results.publish(staged, warehouse, lock_wait_seconds=0.5)
    ((opened, wrote),) = answers
    assert opened.startswith("refused: IO Error: Could not set lock") and "read-only mode" in opened
    assert wrote.startswith("refused")
    assert analyst.do("open", "write after", "close") == ["ok", "ok", "ok"]
    assert notes(warehouse) == {"after"} and run_ids(warehouse) == {staged.name}


@in_another_process
def test_readers_beside_a_publish_are_not_refused(warehouse, staged, monkeypatch) -> None:
    """The writer's lock is shared: a read-only session opens (and reads) at the same moments."""
    answers: list[int] = []

    def read() -> None:
        with duckdb.connect(str(warehouse), read_only=True) as con:  # in this process: DuckDB's own lock
            answers.append(con.execute("SELECT count(*) FROM ratings").fetchone()[0])
        reader = subprocess.run(
            [
                sys.executable,
                "-c",
                "import duckdb, sys; con = duckdb.connect(sys.argv[1], "
                "read_only=True); print(con.execute('SELECT count(*) FROM ratings').fetchone()[0])",
                str(warehouse),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        answers.append(int(reader.stdout))

    monkeypatch.setattr(swap, "swap_in", before(swap.swap_in, read))
    results.publish(staged, warehouse, lock_wait_seconds=0.5)
    assert len(answers) == 2 and answers[0] == answers[1] > 0


def test_a_change_made_without_duckdbs_lock_stops_the_swap_and_stays(warehouse, staged, tmp_path, monkeypatch) -> None:
    """A backup copied over the warehouse (cp takes no lock) after the publisher read it: no swap."""
    backup = tmp_path / "backup.duckdb"
    shutil.copyfile(warehouse, backup)
    with duckdb.connect(str(backup)) as con:
        con.execute("CREATE TABLE analyst_notes AS SELECT 'restored' AS note")
    monkeypatch.setattr(swap, "swap_in", before(swap.swap_in, lambda: subprocess.run(["cp", backup, warehouse])))
    with pytest.raises(WarehouseError) as refused:
        results.publish(staged, warehouse, lock_wait_seconds=0.5)
    assert isinstance(refused.value.__cause__, WarehouseChanged)
    message = str(refused.value)
    assert "its contents changed" in message and "It was not replaced" in message
    assert f"trainer publish {staged}" in message
    assert warehouse.read_bytes() == backup.read_bytes() and leftovers(warehouse) == []
    monkeypatch.undo()
    results.publish(staged, warehouse, lock_wait_seconds=0.5)  # again: both are there
    assert notes(warehouse) == {"restored"} and run_ids(warehouse) == {staged.name}


@in_another_process
def test_a_new_warehouse_made_by_someone_else_meanwhile_is_kept(tmp_path) -> None:
    path = tmp_path / "new.duckdb"
    make = "import duckdb, sys; duckdb.connect(sys.argv[1]).execute('CREATE TABLE mine AS SELECT 1 AS x').close()"
    with pytest.raises(WarehouseChanged, match="a file was created there"), rewriting(path) as con:
        con.execute("CREATE TABLE ours AS SELECT 2 AS y")
        subprocess.run([sys.executable, "-c", make, str(path)], check=True)
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT table_name FROM duckdb_tables()").fetchall() == [("mine",)]
    assert leftovers(path) == []


def test_a_wal_that_appears_before_the_swap_stops_it(warehouse) -> None:
    """A commit by a session that ignored the lock would show first in the WAL."""
    with pytest.raises(WarehouseChanged, match="its write-ahead log changed"), rewriting(warehouse) as con:
        con.execute("CREATE TABLE ours AS SELECT 1 AS x")
        swap.wal(warehouse).write_bytes(b"a commit")
    assert swap.wal(warehouse).read_bytes() == b"a commit"


def test_swapping_without_the_writer_lock_is_a_bug(warehouse) -> None:
    side = side_file(warehouse, "writing")
    shutil.copyfile(warehouse, side)
    with pytest.raises(RuntimeError, match="outside writer_lock"):
        swap_in(side, warehouse)
    side.unlink()


@in_another_process
def test_the_writer_lock_is_not_dropped_by_this_processs_own_duckdb_connections(warehouse, analyst) -> None:
    """POSIX locks go when a process closes any descriptor of the file: the writer's lock is not one."""
    with writer_lock(warehouse):
        duckdb.connect(str(warehouse), read_only=True).close()
        shutil.copyfile(warehouse, warehouse.with_name("copy.duckdb"))
        assert analyst.do("open")[0].startswith("refused: IO Error: Could not set lock")
    assert analyst.do("open", "close") == ["ok", "ok"]


# -- rebuilding (etl build)


@pytest.fixture
def newer(make_movielens_1m, tmp_path) -> Path:
    return make_movielens_1m(tmp_path / "newer", seed=11)


@in_another_process
def test_a_session_that_commits_while_the_etl_builds_is_carried_over(warehouse, newer, analyst) -> None:
    def log(message: str) -> None:  # mid-build, before the ETL's writer lock
        if "user_matrix" in message:
            assert analyst.do("open", "write mid-build", "close") == ["ok", "ok", "ok"]

    build_warehouse(newer, warehouse, log=log)
    assert notes(warehouse) == {"mid-build"}


@in_another_process
def test_a_session_still_open_when_the_etl_swaps_makes_it_stop_and_nothing_is_lost(warehouse, newer, analyst) -> None:
    from etl.build import EtlOptions

    before_bytes = warehouse.read_bytes()

    def log(message: str) -> None:
        if "user_matrix" in message:
            assert analyst.do("open", "write mid-build") == ["ok", "ok"]  # and stays open

    with pytest.raises(WarehouseError, match=f"is locked by PID {analyst.pid}"):
        build_warehouse(newer, warehouse, EtlOptions(lock_wait_seconds=0.5), log=log)
    assert analyst.do("write still-open", "close") == ["ok", "ok"]
    assert warehouse.read_bytes() != before_bytes  # the analyst's commits, not the build
    assert notes(warehouse) == {"mid-build", "still-open"} and leftovers(warehouse) == []
    build_warehouse(newer, warehouse)  # run again: carried over
    assert notes(warehouse) == {"mid-build", "still-open"}


@in_another_process
@pytest.mark.parametrize("moment", ["during the carry-over", "right before the swap"])
def test_a_session_opened_while_the_etl_swaps_is_refused_then_opens_once_it_is_done(
    warehouse, newer, analyst, monkeypatch, moment
) -> None:
    assert analyst.do("open", "write earlier", "close") == ["ok", "ok", "ok"]
    answers: list[list[str]] = []

    def analyst_tries() -> None:
        answers.append(analyst.do("open", "write during"))

    def log(message: str) -> None:
        if moment == "during the carry-over" and "analyst_notes" in message and "kept table" in message:
            analyst_tries()

    if moment == "right before the swap":
        monkeypatch.setattr(etl_build, "swap_in", before(etl_build.swap_in, analyst_tries))
    build_warehouse(newer, warehouse, log=log)
    ((opened, wrote),) = answers
    assert opened.startswith("refused: IO Error: Could not set lock") and wrote.startswith("refused")
    assert analyst.do("open", "write after", "close") == ["ok", "ok", "ok"]
    assert notes(warehouse) == {"earlier", "after"}


def test_a_change_made_without_duckdbs_lock_stops_the_etls_swap_and_stays(
    warehouse, newer, tmp_path, monkeypatch
) -> None:
    backup = tmp_path / "backup.duckdb"
    shutil.copyfile(warehouse, backup)
    with duckdb.connect(str(backup)) as con:
        con.execute("CREATE TABLE analyst_notes AS SELECT 'restored' AS note")
    monkeypatch.setattr(
        etl_build, "swap_in", before(etl_build.swap_in, lambda: subprocess.run(["cp", backup, warehouse]))
    )
    with pytest.raises(WarehouseChanged, match="run the command again"):
        build_warehouse(newer, warehouse)
    assert warehouse.read_bytes() == backup.read_bytes() and leftovers(warehouse) == []
    monkeypatch.undo()
    build_warehouse(newer, warehouse)
    assert notes(warehouse) == {"restored"}
