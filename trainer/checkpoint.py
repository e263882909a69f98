"""Checkpoints: everything needed to resume a run exactly, loaded with weights_only=True.

weights_only=True makes torch.load refuse arbitrary pickled objects, so a checkpoint from somewhere
else cannot run code. Hence only tensors, numbers, strings, lists and dicts go in.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from trainer.errors import TrainerError

FILE_NAME = "checkpoint.pt"


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back while a checkpoint is written and recorded, so that an interrupt never falls between
    the file and what the run says of it; it is delivered as the block ends.

    Held by a handler that only takes note, not by a signal mask: a mask holds the signal back from the main thread
    only, so the kernel hands it to another thread (torch's, DuckDB's), Python still runs the handler in the middle
    of the block, and torch.save can swallow the KeyboardInterrupt raised there. Elsewhere than the main thread,
    where Python cannot set a handler, nothing is held."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:  # None: set outside Python
        yield
        return
    pressed: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pressed:
            signal.raise_signal(signal.SIGINT)  # handled as the run would have, now that the block has ended


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


def digest(run_dir: Path) -> str:
    """The SHA-256 of the run's checkpoint file, in hex: recorded in its row of `runs` (runs.checkpoint_sha256), so
    that a checkpoint copied or changed in its folder since is never loaded as the run's (trainer/trained.py)."""
    path = run_dir / FILE_NAME
    try:
        with path.open("rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as error:
        raise TrainerError(f"{path}: cannot read the checkpoint: {error.strerror or error}") from error


def rng_states() -> dict[str, Any]:
    """Every random generator a run draws from: the CPU's and, on a CUDA machine, each GPU's (dropout masks
    drawn on a GPU come from its generator), so that a resumed run continues exactly."""
    states: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng(states: dict[str, Any] | torch.Tensor) -> None:
    if isinstance(states, torch.Tensor):  # a checkpoint that kept the CPU generator alone
        states = {"cpu": states}
    torch.set_rng_state(states["cpu"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in states["cuda"]])
