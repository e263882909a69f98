"""Build the warehouse: run the SQL models over a MovieLens folder into a new file, then swap it in.

The build never touches the existing warehouse until the very end: models run into
``<warehouse>.building-<pid>``, and only a build that passed validation replaces the old file with an
atomic rename. A failed or killed ETL therefore leaves the previous warehouse exactly as it was.
Tables the ETL does not build (the trainer's runs and predictions, an analyst's own tables) and the
ETL's own run history are copied over from the previous warehouse, so a rebuild loses none of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from etl import warehouse as wh
from etl.errors import EtlError
from etl.layouts import Layout, detect_encoding, detect_layout, detect_newline
from etl.models import SQL_DIR, models_for, table_name

META_MODELS = [SQL_DIR / "meta" / "etl_runs.sql", SQL_DIR / "meta" / "etl_run_files.sql"]
DELIMITER_LABELS = {"\t": "a tab", "::": "::", ",": ","}


@dataclass(frozen=True)
class EtlOptions:
    max_bad_rows: int = 0  # 0: the first bad row stops the ETL
    split_seed: int = 42
    test_fraction: float = 0.1
    validation_fraction: float = 0.05
    lock_wait_seconds: float = wh.DEFAULT_LOCK_WAIT_SECONDS


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
    _remove_stale_builds(warehouse)
    building = warehouse.with_name(f"{warehouse.name}.building-{os.getpid()}")
    report = EtlReport(warehouse=warehouse, layout=layout.name)
    con = duckdb.connect(str(building))
    try:
        _set_variables(con, input_dir, layout, inputs, options)
        for model in models_for(layout):
            step = time.perf_counter()
            try:
                con.execute(model.read_text())
            except duckdb.Error as error:
                raise EtlError(f"sql/{model.relative_to(SQL_DIR)} failed on {input_dir}: {error}") from error
            if model.parent.name in ("core", "splits", "features"):
                rows = con.execute(f'SELECT count(*) FROM "{table_name(model)}"').fetchone()[0]
                report.row_counts[table_name(model)] = rows
                log(f"  {table_name(model):<20} {rows:>12,} rows  {time.perf_counter() - step:6.2f} s")
            else:
                log(f"  {table_name(model):<20} {'':>17} {time.perf_counter() - step:6.2f} s")
        report.rejected = _check_rejections(con, layout, options.max_bad_rows)
        if report.row_counts["ratings"] == 0:
            raise EtlError(f"{layout.files['ratings']}: no ratings to load")
        _carry_over(con, warehouse, options.lock_wait_seconds, log)
        for model in META_MODELS:
            con.execute(model.read_text())
        report.seconds = time.perf_counter() - started
        _record_run(con, input_dir, layout, inputs, options, report, started_at)
        con.execute("CHECKPOINT")
        con.close()
        _swap_in(building, warehouse)
    except BaseException:
        con.close()
        for leftover in (building, building.with_name(building.name + ".wal")):
            leftover.unlink(missing_ok=True)
        raise
    return report


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
    rejected = con.execute("SELECT count(*) FROM rejected_rows").fetchone()[0]
    if rejected > max_bad_rows:
        # Report in the order the files are loaded: a bad movie line explains later rating errors.
        order = {path.name: rank for rank, path in enumerate(layout.files.values())}
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


def _carry_over(
    con: duckdb.DuckDBPyConnection, warehouse: Path, lock_wait_seconds: float, log: Callable[[str], None]
) -> None:
    """Copy every table and view of the previous warehouse that this build did not create."""
    if not warehouse.exists():
        return
    # Read-only: analysts may keep reading the old file; a writer (a trainer saving results) makes us wait.
    wh.connect(warehouse, read_only=True, lock_wait_seconds=lock_wait_seconds).close()
    try:
        con.execute("ATTACH ? AS previous (READ_ONLY)", [str(warehouse)])
    except duckdb.Error as error:
        raise EtlError(
            f"{warehouse}: cannot read the existing warehouse to keep its other tables ({error}). "
            "Move it aside and rerun."
        ) from error
    built = {row[0] for row in con.sql("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()}
    old_tables = con.sql(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'previous' AND schema_name = 'main' ORDER BY 1"
    ).fetchall()
    for (table,) in old_tables:
        if table not in built:
            con.execute(f'CREATE TABLE main."{table}" AS SELECT * FROM previous.main."{table}"')
            log(f"  kept {table} from the previous warehouse")
    built_views = {row[0] for row in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal AND database_name = current_database()").fetchall()}
    for view, sql in con.sql(
        "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal AND database_name = 'previous' ORDER BY 1"
    ).fetchall():
        if view not in built_views:
            con.execute(sql)
    con.execute("DETACH previous")


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


def _swap_in(building: Path, warehouse: Path) -> None:
    """Atomically replace the warehouse with the finished build, durable across a power cut."""
    with building.open("rb") as f:
        os.fsync(f.fileno())
    # A WAL left by a crashed writer belongs to the old file and must not be replayed onto the new one.
    warehouse.with_name(warehouse.name + ".wal").unlink(missing_ok=True)
    os.replace(building, warehouse)
    directory = os.open(warehouse.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _remove_stale_builds(warehouse: Path) -> None:
    """Delete half-built files left by ETL processes that were killed."""
    for leftover in warehouse.parent.glob(f"{warehouse.name}.building-*"):
        pid = leftover.name.rsplit("-", 1)[-1].split(".")[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
