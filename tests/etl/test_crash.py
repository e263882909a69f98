"""Crashes: `etl build` killed with SIGKILL at each step of a rebuild leaves a warehouse that opens and holds
exactly the previous build or the new one, never a mix; the next build clears what the killed one left."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest

from etl.build import build_warehouse

# Where the child stops and is killed: (module, function, before/after it runs), and which build the
# warehouse must then hold.
KILL_POINTS = {
    # Mid-load: staging and checks done, the core tables built in the side file, splits not yet.
    "mid-load": ("etl.build", "_check_rejections", "before", "previous"),
    # Everything built, checkpointed and closed: only the rename is left.
    "before-swap": ("etl.build", "swap_in", "before", "previous"),
    # Renamed into place, the process not yet returned.
    "after-swap": ("etl.build", "swap_in", "after", "new"),
}


def state(warehouse: Path) -> tuple:
    """What distinguishes one build from another: its input, its rows, its run history."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "SELECT (SELECT fingerprint FROM dataset), (SELECT count(*) FROM ratings), "
            "(SELECT count(*) FROM user_matrix), (SELECT count(*) FROM etl_runs), "
            "(SELECT list(table_name ORDER BY table_name) FROM duckdb_tables())"
        ).fetchall()[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_etl_killed_leaves_one_whole_build(movielens, tmp_path, kill_at, point):
    module, function, when, expected = KILL_POINTS[point]
    previous_input = movielens("ml-1m")
    new_input = movielens("ml-1m")
    with (new_input / "ratings.dat").open("a") as f:
        f.write("4::4::3::978294300\n")  # one rating more: the new build differs from the previous
    warehouse = tmp_path / "warehouse.duckdb"
    build_warehouse(previous_input, warehouse)
    previous, previous_bytes = state(warehouse), sha256(warehouse)
    reference = tmp_path / "reference" / "warehouse.duckdb"
    build_warehouse(previous_input, reference)
    build_warehouse(new_input, reference)
    new = state(reference)
    assert new != previous

    kill_at(
        f"stop_around({module!r}, {function!r}, {when!r})\n",
        ["etl", "build", "--input", str(new_input), "--warehouse", str(warehouse), "--quiet"],
    )

    assert state(warehouse) == (previous if expected == "previous" else new)
    if expected == "previous":
        assert sha256(warehouse) == previous_bytes
        assert [p.name for p in tmp_path.glob("warehouse.duckdb.building-*")], "killed before it began building"
    # The killed build's side file stays until the next build, which removes it (its process is dead).
    build_warehouse(new_input, warehouse)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reference", "warehouse.duckdb"]
    assert state(warehouse)[:3] == new[:3]
