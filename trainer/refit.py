"""Refitting a run (`trainer refit RUN_ID`): the same model trained again, from the start, on its split's training
side together with the validation slice, for the number of epochs that run chose on validation.

Everything the refit decides was decided by the run it refits, on the validation slice: its settings, its number
of epochs and the epochs at which its learning rate dropped (trainer/selection.py drop_epochs). The refit reads
its test part once, after training, like any run, and trains on the 5 % more ratings that the validation slice
held back. Its validation slice is now training data, so a refit keeps no validation predictions of its own: a
blend fits its weight on the validation predictions of the run it refits, which never trained on them, and
applies it to the refit's test predictions (trainer/blend.py; the Netflix Prize's "probe blending").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainer import trained
from trainer.config import MachineSettings, TrainConfig
from trainer.data import dataset_info
from trainer.errors import TrainerError
from trainer.selection import drop_epochs
from warehouse.connect import open_for_reading
from warehouse.serving import split_drawn_with


@dataclass(frozen=True)
class RefitOptions:
    run_id: str  # the training run to refit, trained with a validation slice
    warehouse: Path = Path("warehouse.duckdb")
    machine: MachineSettings = field(default_factory=MachineSettings)
    # for a run that fine-tunes another (--init-from): the refit of that other run, to fine-tune in its place
    init_from: str | None = None


def refit_config(options: RefitOptions) -> TrainConfig:
    """The configuration of run ``options.run_id``'s refit: its own, on the training side and the validation
    slice, for the epochs it selected. Refused for a run that chose nothing on validation; a run that fine-tunes
    another is refitted from that other run's refit (``options.init_from``)."""
    con = open_for_reading(options.warehouse, options.machine.lock_wait_seconds, needs=("dataset", "runs"))
    try:
        row, state, config, _ = trained.saved(con, options.run_id, torch.device("cpu"))
        fingerprint = dataset_info(con).fingerprint
        drawn_with = split_drawn_with(con, row["split"])
        start = trained.saved(con, options.init_from, torch.device("cpu"))[2] if options.init_from else None
    finally:
        con.close()
    run_id = options.run_id
    if row["dataset_fingerprint"] != fingerprint:
        raise TrainerError(
            f"run {run_id} was trained on other data than {options.warehouse} holds now (the ETL ran "
            "again since): train a new run and refit that"
        )
    then = row.get("split_drawn_with")
    if None not in (then, drawn_with) and then != drawn_with:
        raise TrainerError(
            f"run {run_id} chose its settings on split {row['split']} drawn with {then}; "
            f"{options.warehouse} was rebuilt since with {drawn_with}, whose test part holds ratings "
            "that run validated on: train a new run on this split and refit that"
        )
    if config.refit_of:
        raise TrainerError(f"run {run_id} is already a refit (of run {config.refit_of}); refit that run instead")
    if not config.validation:
        raise TrainerError(
            f"run {run_id} was trained with --no-validation: no validation slice chose its number "
            "of epochs; refit a run trained with one"
        )
    if config.init_from and start is None:
        raise TrainerError(
            f"run {run_id} fine-tunes run {config.init_from} (--init-from): refit that run first, "
            "then this one from its refit (trainer refit RUN_ID --init-from REFIT_ID)"
        )
    if start is not None and (not config.init_from or start.refit_of != config.init_from):
        what = f"run {config.init_from}, which run {run_id} fine-tunes" if config.init_from else "anything"
        raise TrainerError(
            f"--init-from {options.init_from} is not a refit of {what}; a refit starts from the "
            "refit of the run its own run started from"
        )
    epochs = row["best_epoch"]
    if epochs == 0:
        raise TrainerError(
            f"run {run_id} kept the weights it started from (no epoch of fine-tuning validated "
            f"better): its refit is run {options.init_from} itself"
        )
    # A model fitted outside the loop may choose settings of its own on validation, epoch by epoch (ease's λ, fitted
    # once: its epochs are the λ it tried).
    chosen = state["history"][epochs - 1].get("settings", {}) if state["history"] else {}
    refitted = {
        "init_from": options.init_from,
        "validation": False,
        "epochs": epochs,
        "lr_drop_epochs": tuple(e for e in drop_epochs(state["history"], config) if e < epochs),
        "refit_of": run_id,
        "warehouse": str(options.warehouse),
        **options.machine.model_dump(),
    }
    return config.replaced(**{**refitted, **chosen})  # what it chose on validation last: ease's λ and its one fit
