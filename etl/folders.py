"""Folders a step creates for its output, and their removal when the step fails.

A failed download or build must not leave the empty folders it made (``data/`` after an offline
``make run``, say): the next run, or the user looking around, would take them for progress.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from etl.errors import EtlError


def make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those this call created, deepest first."""
    missing = [path for path in (folder, *folder.parents) if not path.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # no permission, a file in the way, a read-only file system
        remove_empty(missing)
        raise EtlError(f"{folder}: cannot create the folder: {error.strerror or error}") from error
    return missing


def remove_empty(folders: Iterable[Path]) -> None:
    """Remove ``folders`` (deepest first, as make_folders returns them) while they are empty.

    A folder that holds something, put there by this step or anyone else, is kept, and so are its parents.
    """
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:  # not empty
            return
