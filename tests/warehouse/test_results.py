"""A run's row is checked against the runs table's one schema (sql/results/runs.sql) when it is staged."""

from __future__ import annotations

import pytest

from warehouse.results import RUN_FILE, check_run_row, stage

ROW = {"run_id": "20261207-000000-abcd", "kind": "train", "model": "ease", "test_rmse": None, "epochs": 3}


def test_a_row_the_runs_table_takes_is_staged(tmp_path) -> None:
    stage(tmp_path, ROW, {})
    assert (tmp_path / RUN_FILE).is_file()


@pytest.mark.parametrize(
    ("row", "refusal"),
    [
        (ROW | {"test_rsme": 0.9}, r"not columns of runs: \['test_rsme'\]"),
        (ROW | {"epochs": "three"}, "a row runs would not take"),
    ],
    ids=["a typo", "a wrong type"],
)
def test_a_row_with_a_typo_or_a_wrong_type_is_refused_before_anything_is_written(tmp_path, row, refusal) -> None:
    with pytest.raises(ValueError, match=refusal):
        stage(tmp_path, row, {})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=refusal):
        check_run_row(row)
