"""A run's checkpoint is tied to it (issue #27): its row of `runs` records the checkpoint's SHA-256, and whatever
loads a published run's model (trainer score, blend, refit, --init-from: trainer/trained.py) refuses another run's
checkpoint copied into its folder, naming both runs, or one changed since; runs published before the digest was
recorded still load."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest
import torch
from typer.testing import CliRunner

from trainer import checkpoint, trained
from trainer.cli import NOT_SERVED, app
from trainer.config import MachineSettings, resolve
from trainer.errors import TrainerError
from trainer.refit import RefitOptions, refit_config
from trainer.train import run

SETTINGS = {
    "model": "mf",
    "hidden": (4,),
    "epochs": 3,
    "batch_size": 16,
    "device": "cpu",
    "top_n": 3,
    "publish_anyway": True,
}


@pytest.fixture(scope="module")
def two_runs(small_warehouse, tmp_path_factory) -> tuple[Path, str, str]:
    """A warehouse with two published runs of the same model (seeds 1 and 2)."""
    root = tmp_path_factory.mktemp("checkpoints")
    warehouse = root / "warehouse.duckdb"
    shutil.copyfile(small_warehouse, warehouse)
    ids = [
        run(resolve({**SETTINGS, "seed": seed, "warehouse": str(warehouse), "runs_dir": str(root / "runs")})).run_id
        for seed in (1, 2)
    ]
    return warehouse, ids[0], ids[1]


@pytest.fixture
def runs(two_runs, tmp_path) -> tuple[Path, Path, Path]:
    """This test's copy of the warehouse and of both run folders (the copy's runs.run_dir pointing at them)."""
    warehouse, first, second = two_runs
    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(warehouse, copy)
    folders = []
    with duckdb.connect(str(copy)) as con:
        for run_id in (first, second):
            (original,) = con.execute("SELECT run_dir FROM runs WHERE run_id = ?", [run_id]).fetchone()
            folders.append(Path(shutil.copytree(original, tmp_path / "runs" / run_id)))
            con.execute("UPDATE runs SET run_dir = ? WHERE run_id = ?", [str(folders[-1]), run_id])
    return copy, folders[0], folders[1]


def load(warehouse: Path, run_id: str) -> trained.TrainedRun:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return trained.load(con, run_id, torch.device("cpu"))


def score(warehouse: Path, run_id: str, tmp_path: Path):
    return CliRunner().invoke(
        app, ["score", run_id, "--warehouse", str(warehouse), "--runs-dir", str(tmp_path / "scores"), "--device", "cpu"]
    )


def test_each_run_records_its_checkpoints_digest(two_runs) -> None:
    warehouse, first, second = two_runs
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute("SELECT run_id, run_dir, checkpoint_sha256 FROM runs ORDER BY run_id").fetchall()
    assert [row[0] for row in rows] == sorted([first, second])
    for _, run_dir, recorded in rows:
        assert recorded == hashlib.sha256((Path(run_dir) / checkpoint.FILE_NAME).read_bytes()).hexdigest()


def test_another_runs_checkpoint_copied_into_a_folder_is_refused_naming_both(runs, tmp_path) -> None:
    warehouse, first, second = runs
    assert score(warehouse, second.name, tmp_path).exit_code in (0, NOT_SERVED)  # its own loads
    shutil.copyfile(first / checkpoint.FILE_NAME, second / checkpoint.FILE_NAME)

    result = score(warehouse, second.name, tmp_path)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    said = result.output.strip()
    assert len(said.splitlines()) == 1 and f"is run {first.name}'s checkpoint, not run {second.name}'s" in said
    # the one place that loads a run's model: blend, refit and --init-from refuse it too
    with pytest.raises(TrainerError, match=f"run {first.name}'s checkpoint, not run {second.name}'s"):
        load(warehouse, second.name)
    with pytest.raises(TrainerError, match=f"run {first.name}'s checkpoint"):
        refit_config(RefitOptions(second.name, warehouse, MachineSettings(runs_dir=str(tmp_path / "refits"))))
    child = resolve(
        {**SETTINGS, "warehouse": str(warehouse), "runs_dir": str(tmp_path / "r"), "init_from": second.name}
    )
    with pytest.raises(TrainerError, match=f"run {first.name}'s checkpoint"):
        run(child)
    with duckdb.connect(str(warehouse), read_only=True) as con:  # nothing was served under the wrong parent
        assert con.execute("SELECT count(*) FROM runs WHERE parent_run_id = ?", [second.name]).fetchone() == (1,)


def test_a_checkpoint_changed_since_the_run_finished_is_refused(runs, tmp_path) -> None:
    warehouse, _, second = runs
    state = checkpoint.load(second, torch.device("cpu"))
    for weights in (state["model"], state["best"]["weights"] or {}):  # its own run id, other weights
        for tensor in weights.values():
            tensor.add_(0.5)
    checkpoint.save(second, state)
    with pytest.raises(TrainerError, match=r"is not the checkpoint run .* finished with: its SHA-256 is"):
        load(warehouse, second.name)
    result = score(warehouse, second.name, tmp_path)
    assert result.exit_code == 1 and "SHA-256" in result.output and "Traceback" not in result.output


def test_a_run_published_before_digests_were_recorded_still_loads(runs) -> None:
    warehouse, first, second = runs
    with duckdb.connect(str(warehouse)) as con:
        con.execute("UPDATE runs SET checkpoint_sha256 = NULL")
    assert load(warehouse, second.name).run_id == second.name
    shutil.copyfile(first / checkpoint.FILE_NAME, second / checkpoint.FILE_NAME)  # its run id is still checked
    with pytest.raises(TrainerError, match=f"is run {first.name}'s checkpoint, not run {second.name}'s"):
        load(warehouse, second.name)
