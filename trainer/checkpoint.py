"""Checkpoints: everything needed to resume a run exactly, loaded with weights_only=True.

weights_only=True makes torch.load refuse arbitrary pickled objects, so a checkpoint from somewhere
else cannot run code. Hence only tensors, numbers, strings, lists and dicts go in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from trainer.errors import TrainerError

FILE_NAME = "checkpoint.pt"


def save(run_dir: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path = run_dir / FILE_NAME
    partial = path.with_suffix(".partial")
    try:
        torch.save(state, partial)
        os.replace(partial, path)
    except (OSError, RuntimeError) as error:  # a full or read-only disk (torch's writer raises RuntimeError)
        partial.unlink(missing_ok=True)
        raise TrainerError(f"{path}: cannot write the checkpoint: {error}") from error


def load(run_dir: Path, device: torch.device) -> dict[str, Any]:
    path = run_dir / FILE_NAME
    if not path.exists():
        raise TrainerError(f"{path}: no checkpoint to resume from")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # unpickling errors come in many types; all mean "not ours"
        raise TrainerError(f"{path}: not a checkpoint this trainer can load safely ({error})") from error
