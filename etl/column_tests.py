"""Column tests: invariants of the built tables, declared in each model's header and run by the build.

dbt's four, one `-- test:` line each in the header of the model file that builds the table:

    -- test: unique(user_id, movie_id)                   no two rows share the key (NULL keys are skipped)
    -- test: not_null(user_id, movie_id, rating)         each column: no NULL (one test per column)
    -- test: accepted_values(gender, 'M', 'F')           the column holds only these values, or NULL
    -- test: relationships(movie_id, movies.movie_id)    every non-NULL value is in movies.movie_id

Each test is one SQL query that returns how many rows fail and the first few of them; a failure stops the
build with an EtlError naming the model file, the column, the test and those rows. The test runs after the
model that builds the table (and, for relationships, after the model of the table it points to): the
runner schedules it as a node of the dependency graph (etl/dag.py).

These are invariants of what the models build: a failure is a bug in the SQL, never bad input. Bad input
lines are judged by the intermediate/ models and reported with their file and line (rejected_rows).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from etl.errors import EtlError

KINDS = ("unique", "not_null", "accepted_values", "relationships")
SAMPLE_ROWS = 3  # offending rows a failure message shows

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_TEST_LINE = re.compile(rf"(?P<kind>{_IDENTIFIER})\s*\((?P<args>.*)\)")
# One argument: a quoted string ('' inside it is a quote), or anything up to the next comma.
_ARGUMENT = re.compile(r"\s*('(?:[^']|'')*'|[^,']*?)\s*(?:,|$)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
USAGE = (
    "unique(column, ...), not_null(column, ...), accepted_values(column, 'value', ...) "
    "or relationships(column, table.column)"
)


@dataclass(frozen=True)
class ColumnTest:
    kind: str  # one of KINDS
    columns: tuple[str, ...]  # unique: the key's columns; the others: one column
    values: tuple[str | int | float, ...] = ()  # accepted_values
    to: tuple[str, str] | None = None  # relationships: (table, column)

    @property
    def parents(self) -> tuple[str, ...]:
        """The other tables the test reads: it runs once their models have run."""
        return (self.to[0],) if self.to else ()

    def describe(self) -> str:
        """'column movie_id fails relationships to movies.movie_id', for the error message."""
        if len(self.columns) == 1:
            subject = f"column {self.columns[0]} fails"
        else:
            subject = f"columns ({', '.join(self.columns)}) fail"
        match self.kind:
            case "accepted_values":
                return f"{subject} accepted_values ({', '.join(map(_literal, self.values))})"
            case "relationships" if self.to:
                return f"{subject} relationships to {self.to[0]}.{self.to[1]}"
            case _:
                return f"{subject} {self.kind}"

    @property
    def per_row(self) -> bool:
        """Whether each row passes or fails on its own (not_null, accepted_values): such tests of one table
        share a single scan (run_tests)."""
        return self.kind in ("not_null", "accepted_values")

    def row_fails(self) -> tuple[str, list[Any]]:
        """For a per-row test: the condition a failing row meets, and its parameters."""
        c = _quote(self.columns[0])
        if self.kind == "not_null":
            return f"{c} IS NULL", []
        marks = ", ".join("?" for _ in self.values)
        return f"{c} IS NOT NULL AND {c} NOT IN ({marks})", list(self.values)

    def query(self, table: str, key: tuple[str, ...]) -> tuple[str, list[Any], tuple[str, ...]]:
        """The SQL that finds the failures, its parameters, and the columns each sample row shows.

        Its rows are (failures, shown columns...): at most SAMPLE_ROWS of them, each carrying the total
        count, so one query answers both. No row at all: the test passes. ``key`` is the table's key (the
        columns of its first unique test): with it, a sample row says which row failed."""
        t = _quote(table)
        (column, *_) = self.columns
        c = _quote(column)
        shown = tuple(dict.fromkeys((*key, *self.columns)))  # the key, then the tested column
        show = ", ".join(map(_quote, shown))
        match self.kind:
            case "unique":
                shown = (*self.columns, "rows")
                cols = ", ".join(map(_quote, self.columns))
                not_null = " AND ".join(f"{_quote(col)} IS NOT NULL" for col in self.columns)
                sql = (
                    f"SELECT count(*) OVER (), {cols}, n FROM (SELECT {cols}, count(*) AS n FROM {t} "
                    f"WHERE {not_null} GROUP BY ALL HAVING count(*) > 1) LIMIT {SAMPLE_ROWS}"
                )
                return sql, [], shown
            case "not_null" | "accepted_values":
                where, parameters = self.row_fails()
                return f"SELECT count(*) OVER (), {show} FROM {t} WHERE {where} LIMIT {SAMPLE_ROWS}", parameters, shown
            case "relationships" if self.to:
                # The distinct values first, then the rows holding a missing one: when nothing is missing (the
                # usual case) that costs a hash of the distinct values, not a join of every row.
                parent, parent_column = map(_quote, self.to)
                sql = (
                    f"WITH missing AS (SELECT DISTINCT {c} FROM {t} WHERE {c} IS NOT NULL "
                    f"EXCEPT SELECT {parent_column} FROM {parent}) "
                    f"SELECT count(*) OVER (), {show} FROM {t} WHERE {c} IN (SELECT {c} FROM missing) "
                    f"LIMIT {SAMPLE_ROWS}"
                )
                return sql, [], shown
        raise AssertionError(self.kind)


def parse_test(text: str, file: str) -> list[ColumnTest]:
    """The tests of one `-- test:` line (not_null over several columns gives one test each)."""
    line = _TEST_LINE.fullmatch(text.strip())
    args = _arguments(line.group("args")) if line else None
    if not line or args is None or line.group("kind") not in KINDS:
        raise EtlError(f"{file}: cannot read the test '{text.strip()}': write one of {USAGE}")
    kind = line.group("kind")

    def wrong(why: str) -> EtlError:
        return EtlError(f"{file}: test '{text.strip()}': {why}")

    names = [arg for arg in args if re.fullmatch(_IDENTIFIER, arg)]
    match kind:
        case "unique" | "not_null":
            if not args or len(names) != len(args):
                raise wrong("its arguments must be column names")
            if kind == "unique":
                return [ColumnTest(kind, tuple(args))]
            return [ColumnTest(kind, (column,)) for column in args]
        case "accepted_values":
            if len(args) < 2 or not re.fullmatch(_IDENTIFIER, args[0]):
                raise wrong("write accepted_values(column, 'value', ...)")
            values: list[str | int | float] = []
            for arg in args[1:]:
                if arg.startswith("'"):
                    values.append(arg[1:-1].replace("''", "'"))
                elif _NUMBER.fullmatch(arg):
                    values.append(float(arg) if "." in arg else int(arg))
                else:
                    raise wrong(f"{arg} is not a quoted string or a number")
            return [ColumnTest(kind, (args[0],), values=tuple(values))]
        case "relationships":
            if (
                len(args) != 2
                or not re.fullmatch(_IDENTIFIER, args[0])
                or not re.fullmatch(rf"{_IDENTIFIER}\.{_IDENTIFIER}", args[1])
            ):
                raise wrong("write relationships(column, table.column)")
            table, column = args[1].split(".")
            return [ColumnTest(kind, (args[0],), to=(table, column))]
    raise AssertionError(kind)


def run_test(
    con: duckdb.DuckDBPyConnection, file: str, table: str, test: ColumnTest, key: tuple[str, ...] = ()
) -> None:
    """Run one test of ``table`` (built by the model ``file``); EtlError if it fails. ``key``: the columns a
    sample row shows first (key_of)."""
    sql, parameters, shown = test.query(table, key)
    try:
        rows = con.execute(sql, parameters).fetchall()
    except duckdb.Error as error:  # a column or table the test names is not there
        raise EtlError(f"{file}: the test {test.kind}({', '.join(test.columns)}) cannot run: {error}") from error
    if rows:
        count = rows[0][0]
        if test.kind == "unique":
            noun = "value repeated" if count == 1 else "values repeated"
        else:
            noun = "row" if count == 1 else "rows"
        samples = ", ".join(_row(row[1:]) for row in rows)
        raise EtlError(f"{file}: {test.describe()}: {count:,} {noun}, e.g. ({', '.join(shown)}) = {samples}")


def run_tests(
    con: duckdb.DuckDBPyConnection, file: str, table: str, tests: Sequence[ColumnTest], key: tuple[str, ...]
) -> None:
    """Run tests of ``table`` in the order given; the first that fails raises EtlError.

    The per-row tests are counted together in one scan of the table: on ml-1m's ratings and splits that is
    two scans of a million rows instead of sixteen. Only a test that failed there runs its own query, for
    the rows its message shows."""
    per_row = [test for test in tests if test.per_row]
    passed: set[ColumnTest] = set()
    if len(per_row) > 1:
        conditions = [test.row_fails() for test in per_row]
        counts = ", ".join(f"count(*) FILTER (WHERE {where})" for where, _ in conditions)
        parameters = [value for _, values in conditions for value in values]
        try:
            (failures,) = con.execute(f"SELECT {counts} FROM {_quote(table)}", parameters).fetchall()
        except duckdb.Error:
            failures = (1,) * len(per_row)  # each test's own query says which one cannot run, and why
        passed = {test for test, n in zip(per_row, failures) if n == 0}
    for test in tests:
        if test not in passed:
            run_test(con, file, table, test, key)


def key_of(tests: tuple[ColumnTest, ...]) -> tuple[str, ...]:
    """A table's key, as its tests declare it: the columns of its first unique test."""
    return next((test.columns for test in tests if test.kind == "unique"), ())


def _arguments(text: str) -> list[str] | None:
    """The comma-separated arguments, quoted strings kept whole; None if they cannot be split."""
    if not text.strip():
        return []
    args, at = [], 0
    while at < len(text):
        match = _ARGUMENT.match(text, at)
        if not match or match.end() == at or not match.group(1):
            return None
        args.append(match.group(1))
        at = match.end()
    return args if not text.rstrip().endswith(",") else None


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def _row(values: tuple) -> str:
    """A sample row as '(12, 99999)'; long values (a matrix row's lists) cut short."""
    shown = []
    for value in values:
        text = _literal(value) if isinstance(value, str) or value is None else str(value)
        shown.append(text if len(text) <= 40 else text[:37] + "...")
    return f"({', '.join(shown)})"
