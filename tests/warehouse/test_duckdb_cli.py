"""Analysts' DuckDB 1.x tools open the warehouse: the real DuckDB CLI from PyPI (a 1.x release) runs every
example query read-only on a warehouse the ETL and a trained run wrote, and, held open across a run,
neither blocks the run's publishing nor loses the snapshot it opened."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainer.config import MachineSettings, resolve
from trainer.score import ScoreOptions, score
from trainer.train import run
from warehouse import results
from warehouse.sql import EXAMPLES_DIR

DUCKDB_CLI = "duckdb-cli==1.5.6"  # the CLI PyPI ships: DuckDB 1.5, which reads storage version v1.2.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def duckdb_cli(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("duckdb-cli") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet", DUCKDB_CLI],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"installing {DUCKDB_CLI} from the package index timed out")
    if done.returncode:
        pytest.skip(f"cannot install {DUCKDB_CLI} from the package index: {done.stderr.strip().splitlines()[-1:]}")
    cli = venv / "bin" / "duckdb"
    assert subprocess.run([str(cli), "--version"], capture_output=True, text=True).stdout.startswith("v1.")
    return cli


@pytest.fixture(scope="module")
def trained(small_warehouse, tmp_path_factory) -> Path:
    """A warehouse the ETL built, with a run that passed its audit (so the serving views answer)."""
    path = tmp_path_factory.mktemp("cli") / "warehouse.duckdb"
    shutil.copyfile(small_warehouse, path)
    trained = run(resolve({"warehouse": str(path), "runs_dir": str(path.parent / "runs")}))
    assert trained.published and trained.published.promoted
    results.promote(trained.run_id, path, ("recommendations",))  # tiny data: its lists served by hand
    # A scoring with shorter lists: recommendations change (changed_recommendations.sql finds them).
    score(
        ScoreOptions(
            trained.run_id,
            path,
            top_n=5,
            machine=MachineSettings(runs_dir=str(path.parent / "runs"), device="cpu", publish_anyway=True),
        )
    )
    return path


def cli(duckdb_cli: Path, warehouse: Path, *commands: str) -> subprocess.CompletedProcess:
    args = [str(duckdb_cli), "-readonly", "-csv", str(warehouse)]
    for command in commands:
        args += ["-c", command]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("example", sorted(EXAMPLES_DIR.glob("*.sql")), ids=lambda p: p.name)
def test_every_example_query_runs_in_the_duckdb_1x_cli(duckdb_cli, trained, example) -> None:
    done = cli(duckdb_cli, trained, "SET VARIABLE user_id = 1", "SET VARIABLE min_ratings = 1", f".read {example}")
    assert done.returncode == 0 and "Error" not in done.stderr, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) >= (1 if example.name == "failed_runs.sql" else 2), done.stdout  # a header, then rows


def test_a_cli_session_held_open_across_a_run_keeps_its_snapshot(duckdb_cli, trained, tmp_path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(trained, warehouse)
    session = subprocess.Popen(
        [str(duckdb_cli), "-readonly", "-csv", str(warehouse)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def ask(name: str) -> str:
        """The session's answer, through a file (its stdout is buffered while it waits for more input)."""
        answer = tmp_path / name
        session.stdin.write(f".once {answer}\nSELECT count(*) FROM runs;\n")
        session.stdin.flush()
        deadline = time.monotonic() + 30
        while not (answer.exists() and answer.read_text().count("\n") >= 2):
            assert time.monotonic() < deadline, session.stderr
            time.sleep(0.05)
        return answer.read_text().splitlines()[1]

    try:
        assert ask("before.csv") == "2"  # the fixture's training run and its scoring
        started = time.monotonic()
        summary = run(
            resolve({"warehouse": str(warehouse), "runs_dir": str(tmp_path / "runs"), "lock_wait_seconds": 0})
        )
        assert summary.published and time.monotonic() - started < 60
        assert ask("after.csv") == "2"  # the snapshot it opened
    finally:
        session.kill()
        session.wait()
    assert cli(duckdb_cli, warehouse, "SELECT count(*) FROM runs").stdout.splitlines()[1] == "3"  # a new session
