"""The `-- depends_on:` line of every model in sql/etl says exactly what its SQL reads.

The runner orders the models by these lines alone (etl/dag.py), so a missing name would let a model run
before a table it reads exists, or beside the model that builds it. Here each line is checked against the
SQL text: every object another model file creates (a table, view, macro or type) that the SQL names must
be declared, by that file's name, and every declared name must be read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from etl.models import header, read_model
from warehouse.sql import ETL_DIR

MODELS = sorted(path for path in ETL_DIR.rglob("*.sql") if path.parent.name != "meta")
_CREATES = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP(?:ORARY)?\s+)?(?:TABLE|VIEW|MACRO|TYPE)\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)",
    re.IGNORECASE,
)


def body(sql: str) -> str:
    """The SQL without its comments and string literals: only names that the SQL itself uses."""
    sql = re.sub(r"--[^\n]*", " ", sql)
    return re.sub(r"'(?:[^']|'')*'", "''", sql)


def created_by() -> dict[str, str]:
    """Each object a model file creates -> the file's model name (stg_movies of every layout is one name)."""
    owners: dict[str, str] = {}
    for path in MODELS:
        for name in _CREATES.findall(body(path.read_text())):
            owners[name.lower()] = path.stem
    return owners


def test_every_model_is_covered():
    names = {path.stem for path in MODELS}
    assert {"ratings", "read_lines", "occupations", "stg_movies", "user_matrix"} <= names
    # Every object is created in a file named after it, or in a macro file (several macros each).
    for name, owner in created_by().items():
        assert name == owner or owner in {"read_lines", "split_parts", "splits", "ratings_lines"}, (name, owner)


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.relative_to(ETL_DIR).as_posix())
def test_depends_on_names_exactly_what_the_sql_reads(path: Path):
    model = read_model(path)
    words = {word.lower() for word in re.findall(r"\b\w+\b", body(model.sql))}
    owners = created_by()
    reads = {owners[word] for word in words if word in owners} - {model.name}
    assert set(model.depends_on) == reads, (
        f"{model.file}: declare '-- depends_on: {', '.join(sorted(reads))}' "
        f"(declared {', '.join(model.depends_on) or 'nothing'})"
    )


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.relative_to(ETL_DIR).as_posix())
def test_declarations_sit_in_the_header(path: Path):
    """Only the header is read: a depends_on or test line further down would be silently ignored."""
    text = path.read_text()
    in_header = sum(1 for line in header(text) if re.match(r"--\s*(depends_on|test):", line))
    anywhere = len(re.findall(r"^\s*--\s*(?:depends_on|test):", text, re.MULTILINE))
    assert in_header == anywhere >= 1


def test_the_check_catches_a_missing_declaration(tmp_path):
    """The check above fails for a model that reads a table it does not declare."""
    text = (ETL_DIR / "core" / "users.sql").read_text()
    wrong = tmp_path / "users.sql"
    wrong.write_text(text.replace("-- depends_on: int_users_checked, ratings", "-- depends_on: int_users_checked"))
    with pytest.raises(AssertionError, match="declare '-- depends_on: int_users_checked, ratings'"):
        test_depends_on_names_exactly_what_the_sql_reads(wrong)
