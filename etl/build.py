"""Build the warehouse: run the SQL models over a MovieLens folder into a new file, then swap it in.

The build never touches the existing warehouse until the very end: models run into
``<warehouse>.building-<pid>``, and only a build that passed validation replaces the old file with an
atomic rename (warehouse/swap.py), under the writer lock. A failed or killed ETL therefore leaves the
previous warehouse exactly as it was, and readers keep the snapshot they opened. Tables the ETL does
not build (the trainer's runs and predictions, an analyst's own tables) and the ETL's own run history
are carried over from the previous warehouse (warehouse/carry_over.py), so a rebuild loses none of them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from etl.column_tests import ColumnTest, key_of, run_tests
from etl.dag import Stage, macros_for, plan, runs_apart
from etl.errors import EtlError
from etl.folders import make_folders, remove_empty
from etl.layouts import Layout, check_latin1_text, detect_encoding, detect_layout, detect_newline
from etl.models import Model, models_for, table_name
from warehouse.carry_over import carry_over
from warehouse.connect import DEFAULT_LOCK_WAIT_SECONDS
from warehouse.sql import ETL_DIR
from warehouse.swap import (
    DEFAULT_STORAGE_VERSION,
    StorageVersion,
    cursor,
    new_file,
    remove,
    remove_stale,
    side_file,
    swap_in,
    writer_lock,
)

META_MODELS = [ETL_DIR / "meta" / "etl_runs.sql", ETL_DIR / "meta" / "etl_run_files.sql"]
# Rows per row group of the warehouse the ETL writes (DuckDB's default: 122,880). A table smaller than one row
# group is written by the build's last checkpoint, on one thread, after every model has run: the matrices, a few
# thousand rows of long lists, came last that way. In row groups of this size they are written while they are
# built (bench/etl_bench.py measures it; docs/benchmarks.md).
ROW_GROUP_SIZE = 4096
DELIMITER_LABELS = {"\t": "a tab", "::": "::", ",": ","}


@dataclass(frozen=True)
class EtlOptions:
    max_bad_rows: int = 0  # 0: the first bad row stops the ETL
    split_seed: int = 42
    test_fraction: float = 0.1
    validation_fraction: float = 0.05
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
    # DuckDB's own default is 80 % of the machine's memory; bounded, it spills to <build file>.tmp instead.
    memory_limit_mb: int = 3072
    storage_version: StorageVersion = DEFAULT_STORAGE_VERSION  # the file format (warehouse/swap.py)


@dataclass
class EtlReport:
    warehouse: Path
    layout: str
    seconds: float = 0.0
    row_counts: dict[str, int] = field(default_factory=dict)
    rejected: int = 0


@dataclass(frozen=True)
class InputFile:
    role: str
    path: Path
    bytes: int
    sha256: str
    encoding: str
    newline: str
    ascii_only: bool  # every byte below 0x80


DUCKDB_MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB database file


def _check_replaceable(warehouse: Path) -> None:
    """Refuse, before any work, to replace a file that is not a DuckDB database (a typo naming someone's data): the
    build would end by swapping it away."""
    if not warehouse.is_file() or warehouse.stat().st_size == 0:
        return
    with warehouse.open("rb") as file:
        head = file.read(12)
    if head[8:12] != DUCKDB_MAGIC:
        raise EtlError(
            f"{warehouse} is not a DuckDB database: the build would replace it. Name another --warehouse, "
            "or move that file aside; nothing was built"
        )


def build_warehouse(
    input_dir: Path,
    warehouse: Path,
    options: EtlOptions = EtlOptions(),
    log: Callable[[str], None] = lambda message: None,
) -> EtlReport:
    """Load the MovieLens files in ``input_dir`` into ``warehouse`` (created or replaced)."""
    started = time.perf_counter()
    started_at = datetime.now(UTC).replace(tzinfo=None)
    layout = detect_layout(input_dir)
    inputs = [_inspect(role, path) for role, path in layout.files.items()]
    log(f"{input_dir}: {layout.name} layout, " + ", ".join(f"{f.path.name} ({f.bytes:,} bytes)" for f in inputs))

    warehouse = warehouse.resolve()
    _check_replaceable(warehouse)
    report = EtlReport(warehouse=warehouse, layout=layout.name)
    models = models_for(layout)
    stages = plan(models)  # before the new file: a wrong declaration stops the build with nothing to undo
    made = make_folders(warehouse.parent)  # removed again if the build fails
    building = side_file(warehouse, "building")
    try:
        remove_stale(warehouse)
        con = new_file(building, options.storage_version, options.memory_limit_mb, ROW_GROUP_SIZE)
    except BaseException as error:
        remove_empty(made)
        if isinstance(error, duckdb.Error):  # a read-only folder or file system, a full disk
            raise EtlError(f"{warehouse}: cannot create the new warehouse beside it: {error}") from error
        raise
    workers = _Workers(con, lambda cursor: _set_variables(cursor, input_dir, layout, inputs, options))
    try:
        # Every model's commit would otherwise wait for the disk. The side file need not survive a power cut
        # until it is swapped in, and swap_in syncs the whole file before the rename.
        con.execute("SET fsync_mode = 'none'")
        _set_variables(con, input_dir, layout, inputs, options)
        built: set[str] = set()
        for stage in stages:
            seconds = _run_stage(con, stage, models, input_dir, workers)
            for built_model in stage.models:
                name, took = table_name(built_model), seconds[built_model.name]
                if built_model.path.parent.name in ("core", "splits", "features") and built_model.builds_table:
                    rows = con.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0][0]
                    report.row_counts[name] = rows
                    log(f"  {name:<20} {rows:>12,} rows  {took:6.2f} s")
                else:
                    log(f"  {name:<20} {'':>17} {took:6.2f} s")
            workers.check()
            names = {model.name for model in stage.models}
            built |= names
            # Fail fast, before the splits and matrices: on ml-32m those take most of the time.
            if "rejected_rows" in names:
                report.rejected = _check_rejections(con, layout, options.max_bad_rows)
            # After the bad rows, which say why there are none.
            just_built = {"rejected_rows", "ratings"} & names
            if just_built and {"rejected_rows", "ratings"} <= built and report.row_counts["ratings"] == 0:
                raise EtlError(f"{layout.files['ratings']}: no ratings to load")
        workers.finish()
        workers.close()
        with writer_lock(warehouse, options.lock_wait_seconds):
            carry_over(con, warehouse, options.lock_wait_seconds, log)
            for model in META_MODELS:
                con.execute(model.read_text())
            report.seconds = time.perf_counter() - started
            _record_run(con, input_dir, layout, inputs, options, report, started_at)
            con.execute("CHECKPOINT")
            con.close()
            swap_in(building, warehouse)
    except BaseException as error:
        workers.close()
        con.close()
        remove(building)
        remove_empty(made)
        if isinstance(error, (duckdb.Error, OSError)):  # a full disk at the checkpoint, say: no traceback
            raise EtlError(f"{warehouse}: cannot write the new warehouse: {error}") from error
        raise
    return report


class _Workers:
    """The connections (cursors) that work beside the build's own: model workers, and the column tests.

    A model worker is opened when a stage first needs it and kept until the build ends: the variables are
    set on it once, and a macro file is run on it once, before the first model there that reads it (macros
    are TEMP: each connection has its own).

    The tests of stored tables run on a connection of their own, one after another in the background,
    each as soon as the stage that makes it ready starts: nothing waits for a test, so it takes the cores
    that the models leave idle, and only the end of the build waits for them all. The first failure stops
    them; the build raises it after the stage it happened in."""

    def __init__(self, con: duckdb.DuckDBPyConnection, set_variables: Callable[[duckdb.DuckDBPyConnection], None]):
        self._con = con
        self._set_variables = set_variables
        self._cursors: list[tuple[duckdb.DuckDBPyConnection, set[str]]] = []
        self._tests: queue.SimpleQueue[tuple[Model, list[ColumnTest]] | None] = queue.SimpleQueue()
        self._tester: threading.Thread | None = None
        self._tester_connection: duckdb.DuckDBPyConnection | None = None
        self._failure: BaseException | None = None
        self._cancelled = False

    def get(self, n: int) -> tuple[duckdb.DuckDBPyConnection, set[str]]:
        """Model worker ``n`` and the names of the macro files run on it."""
        while len(self._cursors) <= n:
            worker = cursor(self._con)
            self._set_variables(worker)
            self._cursors.append((worker, set()))
        return self._cursors[n]

    def test(self, tests: list[tuple[Model, list[ColumnTest]]]) -> None:
        """Queue column tests of stored tables, a model's at a time (they run in the order queued)."""
        if self._tester is None and tests:
            self._tester_connection = cursor(self._con)
            self._tester = threading.Thread(target=self._run_tests, args=(self._tester_connection,), daemon=True)
            self._tester.start()
        for item in tests:
            self._tests.put(item)

    def _run_tests(self, cursor: duckdb.DuckDBPyConnection) -> None:
        with cursor:
            while (item := self._tests.get()) is not None:
                if self._failure is None and not self._cancelled:
                    model, tests = item
                    try:
                        run_tests(cursor, model.file, table_name(model), tests, key_of(model.tests))
                    except BaseException as error:  # raised in the build's thread by check()
                        if not self._cancelled:  # an interrupted test is no failure
                            self._failure = error

    def check(self) -> None:
        """Raise the first test failure, if there was one."""
        if self._failure is not None:
            raise self._failure

    def finish(self) -> None:
        """Wait for the queued tests, then raise the first failure."""
        self._stop_tester()
        self.check()

    def close(self) -> None:
        """Stop the tests (the one running is interrupted), and close the connections."""
        self._cancelled = True
        if self._tester is not None and self._tester_connection is not None:
            self._tester_connection.interrupt()
        self._stop_tester()
        for worker, _ in self._cursors:
            worker.close()
        self._cursors.clear()

    def _stop_tester(self) -> None:
        if self._tester is not None:
            self._tests.put(None)
            self._tester.join()
            self._tester = None


def _run_stage(
    con: duckdb.DuckDBPyConnection, stage: Stage, models: list[Model], input_dir: Path, workers: _Workers
) -> dict[str, float]:
    """Run a stage's models, side by side where they can be, and its column tests; the seconds each model took.

    The build's connection runs, one after another, the models that build or read TEMP tables and views
    (only it sees those) and the first of the others, then the tests of TEMP tables. Each further model runs
    on a worker of its own: DuckDB releases the GIL while it works, and a query that keeps only a few cores
    busy (the matrices' list sorts over few, long rows) leaves the others to the rest of the stage. The
    tests of stored tables go to the background (_Workers)."""
    by_model = [(m, [test for _, test in tests]) for m, tests in itertools.groupby(stage.tests, key=lambda t: t[0])]
    workers.test([(m, tests) for m, tests in by_model if not m.builds_temp])
    apart = [m for m in stage.models if runs_apart(m, models)]
    on_build = [m for m in stage.models if m not in apart] + apart[:1]
    apart = apart[1:]
    tests_on_build = [(m, tests) for m, tests in by_model if m.builds_temp]
    seconds: dict[str, float] = {}

    def on_build_connection() -> None:
        for model in on_build:
            seconds[model.name] = _run_model(con, model, input_dir)
        for model, tests in tests_on_build:
            run_tests(con, model.file, table_name(model), tests, key_of(model.tests))

    def on_worker(n: int, model: Model) -> None:
        cursor, macros_run = workers.get(n)
        for macro in macros_for(model, models):
            if macro.name not in macros_run:
                _run_model(cursor, macro, input_dir)
                macros_run.add(macro.name)
        seconds[model.name] = _run_model(cursor, model, input_dir)

    if not apart:
        on_build_connection()
        return seconds
    for n in range(len(apart)):
        workers.get(n)  # opened here, not in the threads: the variables are set on one connection at a time
    with ThreadPoolExecutor(1 + len(apart)) as pool:  # DuckDB releases the GIL while it works
        tasks = [pool.submit(on_build_connection), *(pool.submit(on_worker, n, m) for n, m in enumerate(apart))]
    for task in tasks:
        task.result()  # the first failure, in the order above
    return seconds


def _run_model(con: duckdb.DuckDBPyConnection, model: Model, input_dir: Path) -> float:
    started = time.perf_counter()
    try:
        con.execute(model.sql)
    except duckdb.Error as error:
        # DuckDB's error quotes the whole line and its reader's options: one sentence says what the user needs
        too_long = re.search(r"CSV Error on Line: (\d+).*Maximum line size of (\d+) bytes exceeded", str(error), re.S)
        if too_long:
            line, limit = too_long.groups()
            named = re.search(r"^\s*file = (.+)$", str(error), re.M)
            where = named.group(1).strip() if named else f"a file in {input_dir}"
            raise EtlError(
                f"{where}, line {line}: longer than the {int(limit):,} bytes a line may hold (no MovieLens "
                "line comes near); remove or fix that line"
            ) from None
        raise EtlError(f"{model.file} failed on {input_dir}: {_shortened(str(error), 2000)}") from error
    return time.perf_counter() - started


def _inspect(role: str, path: Path) -> InputFile:
    """Size, hash and text conventions of one input file; an empty file is an error."""
    digest = hashlib.sha256()
    ascii_only = True
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            ascii_only = ascii_only and chunk.isascii()
    size = path.stat().st_size
    if size == 0:
        raise EtlError(f"{path}: the file is empty")
    # Ratings are numbers: read as latin-1, any non-ASCII byte fails the numeric casts and is reported.
    encoding = "latin-1" if role == "ratings" else detect_encoding(path)
    if encoding == "latin-1" and not ascii_only:
        check_latin1_text(path)
    return InputFile(role, path, size, digest.hexdigest(), encoding, detect_newline(path), ascii_only)


def _set_variables(
    con: duckdb.DuckDBPyConnection, input_dir: Path, layout: Layout, inputs: list[InputFile], options: EtlOptions
) -> None:
    """Everything the models read with getvariable(); values are bound as parameters, never spliced."""
    fingerprint = hashlib.sha256("".join(f.sha256 for f in inputs).encode()).hexdigest()
    variables: dict[str, object] = {
        "dataset_name": input_dir.resolve().name,
        "dataset_fingerprint": fingerprint,
        "layout": layout.name,
        "has_users_file": layout.has_users_file,
        "users_file": None,
        "ratings_delimiter": layout.ratings_delimiter,
        "ratings_delimiter_label": DELIMITER_LABELS[layout.ratings_delimiter],
        "rating_min": layout.scale.minimum,
        "rating_max": layout.scale.maximum,
        "rating_step": layout.scale.step,
        "split_seed": options.split_seed,
        "test_fraction": options.test_fraction,
        "validation_fraction": options.validation_fraction,
    }
    for f in inputs:
        variables |= {
            f"{f.role}_path": str(f.path),
            f"{f.role}_file": f.path.name,
            # The encoding DuckDB reads the file in. ASCII text is the same in UTF-8 and latin-1, and DuckDB reads
            # UTF-8 without a decoding pass: a plain-ASCII ratings file (the official ones) is read as UTF-8.
            f"{f.role}_encoding": "utf-8" if f.ascii_only else f.encoding,
            f"{f.role}_newline": f.newline,
        }
    for name, value in variables.items():
        con.execute(f"SET VARIABLE {name} = ?", [value])


def _shortened(text: str, keep: int = 200) -> str:
    """A bad line (or a reason quoting it) as an error message shows it: a line of megabytes cut to its start."""
    return text if len(text) <= keep else f"{text[:keep]}… ({len(text):,} characters)"


def _check_rejections(con: duckdb.DuckDBPyConnection, layout: Layout, max_bad_rows: int) -> int:
    """Stop on the first bad row unless up to ``max_bad_rows`` may be set aside in rejected_rows."""
    # fetchall, not fetchone: DuckDB 2 refuses con.sql() below while an execute() result is unfinished.
    rejected = con.execute("SELECT count(*) FROM rejected_rows").fetchall()[0][0]
    if rejected > max_bad_rows:
        # Report in the order the files are loaded: a bad movie line explains later rating errors.
        # (layout.files lists the ratings file first, so its order is not the load order.)
        load_order = ("genres", "movies", "users", "ratings")
        order = {layout.files[role].name: rank for rank, role in enumerate(load_order) if role in layout.files}
        rows = con.sql("SELECT file, line_no, raw_line, reason FROM rejected_rows").fetchall()
        file, line_no, raw_line, reason = min(rows, key=lambda row: (order.get(row[0], 99), row[1]))
        allowance = "no bad rows are allowed" if max_bad_rows == 0 else f"at most {max_bad_rows} allowed"
        raise EtlError(
            f"{_path_of(layout, file)}, line {line_no}: {_shortened(reason)}\n"
            f"    {_shortened(repr(raw_line))}\n"
            f"{rejected:,} bad rows in all, {allowance}. Fix the file, or rerun with --max-bad-rows N "
            "to set up to N bad rows aside in the table rejected_rows and load the rest."
        )
    return rejected


def _path_of(layout: Layout, file_name: str) -> Path:
    return next(path for path in layout.files.values() if path.name == file_name)


def _record_run(
    con: duckdb.DuckDBPyConnection,
    input_dir: Path,
    layout: Layout,
    inputs: list[InputFile],
    options: EtlOptions,
    report: EtlReport,
    started_at: datetime,
) -> None:
    run_id = str(uuid.uuid4())
    counts = report.row_counts
    con.execute(
        "INSERT INTO etl_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run_id,
            started_at,
            datetime.now(UTC).replace(tzinfo=None),
            report.seconds,
            str(input_dir.resolve()),
            layout.name,
            json.dumps(asdict(options)),
            counts["ratings"],
            counts["movies"],
            counts["users"],
            report.rejected,
            duckdb.__version__,
        ],
    )
    for f in inputs:
        con.execute(
            "INSERT INTO etl_run_files SELECT ?, ?, ?, ?, ?, ?, ?, (SELECT count(*) FROM rejected_rows WHERE file = ?)",
            [run_id, f.role, str(f.path.resolve()), f.bytes, f.sha256, f.encoding, f.newline, f.path.name],
        )
