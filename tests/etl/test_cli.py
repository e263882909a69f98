"""etl.cli: help, a build, errors as one plain line (exit 1) that leave no folder behind, bad option values
(exit 2)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from etl.cli import app

# No MOVIELENS_DIR or WAREHOUSE from the environment running the tests, nor make's (`make test` runs them).
runner = CliRunner(env={"MOVIELENS_DIR": None, "WAREHOUSE": None, "MAKELEVEL": None, "MAKECMDGOALS": None})


def closed_port_url() -> str:
    """A URL on a port nothing listens on, so a download fails at once, as offline."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "build" in result.output
    result = runner.invoke(app, ["build", "--help"])
    assert result.exit_code == 0
    for option in ("--input", "--warehouse", "--max-bad-rows", "--seed", "--test-fraction", "--validation-fraction"):
        assert option in result.output
    assert "SHA-256" in result.output and "Traceback" not in result.output


def test_build(movielens, tmp_path, query):
    warehouse = tmp_path / "out" / "warehouse.duckdb"
    result = runner.invoke(
        app,
        [
            "build",
            "--input",
            str(movielens("ml-1m")),
            "--warehouse",
            str(warehouse),
            "--seed",
            "7",
            "--test-fraction",
            "0.2",
            "--validation-fraction",
            "0.1",
            "--memory-limit-mb",
            "512",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"{warehouse}: 12 ratings, 5 users, 5 movies, 0 rejected rows, in " in result.output
    assert query(warehouse, "SELECT options FROM etl_runs") == [
        (
            '{"max_bad_rows": 0, "split_seed": 7, "test_fraction": 0.2, "validation_fraction": 0.1, "lock_wait_seconds": 30.0, '
            '"memory_limit_mb": 512, "storage_version": "v1.2.0"}',
        )
    ]
    assert query(warehouse, "SELECT description FROM splits WHERE split = 'random'") == [
        ("seeded random 20.0% test (seed 7)",)
    ]


def test_quiet_build_prints_nothing(movielens, tmp_path):
    result = runner.invoke(
        app, ["build", "--input", str(movielens("ml-latest")), "--warehouse", str(tmp_path / "w.duckdb"), "-q"]
    )
    assert (result.exit_code, result.output) == (0, "")


@pytest.mark.parametrize("folder", ["empty", "missing"])
def test_bad_folder_is_one_plain_error(tmp_path, folder):
    path = tmp_path / folder
    if folder == "empty":
        path.mkdir()
    result = runner.invoke(app, ["build", "--input", str(path), "--warehouse", str(tmp_path / "w.duckdb")])
    assert result.exit_code == 1
    assert result.output.startswith("etl: error: ")
    assert str(path) in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "w.duckdb").exists()


def test_bad_row_is_one_plain_error(movielens, tmp_path):
    folder = movielens("ml-1m")
    with (folder / "ratings.dat").open("a") as f:
        f.write("1::1::6::978300760\n")
    result = runner.invoke(app, ["build", "--input", str(folder), "--warehouse", str(tmp_path / "w.duckdb")])
    assert result.exit_code == 1
    assert f"etl: error: {folder / 'ratings.dat'}, line 13: rating '6' is outside" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(
        app,
        ["build", "--input", str(folder), "--warehouse", str(tmp_path / "w.duckdb"), "--max-bad-rows", "1", "--quiet"],
    )
    assert (result.exit_code, result.output) == (0, "")


@pytest.mark.parametrize(
    "option, value",
    [
        ("--test-fraction", "2"),
        ("--test-fraction", "0"),
        ("--validation-fraction", "1"),
        ("--validation-fraction", "-0.1"),
        ("--max-bad-rows", "-1"),
        ("--seed", "abc"),
        ("--lock-wait", "-5"),
        ("--test-fraction", "a tenth"),
        ("--memory-limit-mb", "10"),
        ("--storage-version", "v0.9"),
        ("--input", "a-file"),
        ("--warehouse", "a-folder"),
    ],
)
def test_bad_option_values(movielens, tmp_path, option, value):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-folder").mkdir()
    if value in ("a-file", "a-folder"):
        value = str(tmp_path / value)
    result = runner.invoke(
        app, ["build", "--input", str(tmp_path), "--warehouse", str(tmp_path / "w.duckdb"), option, value]
    )
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "w.duckdb").exists()


@pytest.mark.parametrize("make", [None, "run", ""])
def test_missing_input_suggests_the_command_that_was_run(tmp_path, make):
    env = {} if make is None else {"MAKELEVEL": "1", "MAKECMDGOALS": make}
    args = ["build", "--input", str(tmp_path / "nonexistent"), "--warehouse", str(tmp_path / "w.duckdb")]
    result = runner.invoke(app, args, env=env, prog_name="etl")
    assert result.exit_code == 1
    line = result.output.strip()
    assert line.startswith("etl: error: ") and "\n" not in line
    expected = {
        None: ": etl build --input /path/to/ml-1m",
        "run": ": make run MOVIELENS_DIR=/path/to/ml-1m",
        "": ": make MOVIELENS_DIR=/path/to/ml-1m",
    }[make]
    assert line.endswith(expected)
    assert "make" not in line if make is None else "--input" not in line


def test_bare_build_offline_leaves_nothing(tmp_path, monkeypatch):
    """`etl build` in an empty folder, offline: data/ml-1m is missing and cannot be downloaded."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["build"], env={"MOVIELENS_BASE_URL": closed_port_url()}, prog_name="etl")
    assert result.exit_code == 1
    assert "etl: error: Download of " in result.output and "offline" in result.output
    assert result.output.rstrip().endswith(": etl build --input /path/to/ml-1m")
    assert list(tmp_path.iterdir()) == [], "data/ or a download left behind"


def test_failed_build_removes_the_warehouse_folder_it_made(movielens, tmp_path):
    folder = movielens("ml-1m")
    with (folder / "ratings.dat").open("a") as f:
        f.write("1::1::6::978300760\n")
    warehouse = tmp_path / "new" / "sub" / "w.duckdb"
    result = runner.invoke(app, ["build", "--input", str(folder), "--warehouse", str(warehouse)])
    assert result.exit_code == 1
    assert not (tmp_path / "new").exists()


def test_module_entry_point_exit_status(tmp_path):
    """The real process: exit status 1 and a one-line message on stderr, nothing on stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "etl", "build", "--input", str(tmp_path), "--warehouse", str(tmp_path / "w.duckdb")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert (
        result.stderr == f"etl: error: {tmp_path}: not a MovieLens folder: found none of u.data (ml-100k), "
        "ratings.dat (ml-1m, ml-10m) or ratings.csv (ml-latest, ml-20m, ml-25m, ml-32m)\n"
    )
