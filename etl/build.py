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
import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from etl.errors import EtlError
from etl.layouts import Layout, check_latin1_text, detect_encoding, detect_layout, detect_newline
from etl.models import models_for, table_name
from warehouse.carry_over import carry_over
from warehouse.connect import DEFAULT_LOCK_WAIT_SECONDS
from warehouse.sql import ETL_DIR, SQL_DIR
from warehouse.swap import DEFAULT_STORAGE_VERSION, StorageVersion, new_file, remove, remove_stale, side_file, swap_in, writer_lock

META_MODELS = [ETL_DIR / "meta" / "etl_runs.sql", ETL_DIR / "meta" / "etl_run_files.sql"]
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


def build_warehouse(
    input_dir: Path,
    warehouse: Path,
    options: EtlOptions = EtlOptions(),
    log: Callable[[str], None] = lambda message: None,
) -> EtlReport:
    """Load the MovieLens files in ``input_dir`` into ``warehouse`` (created or replaced)."""
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).replace(tzinfo=None)
    layout = detect_layout(input_dir)
    inputs = [_inspect(role, path) for role, path in layout.files.items()]
    log(f"{input_dir}: {layout.name} layout, " + ", ".join(f"{f.path.name} ({f.bytes:,} bytes)" for f in inputs))

    warehouse = warehouse.resolve()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(warehouse)
    building = side_file(warehouse, "building")
    report = EtlReport(warehouse=warehouse, layout=layout.name)
    try:
        con = new_file(building, options.storage_version, options.memory_limit_mb)
    except duckdb.Error as error:  # a read-only folder or file system, a full disk
        raise EtlError(f"{warehouse}: cannot create the new warehouse beside it: {error}") from error
    try:
        _set_variables(con, input_dir, layout, inputs, options)
        models = models_for(layout)
        for stage in _stages(models):
            seconds = _run_stage(con, stage, models, input_dir,
                                 lambda cursor: _set_variables(cursor, input_dir, layout, inputs, options))
            for model, took in zip(stage, seconds):
                if model.parent.name in ("core", "splits", "features") and not _is_view(con, table_name(model)):
                    rows = con.execute(f'SELECT count(*) FROM "{table_name(model)}"').fetchall()[0][0]
                    report.row_counts[table_name(model)] = rows
                    log(f"  {table_name(model):<20} {rows:>12,} rows  {took:6.2f} s")
                else:
                    log(f"  {table_name(model):<20} {'':>17} {took:6.2f} s")
                if table_name(model) == "rejected_rows":
                    # Fail fast, before the splits and matrices: on ml-32m those take most of the time.
                    report.rejected = _check_rejections(con, layout, options.max_bad_rows)
                    if report.row_counts["ratings"] == 0:
                        raise EtlError(f"{layout.files['ratings']}: no ratings to load")
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
        con.close()
        remove(building)
        if isinstance(error, (duckdb.Error, OSError)):  # a full disk at the checkpoint, say: no traceback
            raise EtlError(f"{warehouse}: cannot write the new warehouse: {error}") from error
        raise
    return report


def _stages(models: list[Path]) -> list[list[Path]]:
    """The models in run order, one stage each, except that the features/ models (the matrices) form one
    stage: each reads only the splits, and each alone keeps about one core busy (list sorts over few,
    long rows), so they are built side by side."""
    stages: list[list[Path]] = []
    for model in models:
        if stages and model.parent.name == "features" and stages[-1][0].parent.name == "features":
            stages[-1].append(model)
        else:
            stages.append([model])
    return stages


def _run_stage(
    con: duckdb.DuckDBPyConnection, stage: list[Path], models: list[Path], input_dir: Path,
    set_variables: Callable[[duckdb.DuckDBPyConnection], None],
) -> list[float]:
    """Run a stage's models, side by side when there are several; the seconds each took."""
    if len(stage) == 1:
        return [_run_model(con, stage[0], input_dir)]

    def run_on_own_connection(model: Path) -> float:
        # A cursor is a connection of its own: the variables and TEMP macros are set on it again.
        with con.cursor() as cursor:
            set_variables(cursor)
            for macro in (m for m in models if m.parent.name == "macros"):
                cursor.execute(macro.read_text())
            return _run_model(cursor, model, input_dir)

    with ThreadPoolExecutor(len(stage)) as pool:  # DuckDB releases the GIL while it works
        return list(pool.map(run_on_own_connection, stage))


def _run_model(con: duckdb.DuckDBPyConnection, model: Path, input_dir: Path) -> float:
    started = time.perf_counter()
    try:
        con.execute(model.read_text())
    except duckdb.Error as error:
        raise EtlError(f"sql/{model.relative_to(SQL_DIR)} failed on {input_dir}: {error}") from error
    return time.perf_counter() - started


def _is_view(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    # A view's rows are not counted: that would run its query, for a figure nobody asked for.
    return bool(con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [name]).fetchall()[0][0])


def _inspect(role: str, path: Path) -> InputFile:
    """Size, hash and text conventions of one input file; an empty file is an error."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    size = path.stat().st_size
    if size == 0:
        raise EtlError(f"{path}: the file is empty")
    # Ratings are numbers: read as latin-1, any non-ASCII byte fails the numeric casts and is reported.
    encoding = "latin-1" if role == "ratings" else detect_encoding(path)
    if encoding == "latin-1":
        check_latin1_text(path)
    return InputFile(role, path, size, digest.hexdigest(), encoding, detect_newline(path))


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
            f"{f.role}_encoding": f.encoding,
            f"{f.role}_newline": f.newline,
        }
    for name, value in variables.items():
        con.execute(f"SET VARIABLE {name} = ?", [value])


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
            f"{_path_of(layout, file)}, line {line_no}: {reason}\n"
            f"    {raw_line!r}\n"
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
            run_id, started_at, datetime.now(timezone.utc).replace(tzinfo=None), report.seconds,
            str(input_dir.resolve()), layout.name, json.dumps(asdict(options)),
            counts["ratings"], counts["movies"], counts["users"], report.rejected, duckdb.__version__,
        ],
    )
    for f in inputs:
        con.execute(
            "INSERT INTO etl_run_files SELECT ?, ?, ?, ?, ?, ?, ?, (SELECT count(*) FROM rejected_rows WHERE file = ?)",
            [run_id, f.role, str(f.path.resolve()), f.bytes, f.sha256, f.encoding, f.newline, f.path.name],
        )
