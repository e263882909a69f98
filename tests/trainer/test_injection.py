"""SQL injection through every flag of `trainer run` and `trainer publish`, the config file, the checkpoint and
the staged results; and a checkpoint that would run code when unpickled.

Strings that select something (split, model, optimiser, device, loss) are checked against an allow-list or
the warehouse's own list before any query; paths and values are bound as parameters; the column names of a
staged run.json are checked against the runs table's columns; numbers are typed by the CLI.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import duckdb
import pytest
import torch
from typer.testing import CliRunner

from trainer import checkpoint
from trainer.cli import NOT_SERVED, app

# Closes a string literal, a quoted identifier or a statement, then creates a table: spliced anywhere, it acts.
PAYLOAD = "x'\"); CREATE TABLE pwned (i INT); --"


def trainer(*args: str):
    return CliRunner().invoke(app, list(args))


def train(warehouse: Path, tmp_path: Path, *args: str):
    return trainer(
        "run",
        "--warehouse",
        str(warehouse),
        "--runs-dir",
        str(tmp_path / "runs"),
        *["--epochs", "2", "--device", "cpu"],
        *args,
    )


def tables(warehouse: Path) -> set[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}


def refused(result, *phrases: str) -> None:
    assert result.exit_code in (1, 2) and "Traceback" not in result.output, result.output
    said = " ".join(result.output.replace("│", " ").split())  # wherever a usage error's panel breaks its lines
    for phrase in phrases:
        assert phrase in said, result.output


@pytest.mark.parametrize(
    "option, phrase",
    [
        ("--split", "unknown split"),
        ("--model", "is not one of"),
        ("--optimizer", "is not one of"),
        ("--device", "is not one of"),
    ],
)
def test_choices_are_checked_before_any_query(warehouse, tmp_path, option, phrase) -> None:
    refused(train(warehouse, tmp_path, option, PAYLOAD), phrase)
    assert "pwned" not in tables(warehouse) and "runs" not in tables(warehouse)


@pytest.mark.parametrize(
    "option",
    [
        "--epochs",
        "--batch-size",
        "--learning-rate",
        "--weight-decay",
        "--seed",
        "--top-n",
        "--cache-budget-mb",
        "--lock-wait",
    ],
)
def test_numeric_options_refuse_text(warehouse, tmp_path, option) -> None:
    result = trainer("run", "--warehouse", str(warehouse), option, f"1; {PAYLOAD}")
    assert result.exit_code == 2 and "Invalid value" in result.output
    assert "pwned" not in tables(warehouse)


def test_paths_are_bound(warehouse, tmp_path) -> None:
    """--warehouse and --runs-dir named like SQL: the run trains, publishes, and records the paths as they are."""
    hostile = tmp_path / PAYLOAD / f"{PAYLOAD}.duckdb"
    hostile.parent.mkdir()
    shutil.copyfile(warehouse, hostile)
    runs_dir = tmp_path / PAYLOAD / "runs"
    result = trainer(
        "run", "--warehouse", str(hostile), "--runs-dir", str(runs_dir), "--epochs", "2", "--device", "cpu"
    )
    assert result.exit_code in (0, NOT_SERVED), result.output
    (run_dir,) = runs_dir.iterdir()
    assert "pwned" not in tables(hostile)
    with duckdb.connect(str(hostile), read_only=True) as con:
        assert con.execute("SELECT run_dir FROM runs").fetchall() == [(str(run_dir.resolve()),)]
    # trainer publish RUN_DIR --warehouse W, both named like SQL
    result = trainer("publish", str(run_dir), "--warehouse", str(hostile))
    assert result.exit_code in (0, NOT_SERVED), result.output
    assert "pwned" not in tables(hostile)


def test_config_file_values_and_keys(warehouse, tmp_path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(f"split = {json.dumps(PAYLOAD)}\n")
    refused(train(warehouse, tmp_path, "--config", str(config)), "unknown split")
    config.write_text(f"{json.dumps(PAYLOAD)} = 1\n")
    refused(train(warehouse, tmp_path, "--config", str(config)), str(config))
    assert "pwned" not in tables(warehouse) and "runs" not in tables(warehouse)


def test_a_forged_checkpoint_cannot_smuggle_a_split(warehouse, tmp_path) -> None:
    """A checkpoint is plain data (weights_only), but its configuration is checked like flags."""
    assert train(warehouse, tmp_path).exit_code in (0, NOT_SERVED)
    (run_dir,) = (tmp_path / "runs").iterdir()
    state = checkpoint.load(run_dir, torch.device("cpu"))
    state["config"]["split"] = PAYLOAD
    torch.save(state, run_dir / checkpoint.FILE_NAME)
    (run_dir / "run.json").unlink()  # as if stopped before it staged its results (else: nothing to resume)
    refused(trainer("run", "--resume", str(run_dir), "--device", "cpu"), "unknown split")
    assert "pwned" not in tables(warehouse)


def test_a_malicious_pickle_is_refused_by_resume(warehouse, tmp_path) -> None:
    """The CLI path of test_train.py's check: `trainer run --resume` on a pickle that would run code."""
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    run_dir = tmp_path / "runs" / "forged"
    run_dir.mkdir(parents=True)
    (run_dir / checkpoint.FILE_NAME).write_bytes(pickle.dumps({"model": Exploit(), "config": {}}, protocol=2))
    refused(
        trainer("run", "--resume", str(run_dir), "--device", "cpu"), "not a checkpoint this trainer can load safely"
    )
    assert not marker.exists()


@pytest.fixture
def staged(warehouse, tmp_path) -> Path:
    """A finished run's folder of staged results (published once already)."""
    assert train(warehouse, tmp_path).exit_code in (0, NOT_SERVED)
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir


def test_staged_run_with_a_hostile_column_is_refused(warehouse, staged) -> None:
    run = json.loads((staged / "run.json").read_text())
    (staged / "run.json").write_text(json.dumps({**run, f"model) VALUES (1); {PAYLOAD}": 1}))
    before = tables(warehouse)
    refused(trainer("publish", str(staged), "--warehouse", str(warehouse)), "unexpected fields")
    assert tables(warehouse) == before
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchall() == [(1,)]  # only the run's own publish


def test_staged_run_values_are_bound(warehouse, staged) -> None:
    run = json.loads((staged / "run.json").read_text())
    (staged / "run.json").write_text(json.dumps({**run, "model": PAYLOAD, "split": PAYLOAD}))
    assert trainer("publish", str(staged), "--warehouse", str(warehouse)).exit_code in (0, NOT_SERVED)
    assert "pwned" not in tables(warehouse)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT model, split FROM runs").fetchall() == [(PAYLOAD, PAYLOAD)]


# -- trainer score --users: ids, ranges, @file, or one SELECT run read-only with external access disabled


@pytest.fixture(scope="module")
def trained_run(small_warehouse, tmp_path_factory) -> tuple[Path, str]:
    """A warehouse holding one training run, and the run's id."""
    root = tmp_path_factory.mktemp("scoring")
    warehouse = root / "warehouse.duckdb"
    shutil.copyfile(small_warehouse, warehouse)
    assert train(warehouse, root).exit_code in (0, NOT_SERVED)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        ((run_id,),) = con.execute("SELECT run_id FROM runs").fetchall()
    return warehouse, run_id


@pytest.mark.slow  # each case runs the locked-down child process
@pytest.mark.parametrize(
    "users, phrase",
    [
        # the issue's: closes the old code's subquery, copies a table out, reopens one
        ("select 1); copy (select * from runs) to 'leak.csv'; select * from (select 1", "Parser Error"),
        ("select 1; copy (select * from runs) to 'leak.csv'", "one SELECT statement, not SELECT, COPY"),
        ("copy (select * from runs) to 'leak.csv'", "one SELECT statement, not COPY"),
        (
            "select 1); attach 'other.duckdb' as o (read_write); create table o.pwned as select 1; "
            "select * from (select 1",
            "Parser Error",
        ),
        ("attach 'other.duckdb' as o (read_write)", "one SELECT statement, not ATTACH"),
        (
            "select user_id from ratings; attach 'other.duckdb' as o (read_write); create table o.pwned (i int)",
            "one SELECT statement, not SELECT, ATTACH, CREATE",
        ),
        ("install httpfs", "one SELECT statement, not LOAD"),
        ("select * from read_csv('/etc/passwd')", "file system operations are disabled"),
        ("select 1 from read_text('/etc/passwd')", "file system operations are disabled"),
        ("select * from query('copy (select 1) to ''leak.csv''')", "Expected a single SELECT statement"),
    ],
)
def test_score_users_runs_one_select_that_reads_only_the_warehouse(
    trained_run, tmp_path, monkeypatch, users, phrase
) -> None:
    warehouse, run_id = trained_run
    monkeypatch.chdir(tmp_path)  # where 'leak.csv' and 'other.duckdb' would be written
    with duckdb.connect("other.duckdb") as other:
        other.execute("CREATE TABLE mine AS SELECT 1 AS x")
    other_before, warehouse_before = (tmp_path / "other.duckdb").read_bytes(), warehouse.read_bytes()
    result = trainer(
        "score",
        run_id,
        *("--warehouse", str(warehouse), "--runs-dir", str(tmp_path / "runs"), "--device", "cpu", "--users", users),
    )
    refused(result, "--users is neither a list of ids nor a query this warehouse answers", phrase)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.duckdb"]  # no leak.csv, no runs/
    assert (tmp_path / "other.duckdb").read_bytes() == other_before and warehouse.read_bytes() == warehouse_before
