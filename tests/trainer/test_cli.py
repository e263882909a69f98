"""The trainer CLI with typer's CliRunner: help, defaults, and plain errors (exit 1) instead of tracebacks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import torch
from typer.testing import CliRunner

import trainer.threads
from trainer.cli import NOT_SERVED, app

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
    assert result.exit_code in (0, NOT_SERVED), result.output
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
    assert {large.exit_code, small.exit_code} <= {0, NOT_SERVED}, large.output + small.output
    assert large.output.count("torch threads:") == 1
    assert "torch threads: 3 (3 usable cores, 0.0 kept busy by other processes;" in large.output
    assert "torch threads: 1 (3 usable cores, 0.0 kept busy by other processes, a small training step" in small.output
    con = duckdb.connect(str(warehouse), read_only=True)
    recorded = "SELECT json_extract(config, '$.hidden[0]')::INTEGER, json_extract(config, '$.threads')::INTEGER"
    assert con.execute(f"{recorded} FROM runs ORDER BY started_at").fetchall() == [(500, 3), (20, 1)]


def test_missing_warehouse_says_run_make_etl_and_leaves_no_run_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default --runs-dir, runs/, would be made here
    result = invoke("run", "--warehouse", str(tmp_path / "nope.duckdb"))
    assert result.exit_code == 1
    assert "make etl" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == [], "runs/ or a run's folder left behind"


def test_unknown_split_lists_the_known_ones(warehouse, tmp_path) -> None:
    # Only the warehouse knows its splits: still a usage error (exit 2) naming --split, with the known ones.
    result = invoke("run", "--warehouse", str(warehouse), "--split", "u1", "--runs-dir", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "'--split'" in result.output and "unknown split 'u1'" in result.output and "random" in result.output
    # From a config file it is no mistake of the command line: a plain error (exit 1)
    config = tmp_path / "run.toml"
    config.write_text('split = "u1"\n')
    result = invoke("run", "--warehouse", str(warehouse), "--config", str(config), "--runs-dir", str(tmp_path))
    assert result.exit_code == 1 and "unknown split 'u1'" in result.output and "--split" not in result.output


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


@pytest.mark.slow  # three child processes, one of them a training run
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
    assert done.returncode in (0, NOT_SERVED), done.stderr  # two epochs on tiny data: finished, maybe not served
    assert "epoch 2/2" in done.stderr and "test RMSE" in done.stderr


@pytest.mark.slow  # a dozen child processes, three of them training runs
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
        if name == "typer":  # not typer's own `typer [PATH_OR_MODULE] run`: the command as typed
            assert "Usage: python -m typer trainer run [OPTIONS]" in output, output
        code, output = outcome(form, "--model", "typo")
        assert code == 2 and "'i-autorec'" in output, (name, output)
        code, output = outcome(form, "--split", "nope")
        assert code == 2 and "'--split'" in output and "unknown split 'nope'" in output, (name, output)
    results = {}
    for name, form in forms.items():
        code, output = outcome(form, "--epochs", "3", "--threads", "1", copy=name)
        assert code in (0, NOT_SERVED), (name, output)
        results[name] = [line.split(":", 1)[1].split(";")[0] for line in output.splitlines() if "test RMSE" in line]
    assert len({tuple(lines) for lines in results.values()}) == 1, results  # the same metrics from each form


# -- one style of help, usage errors that name the option (issue #29's first hour)


def help_of(*command: str, columns: int = 100) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": str(columns)}, prog_name="trainer")
    assert result.exit_code in (0, NOT_SERVED), result.output
    return result.output


def flat(text: str) -> str:
    """Help text with the terminal's line breaks and the panels' borders taken out, to search for a phrase."""
    return " ".join(text.replace("│", " ").split())


COMMANDS = ("run", "score", "blend", "refit", "publish", "bench", "report")


def test_run_help_groups_its_options_in_panels_readable_at_100_columns() -> None:
    from trainer.cli import RUN_PANELS
    from trainer.config import settings

    output = help_of("run")
    lines = output.splitlines()
    assert max(len(line) for line in lines) <= 100
    titles = [line.split("─ ", 1)[1].split(" ─")[0] for line in lines if line.startswith("╭─ ")]
    assert titles == ["Options", *RUN_PANELS]
    options = {name for name, spec in settings().items() if not spec.internal}
    assert options <= {name for names in RUN_PANELS.values() for name in names}, "a setting without a panel"

    def panel(title: str) -> str:
        return output.split(f"╭─ {title} ")[1].split("╰")[0]

    assert "--split" in panel("Data") and "--learning-rate" in panel("Optimisation")
    assert "--threads" in panel("Machine") and "--publish-anyway" in panel("Predictions and publishing")
    assert "--config" in panel("Options") and "--resume" in panel("Options")
    # the help column is not squeezed (it was 22 characters wide, for 291 lines)
    (row,) = [line for line in lines if line.startswith("│ --optimizer ")]
    assert len(row) - row.index("The optimiser") >= 40
    assert "Models (--model):" in output and all(f" {name} " in output for name in ("i-autorec", "ease"))


def test_every_command_shows_options_arguments_and_defaults_alike() -> None:
    for command in ("", *COMMANDS):
        output = help_of(*command.split())
        usage = next(line for line in output.splitlines() if "Usage:" in line)
        assert "<bool>" not in output, command  # a flag takes no value
        assert "{" not in usage and "}" not in usage, usage  # positionals as RUN_ID, not {run_id}
        assert "[default: (" not in output, command
        if "--warehouse" in output:
            (row,) = [line for line in output.splitlines() if line.startswith("│ --warehouse ")]
            assert "<path>" in row, (command, row)
            assert "[default: warehouse.duckdb]" in output, command
    assert "Usage: trainer score [OPTIONS] RUN_ID " in help_of("score")
    assert "Usage: trainer blend [OPTIONS] RUN_ID... " in help_of("blend")
    assert "Usage: trainer publish [OPTIONS] RUN_DIR " in help_of("publish")


def test_trainer_help_lists_the_commands_in_the_readmes_order() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = [
        line.split("`trainer ")[1].split()[0].rstrip("`")
        for line in readme.splitlines()
        if line.startswith("| `trainer ")
    ]
    commands = help_of().split("─ Commands ")[1]
    listed = [match[1] for match in re.finditer(r"^│ (\w+) ", commands, flags=re.MULTILINE)]
    # every command of the README's table, in its order (trainer.cli.COMMAND_ORDER); any other after them
    assert documented and listed[: len(documented)] == documented, (documented, listed)


def test_help_says_what_the_defaults_are() -> None:
    score = flat(help_of("score"))
    assert "the default model, deep-ae" not in score and "the default autoencoder" in score
    bench = flat(help_of("bench"))
    assert "docs/bench-results.md]" not in bench and "Default: bench-results.md in --warehouse's folder" in bench


def test_bench_writes_its_markdown_beside_the_warehouse_unless_told(tmp_path, monkeypatch) -> None:
    import trainer.bench

    written = []

    def bench(data_dir, work_dir, warehouse, markdown, **options):
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text("| model | test RMSE |\n")
        written.append(markdown)
        return []

    monkeypatch.setattr(trainer.bench, "bench", bench)
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "elsewhere" / "results.duckdb"
    result = invoke("bench", "--warehouse", str(results))
    assert result.exit_code == 0, result.output
    assert written == [tmp_path / "elsewhere" / "bench-results.md"] and not (tmp_path / "docs").exists()
    assert "| model | test RMSE |" in result.output
    result = invoke("bench", "--warehouse", str(results), "--markdown", "docs/bench-results.md")
    assert result.exit_code == 0 and written[-1] == Path("docs/bench-results.md")


def test_usage_mistakes_exit_2_and_name_the_option() -> None:
    mistakes = [
        (["run", "--model", "autoencodr"], "--model", "'autoencoder'"),
        (["run", "--device", "gpu"], "--device", "'cuda'"),
        (["run", "--optimizer", "adamw"], "--optimizer", "'adam'"),
        (["run", "--loss", "mae"], "--loss", "'observed'"),
        (["run", "--activation", "relu"], "--activation", "'selu'"),
        (["run", "--ease-input", "counts"], "--ease-input", "'stars'"),
        (["run", "--global-kernel-start", "zero"], "--global-kernel-start", "'paper'"),
        (["run", "--hidden", "20,x"], "--hidden", "whole numbers"),
        (["run", "--epochs", "0"], "--epochs", "at least 1"),
        (["score", "RUN", "--device", "gpu"], "--device", "'cpu'"),
        (["refit", "RUN", "--device", "gpu"], "--device", "'cpu'"),
        (["blend", "A", "B", "--device", "gpu"], "--device", "'cpu'"),
        (["blend"], "RUN_ID", "Missing argument"),
    ]
    for args, option, said in mistakes:
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 2, (args, result.output)
        assert f"'{option}'" in result.output and said in result.output, (args, result.output)
        assert "Value error" not in result.output and "Traceback" not in result.output, result.output


def test_defaults_shown_in_help_leave_the_preset_and_config_file_in_charge(warehouse, tmp_path, monkeypatch) -> None:
    """--help shows TrainConfig's defaults, but an option left alone is not given: mf's preset (hidden 50, learning
    rate 0.03, l2 30) and a config file still apply; an option given, even at the default's value, overrides."""
    config = tmp_path / "run.toml"
    config.write_text("l2 = 7.0\n")
    common = ["run", "--model", "mf", "--epochs", "2", "--runs-dir", str(tmp_path / "runs"), "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        first = invoke(*common, "--warehouse", str(warehouse), "--config", str(config))
        monkeypatch.setenv("WAREHOUSE", str(warehouse))  # from the environment: given too
        second = invoke(*common, "--learning-rate", "0.01")
    finally:
        torch.set_num_threads(threads)
    for result in (first, second):  # finished and recorded in runs (whether or not it serves analysts)
        assert "test RMSE" in result.output and result.exit_code not in (1, 2), result.output
    con = duckdb.connect(str(warehouse), read_only=True)
    rows = con.execute(
        "SELECT json_extract(config, ['$.hidden', '$.learning_rate', '$.l2', '$.epochs'])::VARCHAR[] FROM runs "
        "ORDER BY started_at"
    ).fetchall()
    assert rows == [(["[50]", "0.03", "7.0", "2"],), (["[50]", "0.01", "30.0", "2"],)]


def test_examples_are_listed_printed_and_located_from_the_installed_package() -> None:
    listed = runner.invoke(app, ["examples"])
    assert listed.exit_code == 0 and "user_top10" in listed.output and "ranking_quality" in listed.output
    printed = runner.invoke(app, ["examples", "user_top10"])
    assert printed.exit_code == 0 and "FROM recommendations" in printed.output
    located = runner.invoke(app, ["examples", "user_top10.sql", "--path"])
    assert located.exit_code == 0 and Path(located.output.strip()).read_text().startswith("-- A user's ten best")
    wrong = runner.invoke(app, ["examples", "nope"])
    assert wrong.exit_code == 2 and "no example 'nope'" in wrong.output
