"""What every run (training or scoring) records about itself: its id, its times, and the device it ran on."""

from __future__ import annotations

import platform
import secrets
from datetime import UTC, datetime
from pathlib import Path

import torch

from trainer.errors import TrainerError


def new_run_id() -> str:
    """Sortable by start time, and unique among runs started in the same second: 32 random bits (16 let two runs
    of one second share an id, and so a folder, about once in 65,536 pairs)."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def run_folder(path: Path, what: str = "run") -> Path:
    """The folder a run keeps its checkpoint or staged results in, created now: a read-only or full disk is
    said before any work. ``what`` names the run in the message ("run", "scoring run", "blend")."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TrainerError(f"{path}: cannot create the {what}'s folder: {error}") from error
    return path


def utc_now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def pick_device(name: str) -> torch.device:
    """--device: auto (a CUDA GPU when there is one, else the CPU), cpu or cuda."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TrainerError("--device cuda was asked for, but torch finds no CUDA device; use --device cpu or auto")
        return torch.device("cuda")
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    """As runs.device records it."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})"
