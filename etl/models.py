"""The SQL models in sql/etl: which files build the warehouse for a layout, and what each declares.

Each model file builds one table (or view, or set of macros) named after the file, and says in its header
comment what it reads and what must hold of what it builds:

    -- depends_on: int_ratings_checked, movies
    -- test: unique(user_id, movie_id)

`depends_on` names the models whose tables, views or macros the SQL reads: a model by its file name
(`stg_ratings`), a macro file by its file name too (`read_lines` for file_lines, is_blank, without_bom and
read_lines), a seed likewise (`occupations`). Every model has the line; one that reads nothing leaves it
empty. The runner derives the run order and the stages that run side by side from these lines (etl/dag.py);
`-- test:` lines are column tests (etl/column_tests.py). Only the header, the comment lines before the
first statement, is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from etl.column_tests import ColumnTest, parse_test
from etl.errors import EtlError
from etl.layouts import Layout
from warehouse.sql import ETL_DIR

_DEPENDS_ON = re.compile(r"--\s*depends_on:(.*)")
_TEST = re.compile(r"--\s*test:(.*)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The statement that builds a model's table or view ({} is the model's name).
_CREATES = (
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?P<temp>TEMP(?:ORARY)?\s+)?(?P<kind>TABLE|VIEW)\s+"
    r"(?:IF\s+NOT\s+EXISTS\s+)?{}\b"
)


@dataclass(frozen=True, eq=False)
class Model:
    path: Path
    file: str  # as messages name it: sql/etl/core/ratings.sql
    name: str  # the file's name: the table it builds, or the macro file
    depends_on: tuple[str, ...]
    tests: tuple[ColumnTest, ...]
    sql: str

    @property
    def is_macro(self) -> bool:
        """A file of macros: run again on each connection that runs a model reading it."""
        return self.path.parent.name == "macros"

    @cached_property
    def _creates(self) -> re.Match[str] | None:
        return re.search(_CREATES.format(re.escape(self.name)), self.sql, re.IGNORECASE | re.MULTILINE)

    @property
    def builds_temp(self) -> bool:
        """Whether the table or view it builds is a TEMP one, which only the connection that created it sees
        (a macro file's macros are TEMP too: see is_macro)."""
        return bool(self._creates and self._creates.group("temp"))

    @property
    def builds_table(self) -> bool:
        """Whether it builds a stored table (not a view, whose rows only a query of it would count)."""
        creates = self._creates
        return bool(creates and not creates.group("temp") and creates.group("kind").upper() == "TABLE")


def models_for(layout: Layout) -> list[Model]:
    """The models that build the warehouse for ``layout``, in no particular order (etl/dag.py orders them)."""
    return [read_model(path) for path in model_files(layout)]


def model_files(layout: Layout) -> list[Path]:
    """Every model under sql/etl except meta/ (the run history, created after the build: etl/build.py) and
    the layouts' staging folders, of which only the files this layout reads are taken (staging_for)."""
    staging = ETL_DIR / "staging"
    shared = [
        path
        for path in sorted(ETL_DIR.rglob("*.sql"))
        if path.parent != ETL_DIR / "meta" and path.parent.parent != staging
    ]
    return shared + [staging / name for name in staging_for(layout)]


def staging_for(layout: Layout) -> list[str]:
    """The layout's own staging models, under sql/etl/staging/: its movies file, its users file or the empty
    stand-in of the layouts without one, and ml-100k's genre names."""
    users = f"{layout.staging}/stg_users.sql" if layout.has_users_file else "no_users/stg_users.sql"
    genres = ["ml100k/stg_genres.sql"] if "genres" in layout.files else []
    return [f"{layout.staging}/stg_movies.sql", users, *genres]


def read_model(path: Path) -> Model:
    """A model file with what its header declares; EtlError names the file when the header is wrong."""
    sql = path.read_text(encoding="utf-8")
    file = display_name(path)
    depends_on: list[tuple[str, ...]] = []
    tests: list[ColumnTest] = []
    for line in header(sql):
        if match := _DEPENDS_ON.fullmatch(line):
            names = tuple(name.strip() for name in match.group(1).split(",") if name.strip())
            if bad := [name for name in names if not _NAME.fullmatch(name)]:
                raise EtlError(f"{file}: '{bad[0]}' in its depends_on line is not a model name")
            depends_on.append(names)
        elif match := _TEST.fullmatch(line):
            tests.extend(parse_test(match.group(1), file))
    if len(depends_on) != 1:
        how = "has no" if not depends_on else "has more than one"
        raise EtlError(
            f"{file}: its header {how} '-- depends_on:' line naming the models it reads "
            "(leave the list empty when it reads none)"
        )
    return Model(path, file, path.stem, depends_on[0], tuple(tests), sql)


def header(sql: str) -> list[str]:
    """The comment lines before the first statement (blank lines between them allowed)."""
    lines = []
    for line in sql.splitlines():
        line = line.strip()
        if line and not line.startswith("--"):
            break
        lines.append(line)
    return lines


def display_name(path: Path) -> str:
    """sql/etl/core/ratings.sql, whichever folder holds the models (tests point ETL_DIR at a copy)."""
    try:
        return f"sql/etl/{path.relative_to(ETL_DIR).as_posix()}"
    except ValueError:
        return str(path)


def table_name(model: Model) -> str:
    """The table a model builds is named after its file (a macro file builds none)."""
    return model.name
