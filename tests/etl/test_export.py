"""etl.export: the feature tables as Parquet, per-split tables hive-partitioned by split, read back by name."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from etl.cli import app
from etl.errors import EtlError
from etl.export import export_features
from warehouse.errors import WarehouseError
from warehouse.features import TABLES, open_features


@pytest.fixture
def warehouse(ml1m_built):
    return ml1m_built[1]  # only read: exporting opens it read-only


def test_export_round_trips_every_table(warehouse, tmp_path, query):
    output = tmp_path / "features"
    rows = export_features(warehouse, output)
    assert sorted(p.name for p in (output / "user_matrix").iterdir()) == ["split=random", "split=temporal"]
    con = open_features(output)
    for table in TABLES:
        columns = ", ".join(
            name
            for (name,) in query(
                warehouse,
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index",
                [table],
            )
        )
        original = query(warehouse, f"SELECT {columns} FROM {table} ORDER BY ALL")
        assert con.execute(f"SELECT {columns} FROM {table} ORDER BY ALL").fetchall() == original, table
        assert rows[table] == len(original)
    con.close()


def test_export_replaces_the_folder_whole(warehouse, tmp_path):
    output = tmp_path / "features"
    output.mkdir()
    (output / "stale.parquet").write_text("from an earlier export")
    export_features(warehouse, output)
    assert not (output / "stale.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features"]  # nothing partial or old left beside it


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(EtlError, match="no warehouse here"):
        export_features(tmp_path / "absent.duckdb", tmp_path / "out")
    with pytest.raises(WarehouseError, match="no such folder of Parquet features"):
        open_features(tmp_path / "out")
    (tmp_path / "out").mkdir()
    with pytest.raises(WarehouseError, match="dataset.parquet is missing"):
        open_features(tmp_path / "out")


def test_cli_export(warehouse, tmp_path):
    result = CliRunner().invoke(app, ["export", "--warehouse", str(warehouse), "--output", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    assert "user_matrix (8 rows)" in result.output
