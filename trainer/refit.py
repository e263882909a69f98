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

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from trainer import trained
from trainer.config import Device, TrainConfig
from trainer.data import dataset_info
from trainer.errors import TrainerError
from trainer.selection import drop_epochs
from warehouse.connect import DEFAULT_LOCK_WAIT_SECONDS, open_for_reading


@dataclass(frozen=True)
class RefitOptions:
    run_id: str  # the training run to refit, trained with a validation slice
    warehouse: Path = Path("warehouse.duckdb")
    runs_dir: Path = Path("runs")
    device: Device = "auto"
    threads: int = 0
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
    publish_anyway: bool = False


def refit_config(options: RefitOptions) -> TrainConfig:
    """The configuration of run ``options.run_id``'s refit: its own, on the training side and the validation
    slice, for the epochs it selected. Refused for a run that chose nothing on validation or fine-tuned another."""
    con = open_for_reading(options.warehouse, options.lock_wait_seconds, needs=("dataset", "runs"))
    try:
        row, state, config, _ = trained.saved(con, options.run_id, torch.device("cpu"))
        fingerprint = dataset_info(con).fingerprint
    finally:
        con.close()
    run_id = options.run_id
    if row["dataset_fingerprint"] != fingerprint:
        raise TrainerError(f"run {run_id} was trained on other data than {options.warehouse} holds now (the ETL ran "
                           "again since): train a new run and refit that")  # fmt: skip
    if config.refit_of:
        raise TrainerError(f"run {run_id} is already a refit (of run {config.refit_of}); refit that run instead")
    if not config.validation:
        raise TrainerError(f"run {run_id} was trained with --no-validation: no validation slice chose its number "
                           "of epochs; refit a run trained with one")  # fmt: skip
    if config.init_from:
        raise TrainerError(f"run {run_id} fine-tunes run {config.init_from} (--init-from), whose weights never saw "
                           "the validation slice; refit only runs that train from the start")  # fmt: skip
    epochs = row["best_epoch"]
    return replace(
        config,
        validation=False,
        epochs=epochs,
        lr_drop_epochs=tuple(e for e in drop_epochs(state["history"], config) if e < epochs),
        refit_of=run_id,
        warehouse=str(options.warehouse),
        runs_dir=str(options.runs_dir),
        device=options.device,
        threads=options.threads,
        lock_wait_seconds=options.lock_wait_seconds,
        publish_anyway=options.publish_anyway,
    )
