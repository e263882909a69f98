"""Every number a user can type has bounds (issue #27): a whole number past its column's type, or a model too big for
the machine, is a usage error naming the option (or a one-line error), before any work; never a traceback, and
never a run that trains and then fails to publish."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from trainer import train
from trainer.cli import app
from trainer.config import problem, resolve, settings
from trainer.errors import TrainerError

runner = CliRunner()
PAST_64_BITS = str(2**64)


def refused(result, option: str) -> None:
    """A usage error (exit 2) naming ``option``, with no traceback."""
    assert result.exit_code == 2, result.output
    assert f"'{option}'" in result.output and "Traceback" not in result.output, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("torch threads: ")]
    assert len(lines) == 1 and lines[0].startswith("trainer: error: "), result.output
    return lines[0]


WHOLE_NUMBERS = sorted(
    name
    for name, spec in settings().items()
    if not spec.internal and (spec.kind is int or getattr(spec.kind, "__origin__", None) is tuple)
)


def test_every_whole_number_setting_has_an_upper_bound() -> None:
    assert "epochs" in WHOLE_NUMBERS and "hidden" in WHOLE_NUMBERS and "seed" in WHOLE_NUMBERS
    past = {name: (2**70,) if name == "hidden" else 2**70 for name in WHOLE_NUMBERS}
    assert [name for name in WHOLE_NUMBERS if "must be at most" not in (problem(name, past[name]) or "")] == []


@pytest.mark.parametrize("name", WHOLE_NUMBERS)
@pytest.mark.parametrize("value", ["99999999999999999999999", PAST_64_BITS])
def test_a_whole_number_past_its_bound_is_a_usage_error(name, value, tmp_path) -> None:
    # The warehouse does not exist: before the bounds, these reached training (or its "no warehouse" error).
    option = settings()[name].flags[0] if settings()[name].flags else "--" + name.replace("_", "-")
    result = runner.invoke(
        app, ["run", "--warehouse", str(tmp_path / "none.duckdb"), option, value, "--runs-dir", str(tmp_path / "runs")]
    )
    refused(result, option)
    assert "must be at most" in result.output
    assert not (tmp_path / "runs").exists()


def test_the_bounds_are_the_columns_and_the_machine(tmp_path) -> None:
    base = ["run", "--warehouse", str(tmp_path / "none.duckdb")]
    result = runner.invoke(app, [*base, "--epochs", str(2**31)])
    refused(result, "--epochs")
    assert "at most 2147483647, not 2147483648" in result.output  # runs.epochs is an INTEGER
    refused(runner.invoke(app, [*base, "--seed", str(2**63)]), "--seed")  # runs.seed is a BIGINT
    refused(runner.invoke(app, [*base, "--seed", str(-(2**63) - 1)]), "--seed")
    refused(runner.invoke(app, [*base, "--threads", "1025"]), "--threads")
    result = runner.invoke(app, [*base, "--hidden", "20,16777216,20"])
    refused(result, "--hidden")
    assert "would not fit in memory" in result.output
    refused(runner.invoke(app, [*base, "--hidden", "20,0"]), "--hidden")
    for option, value in (("--epochs", "2147483647"), ("--seed", str(-(2**63)))):  # the bounds themselves pass
        assert "no warehouse here" in one_line_error(runner.invoke(app, [*base, option, value]))


@pytest.mark.parametrize("command", [["score", "RUN"], ["blend", "A", "B"], ["refit", "RUN"]])
def test_threads_past_64_bits_in_the_other_commands_are_usage_errors(command, tmp_path) -> None:
    result = runner.invoke(app, [*command, "--warehouse", str(tmp_path / "none.duckdb"), "--threads", PAST_64_BITS])
    refused(result, "--threads")


def test_a_config_file_past_the_bounds_is_a_one_line_error(tmp_path) -> None:
    config = tmp_path / "run.toml"
    config.write_text("epochs = 99999999999999999999\n")
    said = one_line_error(runner.invoke(app, ["run", "--config", str(config)]))
    assert "epochs must be at most 2147483647, not 99999999999999999999" in said
    config.write_text(f"seed = {2**63 - 1}\nthreads = 5000\n")
    said = one_line_error(runner.invoke(app, ["run", "--config", str(config)]))
    assert "threads must be at most 1024, not 5000" in said


def test_a_config_that_is_a_folder_or_not_utf8_is_a_one_line_error(tmp_path) -> None:
    said = one_line_error(runner.invoke(app, ["run", "--config", str(tmp_path)]))
    assert str(tmp_path) in said and "a folder" in said
    latin1 = tmp_path / "run.toml"
    latin1.write_bytes('runs_dir = "r\xe9sultats"\n'.encode("latin-1"))
    said = one_line_error(runner.invoke(app, ["run", "--config", str(latin1)]))
    assert str(latin1) in said and "UTF-8" in said


def test_a_model_too_big_for_the_machine_is_refused_before_it_is_built(warehouse, tmp_path, monkeypatch) -> None:
    # 40 movies x 2**20 units x 4 bytes, in and out, weights and gradients: 648 MiB, on a machine of 512 MiB.
    monkeypatch.setattr(train, "_memory", lambda device: 512 * 2**20)
    built = []
    monkeypatch.setattr(torch.nn.Linear, "reset_parameters", lambda self: built.append(self.weight.device.type))
    config = ["--warehouse", str(warehouse), "--runs-dir", str(tmp_path / "runs"), "--device", "cpu"]
    said = one_line_error(runner.invoke(app, ["run", *config, "--hidden", str(2**20)]))
    assert "--hidden 1048576" in said and "GiB" in said and "0.6 GiB" in said and "0.5 GiB of memory" in said
    assert set(built) == {"meta"}  # measured without memory, never allocated
    with pytest.raises(TrainerError, match="bayes-fm model"):  # its factors grow with --epochs
        train.run(
            resolve(
                {"warehouse": str(warehouse), "runs_dir": str(tmp_path / "runs"), "model": "bayes-fm", "epochs": 2**30}
            )
        )
    assert not any(Path(tmp_path / "runs").glob("*/checkpoint.pt"))
