from __future__ import annotations

from pathlib import Path

from warehouse.errors import WarehouseError


class TrainerError(WarehouseError):
    """A failure of the trainer the user can act on."""


class UnknownSplit(TrainerError):
    """A split the warehouse does not have: the command line names the option that gave it (a usage error)."""

    def __init__(self, split: str, known: list[str]) -> None:
        super().__init__(f"unknown split {split!r}: this warehouse has {', '.join(known)}")
        self.split = split
        self.known = known


class Finished(TrainerError):
    """`trainer run --resume` of a run that finished and was published already: nothing to do, said (exit 0)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a training run, with what the command line needs to say how to go on: the run's folder and
    the last epoch its checkpoint holds (None: no checkpoint written yet). A KeyboardInterrupt still, so that
    any other caller sees the interrupt it always saw."""

    def __init__(self, run_dir: Path, checkpoint_epoch: int | None) -> None:
        super().__init__(f"interrupted; the run's folder is {run_dir}")
        self.run_dir = run_dir
        self.checkpoint_epoch = checkpoint_epoch
