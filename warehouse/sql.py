"""Where the SQL lives: the `sql` package's data files, found through importlib.resources.

pip unpacks a wheel into a folder, so the package's files are plain files there, as they are in a
checkout; the runner reads them as paths (names, folders, order), hence the Path.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

SQL_DIR = Path(str(files("sql")))
ETL_DIR = SQL_DIR / "etl"  # the ETL's models
RESULTS_DIR = SQL_DIR / "results"  # the trainer's result tables
VIEWS_DIR = SQL_DIR / "views"  # the analysts' views over the results
EXAMPLES_DIR = SQL_DIR / "examples"  # analysts' example queries


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")
