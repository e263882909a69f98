"""The trainer CLI with typer's CliRunner: help, defaults, and plain errors (exit 1) instead of tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import torch
from typer.testing import CliRunner

import trainer.threads
from trainer.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_help_explains_every_option() -> None:
    result = invoke("run", "--help")
    assert result.exit_code == 0
    for option in (
        "--warehouse",
        "--split",
        "--model",
        "--epochs",
        "--batch-size",
        "--learning-rate",
        "--seed",
        "--device",
        "--config",
        "--resume",
    ):
        assert option in result.output
    assert invoke("--help").exit_code == 0
    assert invoke("--version").exit_code == 0


def test_run_end_to_end_prints_the_metrics(warehouse, tmp_path) -> None:
    threads = torch.get_num_threads()
    try:
        result = invoke(
            "run", "--warehouse", str(warehouse), "--epochs", "3", "--runs-dir", str(tmp_path / "r"), "--threads", "1"
        )
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    assert "epoch 3/3" in result.output and "test RMSE" in result.output
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute(
        "SELECT epochs, split, model, json_extract(config, '$.threads')::INTEGER FROM runs"
    ).fetchall() == [(3, "random", "autoencoder", 1)]
    assert "torch threads" not in result.output  # asked for, not chosen: nothing to say


def test_threads_0_chooses_says_so_once_and_records_the_number(warehouse, tmp_path, monkeypatch) -> None:
    # --threads 0, the default: the free cores (here 3, idle) for a large dense step, 1 for the default's small one
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(trainer.threads, "usable_cores", lambda: 3)
    monkeypatch.setattr(trainer.threads, "busy_elsewhere", lambda: 0.0)
    threads = torch.get_num_threads()
    try:
        common = ("--warehouse", str(warehouse), "--epochs", "2", "--runs-dir", str(tmp_path / "r"))
        large = invoke("run", *common, "--hidden", "500,500", "--threads", "0")
        assert torch.get_num_threads() == 3
        small = invoke("run", *common)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert large.exit_code == 0 and small.exit_code == 0, large.output + small.output
    assert large.output.count("torch threads:") == 1
    assert "torch threads: 3 (3 usable cores, 0.0 kept busy by other processes;" in large.output
    assert "torch threads: 1 (3 usable cores, 0.0 kept busy by other processes, a small training step" in small.output
    con = duckdb.connect(str(warehouse), read_only=True)
    recorded = "SELECT json_extract(config, '$.hidden[0]')::INTEGER, json_extract(config, '$.threads')::INTEGER"
    assert con.execute(f"{recorded} FROM runs ORDER BY started_at").fetchall() == [(500, 3), (20, 1)]


def test_missing_warehouse_says_run_make_etl(tmp_path) -> None:
    result = invoke("run", "--warehouse", str(tmp_path / "nope.duckdb"))
    assert result.exit_code == 1
    assert "make etl" in result.output and "Traceback" not in result.output


def test_unknown_split_lists_the_known_ones(warehouse, tmp_path) -> None:
    result = invoke("run", "--warehouse", str(warehouse), "--split", "u1", "--runs-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "unknown split 'u1'" in result.output and "random" in result.output


def test_unknown_model_and_bad_values(warehouse) -> None:
    # Usage errors (exit 2) naming the option, and for a choice the valid values, before any work.
    result = invoke("run", "--warehouse", str(warehouse), "--model", "gpt")
    assert result.exit_code == 2 and "--model" in result.output and "'i-autorec'" in result.output
    result = invoke("run", "--warehouse", str(warehouse), "--epochs", "0")
    assert result.exit_code == 2 and "must be at least 1, not 0" in result.output
    assert invoke("run", "--epochs", "three").exit_code == 2
    for option, value, reason in [
        ("--learning-rate", "nan", "must be a finite number"),
        ("--learning-rate", "inf", "must be a finite number"),
        ("--learning-rate", "0", "must be above 0"),
        ("--weight-decay", "-1", "must be at least 0"),
        ("--l2", "nan", "finite"),
        ("--dropout", "1.5", "must be below 1"),
    ]:
        result = invoke("run", "--warehouse", str(warehouse), option, value)
        assert result.exit_code == 2 and option in result.output and reason in result.output, result.output


def test_cuda_asked_for_but_absent(warehouse, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = invoke("run", "--warehouse", str(warehouse), "--device", "cuda")
    assert result.exit_code == 1 and "no CUDA device" in result.output


def test_resume_of_a_missing_run(warehouse, tmp_path) -> None:
    result = invoke("run", "--warehouse", str(warehouse), "--resume", str(tmp_path / "runs" / "x"))
    assert result.exit_code == 1 and "no such run folder" in result.output


def test_the_installed_command_exits_with_the_apps_code_and_its_output_flushed(warehouse, tmp_path) -> None:
    # `trainer` ends with os._exit (trainer.cli.entry_point): what was printed must still arrive, and a
    # failure must still exit 1.
    command = [sys.executable, "-m", "trainer"]
    done = subprocess.run([*command, "--version"], capture_output=True, text=True)
    assert (done.returncode, done.stdout.startswith("trainer ")) == (0, True)
    missing = tmp_path / "nothing.duckdb"
    done = subprocess.run([*command, "run", "--warehouse", str(missing)], capture_output=True, text=True)
    assert done.returncode == 1 and "make etl" in done.stderr
    done = subprocess.run(
        [*command, "run", "--warehouse", str(warehouse), "--epochs", "2", "--runs-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "epoch 2/2" in done.stderr and "test RMSE" in done.stderr


def test_help_answers_without_importing_torch() -> None:
    # torch takes seconds to import: the commands that train import it, `trainer --help` need not.
    done = subprocess.run(
        [sys.executable, "-c", "import sys, trainer.cli; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "False"


def test_typer_trainer_run_and_python_m_trainer_run_are_trainer_run(warehouse, tmp_path) -> None:
    """`typer trainer run ...` from the repository root (the form users were promised), `python -m trainer run
    ...` and the installed `trainer run ...`: same options, output, exit codes and results."""
    root = Path(__file__).resolve().parents[2]
    installed = Path(sys.executable).parent / "trainer"
    forms = {
        "typer": [sys.executable, "-m", "typer", "trainer", "run"],
        "module": [sys.executable, "-m", "trainer", "run"],
    }
    if installed.exists():  # absent when the checkout is used from PYTHONPATH, uninstalled
        forms["installed"] = [str(installed), "run"]

    def outcome(form: list[str], *args: str, copy: str = "") -> tuple[int, str]:
        target = warehouse
        if copy:
            target = tmp_path / f"{copy}.duckdb"
            target.write_bytes(warehouse.read_bytes())
        done = subprocess.run(
            [*form, *args, "--warehouse", str(target), "--runs-dir", str(tmp_path / "runs")],
            cwd=root,
            capture_output=True,
            text=True,
        )
        return done.returncode, done.stdout + done.stderr

    for name, form in forms.items():
        code, output = outcome(form, "--help")
        assert code == 0 and "--learning-rate" in output and "--publish-anyway" in output, (name, output)
        code, output = outcome(form, "--model", "typo")
        assert code == 2 and "'i-autorec'" in output, (name, output)
        code, output = outcome(form, "--split", "nope")
        assert code == 1 and "unknown split 'nope'" in output, (name, output)
    results = {}
    for name, form in forms.items():
        code, output = outcome(form, "--epochs", "3", "--threads", "1", copy=name)
        assert code == 0, (name, output)
        results[name] = [line.split(":", 1)[1].split(";")[0] for line in output.splitlines() if "test RMSE" in line]
    assert len({tuple(lines) for lines in results.values()}) == 1, results  # the same metrics from each form
