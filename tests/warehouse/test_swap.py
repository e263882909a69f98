"""Writers of the warehouse: each writes a new version beside it and swaps it in under the writer lock, so
writers take turns, none loses another's results, and readers never block them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from etl.build import build_warehouse
from trainer.config import resolve
from trainer.train import run
from warehouse import results
from warehouse.errors import WarehouseError
from warehouse.swap import cursor, new_file, rewriting, writer_lock


def run_ids(warehouse: Path) -> set[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {row[0] for row in con.execute("SELECT run_id FROM runs").fetchall()}


def staged_runs(warehouse: Path, tmp_path: Path, n: int) -> list[Path]:
    """n finished runs whose results are staged but not yet written (trained on a copy of the warehouse)."""
    scratch = tmp_path / "scratch.duckdb"
    shutil.copyfile(warehouse, scratch)
    return [
        run(resolve({"warehouse": str(scratch), "runs_dir": str(tmp_path / "runs"), "epochs": 2, "seed": seed})).run_dir
        for seed in range(n)
    ]


def test_two_writers_at_once_take_turns_and_both_results_stay(warehouse, tmp_path) -> None:
    first, second = staged_runs(warehouse, tmp_path, 2)
    errors: list[Exception] = []

    def publish(run_dir: Path) -> None:
        try:
            results.publish(run_dir, warehouse, lock_wait_seconds=60)
        except Exception as error:  # noqa: BLE001 (reported by the assertion below)
            errors.append(error)

    threads = [threading.Thread(target=publish, args=(run_dir,)) for run_dir in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert run_ids(warehouse) == {first.name, second.name}


def test_a_rebuild_keeps_a_run_published_while_it_was_building(warehouse, tmp_path, make_movielens_1m) -> None:
    (staged,) = staged_runs(warehouse, tmp_path, 1)
    published = []

    def log(message: str) -> None:  # the build reports each model it built: publish in the middle of it
        if "user_matrix" in message and not published:
            published.append(results.publish(staged, warehouse, lock_wait_seconds=10))

    build_warehouse(make_movielens_1m(tmp_path / "newer", seed=11), warehouse, log=log)
    assert published and run_ids(warehouse) == {staged.name}


def test_a_writer_waits_for_the_lock_then_gives_up_and_leaves_the_warehouse_as_it_was(warehouse, tmp_path) -> None:
    (staged,) = staged_runs(warehouse, tmp_path, 1)
    before = warehouse.read_bytes()
    with writer_lock(warehouse), pytest.raises(WarehouseError, match="being written by another process"):
        results.publish(staged, warehouse, lock_wait_seconds=0.5)
    assert warehouse.read_bytes() == before
    assert sorted(p.name for p in warehouse.parent.iterdir()) == sorted(["warehouse.duckdb", "runs", "scratch.duckdb"])


def test_a_failed_write_leaves_the_warehouse_untouched_and_no_side_file(warehouse) -> None:
    before = warehouse.read_bytes()
    with pytest.raises(duckdb.CatalogException), rewriting(warehouse) as con:
        con.execute("CREATE TABLE half_written AS SELECT 1 AS x")
        con.execute("SELECT * FROM no_such_table")
    assert warehouse.read_bytes() == before
    assert [p.name for p in warehouse.parent.iterdir()] == ["warehouse.duckdb"]


def storage_version(path: Path) -> str:
    with duckdb.connect() as con:
        con.execute("ATTACH ? AS w (READ_ONLY)", [str(path)])
        return con.execute(
            "SELECT tags['storage_version'] FROM duckdb_databases() WHERE database_name = 'w'"
        ).fetchall()[0][0]


def test_the_warehouse_keeps_the_format_duckdb_1x_reads_through_rebuilds_and_publishing(warehouse, tmp_path) -> None:
    """Without the network (tests/warehouse/test_duckdb_cli.py opens it with the 1.x CLI itself)."""
    assert storage_version(warehouse) == "v1.2.0+"
    (staged,) = staged_runs(warehouse, tmp_path, 1)
    results.publish(staged, warehouse)
    assert storage_version(warehouse) == "v1.2.0+"


def test_the_newest_format_on_request(make_movielens_1m, tmp_path) -> None:
    from etl.build import EtlOptions

    newest = tmp_path / "newest.duckdb"
    build_warehouse(make_movielens_1m(tmp_path / "files"), newest, EtlOptions(storage_version="latest"))
    assert storage_version(newest) != "v1.2.0+"


def test_a_killed_publishers_copy_is_removed_by_the_next_writer(warehouse, tmp_path) -> None:
    (staged,) = staged_runs(warehouse, tmp_path, 1)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = warehouse.with_name(f"{warehouse.name}.writing-{dead.stdout.strip()}")
    shutil.copyfile(warehouse, leftover)  # what a publisher killed mid-write leaves
    results.publish(staged, warehouse)
    assert not leftover.exists()


def test_a_new_file_in_small_row_groups_and_its_cursors(tmp_path) -> None:
    # A table of 5,000 rows in row groups of 2,048 is written in three of them; a cursor sees the same database.
    con = new_file(tmp_path / "new.duckdb", row_group_size=2048)
    other = cursor(con)
    other.execute("CREATE TABLE numbers AS SELECT range AS n FROM range(5000)")
    con.execute("CHECKPOINT")
    assert con.execute("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('numbers')").fetchall() == [(3,)]
    other.close()
    con.close()
    assert storage_version(tmp_path / "new.duckdb") == "v1.2.0+"
    with duckdb.connect(str(tmp_path / "new.duckdb"), read_only=True) as reader:
        assert reader.execute("SELECT count(*), sum(n) FROM numbers").fetchall() == [(5000, sum(range(5000)))]
