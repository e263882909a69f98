"""Refits (trainer/refit.py, `trainer refit`): a run trained again on train + validation for the epochs its
run chose, its learning-rate drops replayed, refused where nothing was chosen on validation; blends that fit a
refit's weight on its run's validation predictions; and the proof that a refit chooses nothing from the test part."""

from __future__ import annotations

import duckdb
import pytest
import torch
from typer.testing import CliRunner

from trainer import checkpoint
from trainer.blend import BlendOptions, blend
from trainer.cli import app
from trainer.config import MachineSettings, resolve
from trainer.errors import TrainerError
from trainer.refit import RefitOptions, refit_config
from trainer.selection import drop_epochs
from trainer.train import run

# A small i-autorec that stops early on validation (patience 1, one learning-rate drop) after a few epochs.
SMALL = {
    "model": "i-autorec",
    "hidden": (8,),
    "epochs": 25,
    "patience": 1,
    "lr_drops": 1,
    "learning_rate": 0.08,
    "l2": 1.0,
    "seed": 3,
    "top_n": 0,
}


def refit(warehouse, tmp_path, run_id: str):
    return run(
        refit_config(
            RefitOptions(
                run_id, warehouse, MachineSettings(runs_dir=str(tmp_path / "runs"), device="cpu", publish_anyway=True)
            )
        )
    )


def final_weights(summary) -> dict[str, torch.Tensor]:
    return checkpoint.load(summary.run_dir, torch.device("cpu"))["model"]


def test_drop_epochs_replays_the_validation_rule() -> None:
    config = resolve({"patience": 2, "lr_drops": 1})
    curve = [1.0, 0.9, 0.9, 0.9, 0.85, 0.85, 0.85, 0.85]  # stalls from epoch 2: drop after epoch 4, then stop
    history = [{"epoch": e, "validation_rmse": r} for e, r in enumerate(curve, 1)]
    assert drop_epochs(history, config) == (4,)
    assert drop_epochs(history, resolve({"patience": 2, "lr_drops": 0})) == ()
    unscored = [{"epoch": e, "validation_rmse": None} for e in range(1, 9)]
    assert drop_epochs(unscored, config) == ()


def test_a_refit_trains_on_train_and_validation_for_the_epochs_its_run_chose(trained_warehouse, tmp_path) -> None:
    warehouse, parent = trained_warehouse(SMALL)
    config = refit_config(RefitOptions(parent.run_id, warehouse, MachineSettings(runs_dir=str(tmp_path / "runs"))))
    assert (config.validation, config.epochs, config.refit_of) == (False, parent.best_epoch, parent.run_id)
    assert parent.best_epoch < len(parent.history) < SMALL["epochs"]  # validation stopped it
    assert config.lr_drop_epochs == tuple(e for e in drop_epochs(parent.history, config) if e < parent.best_epoch)
    assert (config.model, config.hidden, config.l2, config.seed) == ("i-autorec", (8,), 1.0, 3)  # its settings

    child = refit(warehouse, tmp_path, parent.run_id)
    assert len(child.history) == parent.best_epoch and child.validation_rmse is None
    with duckdb.connect(str(warehouse), read_only=True) as con:
        row = con.execute("SELECT parent_run_id, epochs_run FROM runs WHERE run_id = ?", [child.run_id]).fetchone()
        kinds = con.execute(
            "SELECT DISTINCT kind FROM predictions WHERE run_id = ? ORDER BY kind", [child.run_id]
        ).fetchall()
        n_train = con.execute("SELECT count(*) FROM split_ratings WHERE split = 'random' AND part = 'train'").fetchone()
        n_both = con.execute(
            "SELECT count(*) FROM split_ratings WHERE split = 'random' AND part IN ('train', 'validation')"
        ).fetchone()
    assert row == (parent.run_id, parent.best_epoch)
    assert kinds == [("test",), ("test_top_n",)]  # no validation predictions: that slice is its training data now
    assert n_both[0] > n_train[0]
    assert child.metrics["n"] == parent.metrics["n"] and child.metrics["rmse"] != parent.metrics["rmse"]


def test_the_learning_rate_drops_after_the_epochs_a_refit_names(warehouse, tmp_path, settings) -> None:
    common = {**SMALL, "validation": False, "epochs": 2}
    plain, dropped, too_late = (
        final_weights(run(settings(warehouse, tmp_path, **common, lr_drop_epochs=epochs)))
        for epochs in ((), (1,), (2,))
    )
    assert any(not torch.equal(plain[name], dropped[name]) for name in plain)  # epoch 2 took a tenth of the step
    assert all(torch.equal(plain[name], too_late[name]) for name in plain)  # a drop after the last epoch: none


def test_what_cannot_be_refitted_is_refused(trained_warehouse, tmp_path, settings) -> None:
    warehouse, parent = trained_warehouse(SMALL)
    no_validation = run(settings(warehouse, tmp_path, **{**SMALL, "validation": False, "epochs": 2}))
    with pytest.raises(TrainerError, match="--no-validation: no validation slice chose"):
        refit_config(RefitOptions(no_validation.run_id, warehouse))
    child = refit(warehouse, tmp_path, parent.run_id)
    with pytest.raises(TrainerError, match=f"already a refit \\(of run {parent.run_id}\\)"):
        refit_config(RefitOptions(child.run_id, warehouse))
    with pytest.raises(TrainerError, match="no run 'nope'"):
        refit_config(RefitOptions("nope", warehouse))
    with pytest.raises(TrainerError, match="is not a refit of anything"):  # --init-from for a run that needs none
        refit_config(RefitOptions(parent.run_id, warehouse, init_from=child.run_id))


# GLocal-K's fine-tuning of a small kernel autoencoder (as in test_trained.py), with Adam so that its first
# epochs validate better than the weights it starts from.
PARENT = {"model": "kernel-ae", "hidden": (8, 8), "epochs": 3, "lbfgs_iterations": 3, "seed": 2, "top_n": 0}
CHILD = {
    **PARENT,
    "model": "glocal-k",
    "optimizer": "adam",
    "learning_rate": 0.01,
    "batch_size": 10_000,
    "epochs": 4,
    "eval_every": 1,
    "patience": 2,
}


@pytest.mark.slow
def test_a_fine_tuned_run_is_refitted_from_its_parents_refit(trained_warehouse, tmp_path, settings) -> None:
    warehouse, other = trained_warehouse(SMALL)  # a run of SMALL, to refit as the wrong --init-from
    parent = run(settings(warehouse, tmp_path, **PARENT))
    child = run(settings(warehouse, tmp_path, **CHILD, init_from=parent.run_id))
    assert child.best_epoch
    with pytest.raises(TrainerError, match=f"fine-tunes run {parent.run_id} \\(--init-from\\): refit that run first"):
        refit_config(RefitOptions(child.run_id, warehouse))
    parents_refit = refit(warehouse, tmp_path, parent.run_id)
    config = refit_config(RefitOptions(child.run_id, warehouse, init_from=parents_refit.run_id))
    assert (config.init_from, config.refit_of, config.epochs) == (parents_refit.run_id, child.run_id, child.best_epoch)
    assert not config.validation
    others_refit = refit(warehouse, tmp_path, other.run_id)
    with pytest.raises(TrainerError, match=f"is not a refit of run {parent.run_id}, which run {child.run_id} fine"):
        refit_config(RefitOptions(child.run_id, warehouse, init_from=others_refit.run_id))
    done = run(config)  # fine-tunes the parent's refit on train + validation
    with duckdb.connect(str(warehouse), read_only=True) as con:
        row = con.execute("SELECT parent_run_id, epochs_run FROM runs WHERE run_id = ?", [done.run_id]).fetchone()
    assert row == (child.run_id, child.best_epoch)


def test_a_blend_fits_a_refits_weight_on_its_runs_validation_predictions(trained_warehouse, tmp_path, settings) -> None:
    warehouse, parent = trained_warehouse(SMALL)
    child = refit(warehouse, tmp_path, parent.run_id)
    other = run(settings(warehouse, tmp_path, model="biases", epochs=5, top_n=0))
    options = BlendOptions(
        (child.run_id, other.run_id),
        warehouse,
        top_n=3,
        machine=MachineSettings(runs_dir=str(tmp_path / "runs"), publish_anyway=True),
    )
    mixed = blend(options)
    assert mixed.member_validation_rmse[child.run_id] == pytest.approx(parent.validation_rmse, abs=1e-4)
    assert mixed.member_test_rmse[child.run_id] == pytest.approx(child.metrics["rmse"], abs=1e-4)
    with pytest.raises(TrainerError, match=f"run {child.run_id} is a refit of run {parent.run_id}"):
        blend(
            BlendOptions(
                (parent.run_id, child.run_id),
                warehouse,
                top_n=0,
                machine=MachineSettings(runs_dir=str(tmp_path / "runs")),
            )
        )


@pytest.mark.slow
def test_a_refit_chooses_nothing_from_the_test_part(small_warehouse, tmp_path, corrupt_test_ratings, settings) -> None:
    clean, corrupt = tmp_path / "clean.duckdb", tmp_path / "corrupt.duckdb"
    clean.write_bytes(small_warehouse.read_bytes())
    corrupt.write_bytes(small_warehouse.read_bytes())
    corrupt_test_ratings(corrupt)
    refits, configs = [], []
    for warehouse in (clean, corrupt):
        parent = run(settings(warehouse, tmp_path, **SMALL))
        configs.append(refit_config(RefitOptions(parent.run_id, warehouse)))
        refits.append(refit(warehouse, tmp_path, parent.run_id))
    a, b = refits
    assert (configs[0].epochs, configs[0].lr_drop_epochs) == (configs[1].epochs, configs[1].lr_drop_epochs)
    assert [h["train_rmse"] for h in a.history] == [h["train_rmse"] for h in b.history]
    assert all(torch.equal(weights, final_weights(b)[name]) for name, weights in final_weights(a).items())
    assert a.metrics["rmse"] != b.metrics["rmse"]


def test_trainer_refit_trains_publishes_and_explains_its_refusals(trained_warehouse, tmp_path) -> None:
    warehouse, parent = trained_warehouse(SMALL)
    runs_dir = str(tmp_path / "runs")
    done = CliRunner().invoke(
        app, ["refit", parent.run_id, "--warehouse", str(warehouse), "--runs-dir", runs_dir, "--publish-anyway"]
    )
    assert done.exit_code == 0, done.output
    said = f"refitting run {parent.run_id} (i-autorec) on random's training side and validation slice: "
    assert said + f"{parent.best_epoch} epochs" in done.output
    assert "test RMSE" in done.output
    refused = CliRunner().invoke(app, ["refit", "nope", "--warehouse", str(warehouse), "--runs-dir", runs_dir])
    assert refused.exit_code == 1 and "trainer: error: no run 'nope'" in refused.output
    assert "Traceback" not in refused.output
    assert "--threads" in CliRunner().invoke(app, ["refit", "--help"]).output


@pytest.mark.parametrize("model", ["ease", "mult-dae"])
def test_a_ranking_model_is_refitted_with_what_it_chose_on_validation(model, trained_warehouse, tmp_path) -> None:
    """ease refits with the λ (--l2) its run chose, in one fit; mult-dae for the epochs its run chose. The refit
    ranks the test part (no validation ranking: it trained on that slice)."""
    overrides = {"ease": {"epochs": 3}, "mult-dae": {"epochs": 4, "eval_every": 1, "hidden": (8, 4)}}[model]
    warehouse, parent = trained_warehouse({"model": model, "top_n": 0, **overrides})
    config = refit_config(RefitOptions(parent.run_id, warehouse, MachineSettings(runs_dir=str(tmp_path / "runs"))))
    chosen = parent.history[parent.best_epoch - 1]
    if model == "ease":
        assert (config.epochs, config.l2) == (1, chosen["settings"]["l2"])
    else:
        assert config.epochs == parent.best_epoch and config.l2 == 50.0
    assert config.refit_of == parent.run_id and not config.validation
    again = run(config.replaced(publish_anyway=True))
    assert set(again.ranking) == {"test"} and again.ranking["test"]["users"] > 0
