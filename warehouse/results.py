"""A run's results: staged as files in its folder, audited, then written into the warehouse.

Write, audit, publish. A run's rows are first staged in its folder, so nothing computed is lost when
the warehouse cannot be written (`trainer publish RUN_DIR` writes them later). Publishing writes them
into a new version of the warehouse (warehouse/swap.py) and audits them there before the swap:
predictions finite and inside the rating scale, a top-N for every user who has a movie left to
recommend, and a validation RMSE no worse than predicting the training mean. A run that fails the
audit is recorded with its figures and reason, but the serving views keep showing the last run that
passed (or that was published anyway, which is recorded too). Publishing is idempotent: a run's
earlier rows are replaced.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from warehouse import serving
from warehouse.connect import DEFAULT_LOCK_WAIT_SECONDS, connect, missing_tables
from warehouse.errors import WarehouseError
from warehouse.sql import RESULTS_DIR, VIEWS_DIR, read
from warehouse.swap import rewriting

# also the order of the DDL files
RESULT_TABLES = ("runs", "epoch_metrics", "predictions", "run_index", "ranking_metrics")
SERVING_TABLE = "serving"  # which run serves each role: decisions, not a run's own rows (warehouse/serving.py)
VIEWS = (
    "served_runs",
    "run_metrics",
    "latest_run",
    "latest_predictions",
    "latest_scoring",
    "recommendations",
)  # dependency order
BENCH_TABLE, BENCH_VIEW = "bench_results", "bench_summary"  # written by `trainer bench`
RUN_FILE = "run.json"
PUBLISHED_MARKER = "published"
# The staged files each kind of run writes (trainer/train.py, score.py, blend.py): a folder without one of them is
# not published, lest the run's rows of that table be replaced by none.
STAGED_FILES = {
    "train": ("predictions", "epoch_metrics", "run_index", "ranking_metrics"),
    "score": ("predictions",),
    "blend": ("predictions", "ranking_metrics"),
}
FIGURE_TOLERANCE = 1e-6  # relative: run.json's figures against those its staged predictions give (float noise)

# A run's id and the kind of row are one string for a whole block of rows: kept as a dictionary, one byte a row (the
# held-out lists of 200,000 users are 40 M rows, held until the run is staged); Parquet and DuckDB read them as text.
ONE_STRING = pa.dictionary(pa.int8(), pa.string())
PREDICTION_SCHEMA = pa.schema(
    [
        ("run_id", ONE_STRING),
        ("kind", ONE_STRING),
        ("user_id", pa.int32()),
        ("movie_id", pa.int32()),
        ("rank", pa.int32()),
        ("predicted_rating", pa.float32()),
        ("actual_rating", pa.float32()),
        ("cold_start", pa.bool_()),
        ("score", pa.float32()),
    ]
)
RANKING_SCHEMA = pa.schema(
    [("run_id", pa.string()), ("part", pa.string()), ("metric", pa.string()), ("value", pa.float64())]
)
EPOCH_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("epoch", pa.int32()),
        ("train_rmse", pa.float64()),
        ("validation_rmse", pa.float64()),
        ("seconds", pa.float64()),
    ]
)


def prediction_table(
    run_id: str,
    kind: str,
    user_ids: np.ndarray,
    movie_ids: np.ndarray,
    predicted: np.ndarray | None,
    actual: np.ndarray | None = None,
    rank: np.ndarray | None = None,
    cold: np.ndarray | None = None,
    score: np.ndarray | None = None,
) -> pa.Table:
    """Rows of `predictions` (sql/results/predictions.sql says what each kind holds)."""
    n = len(user_ids)

    def column(values: np.ndarray | None, kind: pa.DataType) -> pa.Array:
        return pa.nulls(n, kind) if values is None else pa.array(values, kind)

    return pa.Table.from_arrays(
        [
            pa.DictionaryArray.from_arrays(np.zeros(n, np.int8), [run_id]),
            pa.DictionaryArray.from_arrays(np.zeros(n, np.int8), [kind]),
            pa.array(user_ids, pa.int32()),
            pa.array(movie_ids, pa.int32()),
            column(rank, pa.int32()),
            column(predicted, pa.float32()),
            column(actual, pa.float32()),
            column(cold, pa.bool_()),
            column(score, pa.float32()),
        ],
        schema=PREDICTION_SCHEMA,
    )


def ranking_table(run_id: str, metrics: dict[str, dict[str, float]]) -> pa.Table:
    """Rows of `ranking_metrics`: the run's ranking metrics, by held-out part and metric name."""
    rows = [
        {"run_id": run_id, "part": part, "metric": name, "value": value}
        for part, found in metrics.items()
        for name, value in found.items()
    ]
    return pa.Table.from_pylist(rows, schema=RANKING_SCHEMA)


def epoch_table(run_id: str, history: list[dict[str, Any]]) -> pa.Table:
    """Rows of `epoch_metrics`: the run's learning curve."""
    return pa.Table.from_pylist(
        [{"run_id": run_id, **{key: h[key] for key in EPOCH_SCHEMA.names[1:]}} for h in history], schema=EPOCH_SCHEMA
    )


def stage(run_dir: Path, run: dict[str, Any], tables: dict[str, pa.Table]) -> None:
    """Write the run's row and its rows of the other result tables (``tables``: by table name, e.g. its learning
    curve as epoch_metrics, its predictions, its run_index) into its folder."""
    if unknown := set(tables) - set(RESULT_TABLES[1:]):
        raise ValueError(f"not result tables: {sorted(unknown)}")
    check_run_row(run)
    (run_dir / RUN_FILE).unlink(missing_ok=True)  # restaging: the old marker must not vouch for new files
    try:
        (run_dir / PUBLISHED_MARKER).unlink(missing_ok=True)  # nor say they are published (trainer run --resume)
        # Written by DuckDB: importing pyarrow.parquet would add to every run's start-up.
        scratch = duckdb.connect()
        for table in RESULT_TABLES[1:]:
            (run_dir / f"{table}.parquet").unlink(missing_ok=True)
            if table in tables:
                scratch.from_arrow(tables[table]).write_parquet(str(run_dir / f"{table}.parquet"))
        scratch.close()
        # Written last: its presence says the staged results are complete.
        (run_dir / RUN_FILE).write_text(json.dumps(run, indent=2, default=str))
    except (duckdb.Error, OSError) as error:  # a full or read-only disk
        raise WarehouseError(
            f"{run_dir}: cannot stage the results: {error}\nThe warehouse is untouched. Once there is room, "
            f"finish the run from its checkpoint with:\n    trainer run --resume {run_dir}"
        ) from error
    (run_dir / PUBLISHED_MARKER).unlink(missing_ok=True)


def check_run_row(run: dict[str, Any]) -> None:
    """Refuse a run's row that the `runs` table (sql/results/runs.sql, its one schema) would not take: a field it
    lacks (a typo) or a value of the wrong type. Checked when the run is staged, before anything is written, not at
    publish, after the work is done."""
    scratch, columns = _runs_table()
    if unknown := set(run) - columns:
        raise ValueError(f"not columns of runs: {sorted(unknown)}")
    cursor = scratch.cursor()  # the row is inserted in a transaction rolled back: the table stays empty
    cursor.execute("BEGIN TRANSACTION")
    try:
        placeholders = ", ".join("?" for _ in run)
        cursor.execute(f"INSERT INTO runs ({', '.join(run)}) VALUES ({placeholders})", list(run.values()))
    except duckdb.Error as error:
        raise ValueError(f"a row runs would not take: {error}") from error
    finally:
        cursor.execute("ROLLBACK")
        cursor.close()


@functools.cache
def _runs_table() -> tuple[duckdb.DuckDBPyConnection, frozenset[str]]:
    """An empty `runs` table in memory, made once a process (its DDL costs more than checking a row), and its
    columns."""
    scratch = duckdb.connect()
    scratch.execute(read(RESULTS_DIR / "runs.sql"))
    columns = scratch.execute("SELECT column_name FROM duckdb_columns()").fetchall()
    return scratch, frozenset(name for (name,) in columns)


@dataclass(frozen=True)
class Published:
    run_id: str
    promoted: bool  # the serving views now show this run
    audit_passed: bool
    audit_reason: str  # why the audit failed; empty when it passed
    roles: tuple[serving.Verdict, ...] = ()  # which roles it took, and why (not); a scoring: whether its lists show
    kind: str = "train"  # 'train', 'score' or 'blend'

    @property
    def serves(self) -> bool:
        """Whether analysts now see the run: a role taken, or, for a scoring run, its users' lists."""
        return any(verdict.serves for verdict in self.roles) if self.roles else self.promoted


def publish(
    run_dir: Path,
    warehouse: Path,
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
    publish_anyway: bool | None = None,
) -> Published:
    """Write a staged run into the warehouse, audit it, and promote it to the serving views if it passed
    (or ``publish_anyway``; None: as the run was configured)."""
    run = staged_run(run_dir)
    if missing := missing_files(run_dir, run):
        kind = run.get("kind") or "train"
        again = (
            f"remove {RUN_FILE} and `trainer run --resume {run_dir}` stages them again from the checkpoint"
            if kind == "train"
            else f"run the {kind} again"
        )
        raise WarehouseError(
            f"{run_dir}: run {run['run_id']}'s staged results are incomplete, {' and '.join(missing)} "
            f"missing (a {kind} run stages {', '.join(STAGED_FILES[kind])}): nothing was written; "
            f"{again}"
        )
    if publish_anyway is None:
        publish_anyway = bool(json.loads(run.get("config") or "{}").get("publish_anyway"))
    if not warehouse.exists():
        raise WarehouseError(
            f"{warehouse}: no warehouse here to publish run {run['run_id']} into. Build it from "
            f"the same MovieLens files first: etl build --warehouse {warehouse}"
        )
    try:
        with rewriting(warehouse, lock_wait_seconds) as con:
            _check_data(con, warehouse, run)
            create_results(con)
            _write_run(con, run_dir, run)
            _check_figures(con, run_dir, run)
            reasons = audit(con, run)
            promoted = not reasons or publish_anyway
            con.execute(
                "UPDATE runs SET audit_passed = ?, audit_reason = ?, promoted = ? WHERE run_id = ?",
                [not reasons, "; ".join(reasons) or None, promoted, run["run_id"]],
            )
            con.execute(f"DELETE FROM {SERVING_TABLE} WHERE run_id = ?", [run["run_id"]])  # published again
            scored = run.get("kind") == "score"
            verdicts = [serving.scoring(con, run["run_id"])] if scored else serving.contest(con, run["run_id"])
    except (WarehouseError, duckdb.Error, OSError) as error:  # the warehouse is as it was
        raise WarehouseError(
            f"could not write the results: {error}\nNothing is lost: the results are kept in {run_dir}. Once that "
            f"is put right, write them with:\n    trainer publish {run_dir} --warehouse {warehouse}"
        ) from error
    (run_dir / PUBLISHED_MARKER).touch()
    return Published(
        run["run_id"], promoted, not reasons, "; ".join(reasons), tuple(verdicts), run.get("kind") or "train"
    )


def promote(
    run_id: str, warehouse: Path, roles: tuple[str, ...], lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
) -> list[serving.Verdict]:
    """Put a published, passing run in ``roles`` by hand (warehouse/serving.py): to serve a run that did not win
    a role, or to go back to an earlier one."""
    with rewriting(warehouse, lock_wait_seconds) as con:
        create_results(con)
        return serving.promote(con, run_id, roles)


def promote_wherever_it_can(
    run_id: str, warehouse: Path, lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
) -> list[serving.Verdict]:
    """promote() into every role the run can play."""
    with rewriting(warehouse, lock_wait_seconds) as con:
        create_results(con)
        return serving.promote(con, run_id, serving.playable(con, run_id))


def staged_run(run_dir: Path) -> dict[str, Any]:
    """The staged run's row of `runs` (its run.json), refused with the reason when there is none or it is not one."""
    run_file = run_dir / RUN_FILE
    if not run_file.exists():
        raise WarehouseError(f"{run_dir}: no staged results ({RUN_FILE} is missing); the run did not finish")
    try:
        run = json.loads(run_file.read_text())
    except (OSError, ValueError) as error:
        raise WarehouseError(f"{run_file}: not a staged run this trainer can read ({error})") from error
    if not isinstance(run, dict) or "run_id" not in run:
        raise WarehouseError(f"{run_file}: not a staged run this trainer can read (no run_id)")
    return run


def missing_files(run_dir: Path, run: dict[str, Any]) -> list[str]:
    """The files a staged run of its kind needs that its folder lacks (a kind not known here: its run.json)."""
    needed = STAGED_FILES.get(run.get("kind") or "train")
    if needed is None:
        return [f"{RUN_FILE} of a known kind (not {run.get('kind')!r})"]
    return [f"{table}.parquet" for table in needed if not (run_dir / f"{table}.parquet").is_file()]


def _check_data(con: duckdb.DuckDBPyConnection, warehouse: Path, run: dict[str, Any]) -> None:
    """A run is published only into a warehouse the ETL built from the files it was trained on."""
    if missing_tables(con, ("dataset", "movies", "ratings", "movie_index")):
        raise WarehouseError(
            f"{warehouse} was not built by the ETL: build it from the files run {run['run_id']} "
            "was trained on (etl build), then publish"
        )
    ((fingerprint,),) = con.execute("SELECT fingerprint FROM dataset").fetchall()
    if run.get("dataset_fingerprint") and run["dataset_fingerprint"] != fingerprint:
        raise WarehouseError(
            f"{warehouse} holds other data than run {run['run_id']} was trained on (the ETL "
            "ran on other files since): its predictions would be served against the wrong "
            "ratings"
        )


def create_results(con: duckdb.DuckDBPyConnection) -> None:
    """The results tables (kept as they are when present) and the views over them."""
    for table in RESULT_TABLES:
        con.execute(read(RESULTS_DIR / f"{table}.sql"))
    con.execute(read(RESULTS_DIR / f"{SERVING_TABLE}.sql"))
    # a warehouse built before lineages existed: its own data alone
    con.execute("CREATE TABLE IF NOT EXISTS dataset_lineage AS SELECT fingerprint FROM dataset")
    serving.backfill(con)
    for view in VIEWS:
        con.execute(read(VIEWS_DIR / f"{view}.sql"))


def _write_run(con: duckdb.DuckDBPyConnection, run_dir: Path, run: dict[str, Any]) -> None:
    for table in RESULT_TABLES:
        con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run["run_id"]])
    # Column names come from a file: allow only the runs table's own columns.
    known = {
        row[0] for row in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'runs'").fetchall()
    }
    if not set(run) <= known:
        raise WarehouseError(f"{run_dir / RUN_FILE}: unexpected fields {sorted(set(run) - known)}")
    columns = ", ".join(run)
    con.execute(f"INSERT INTO runs ({columns}) VALUES ({', '.join('?' for _ in run)})", list(run.values()))
    for table in RESULT_TABLES[1:]:
        staged = run_dir / f"{table}.parquet"
        if staged.exists():  # a scoring run has no run_index of its own, nor a learning curve
            # every row the run's own (answered from the file's statistics): another run's would be duplicated
            ((low, high, unnamed),) = con.execute(
                "SELECT min(run_id), max(run_id), count(*) - count(run_id) FROM read_parquet(?)", [str(staged)]
            ).fetchall()
            if unnamed or low not in (None, run["run_id"]) or high not in (None, run["run_id"]):
                other = low if low != run["run_id"] else high
                raise WarehouseError(
                    f"{staged}: rows of run {other}, not only of run {run['run_id']} "
                    f"({RUN_FILE}): a file of another run copied into its folder?"
                )
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet(?)", [str(staged)])


def _check_figures(con: duckdb.DuckDBPyConnection, run_dir: Path, run: dict[str, Any]) -> None:
    """Refuse a run whose figures in run.json are not those of its staged predictions, beyond float noise: the audit
    and the roles (warehouse/serving.py) go by them. Its test RMSE and number of test ratings are recomputed from its
    predictions of kind 'test'. A training run's validation RMSE was measured while it trained, on the model's own
    predictions, where the staged ones of a user or movie with no training rating are the fallback's: it must lie
    between what its other validation predictions allow (_validation_bounds). Its audit_rmse on the validation
    slice is its validation_rmse. (A blend's validation RMSE is out of fold, and a run without a validation slice
    stages no predictions of its training part: neither is recomputed.)"""
    ((low, high),) = con.execute("SELECT rating_min, rating_max FROM dataset").fetchall()
    found = {
        kind: figures
        for kind, *figures in con.execute(
            """
        SELECT kind, count(*), sum((predicted_rating::DOUBLE - actual_rating) ^ 2),
               sum((predicted_rating::DOUBLE - actual_rating) ^ 2) FILTER (WHERE NOT coalesce(cold_start, false)),
               sum(greatest(actual_rating - ?, ? - actual_rating)::DOUBLE ^ 2) FILTER (WHERE cold_start)
        FROM predictions WHERE run_id = ? AND kind IN ('test', 'validation') GROUP BY kind""",
            [low, high, run["run_id"]],
        ).fetchall()
    }
    wrong = []
    n_test, squared, _, _ = found.get("test", (0, None, None, None))
    test = math.sqrt(squared / n_test) if n_test and squared is not None else None
    if not _agrees(run.get("test_rmse"), test) or (run.get("n_test") or 0) != n_test:
        wrong.append(
            f"test_rmse {run.get('test_rmse')} and n_test {run.get('n_test')}, where its test predictions "
            f"give {test} over {n_test:,} ratings"
        )
    claimed = run.get("validation_rmse")
    if (run.get("kind") or "train") == "train":
        n, _, warm, cold = found.get("validation", (0, None, None, None))
        clipped = bool(json.loads(run.get("config") or "{}").get("clip", True))
        bounds = _validation_bounds(n, warm, cold, clipped)
        if (bounds is None) != (claimed is None):
            wrong.append(f"validation_rmse {claimed}, where it has {n:,} validation predictions")
        elif bounds is not None and claimed is not None and not _within(claimed, *bounds):
            between = f"{bounds[0]}" if bounds[0] == bounds[1] else f"between {bounds[0]} and {bounds[1]}"
            wrong.append(f"validation_rmse {claimed}, where its validation predictions give {between}")
    if run.get("audit_slice") == "validation" and not _agrees(run.get("audit_rmse"), claimed):
        wrong.append(f"audit_rmse {run.get('audit_rmse')} on the validation slice, where validation_rmse is {claimed}")
    if wrong:
        kind = run.get("kind") or "train"
        again = (
            f"remove it and run `trainer run --resume {run_dir}`: it predicts from the checkpoint"
            if kind == "train"
            else f"run the {kind} again"
        )
        raise WarehouseError(
            f"{run_dir / RUN_FILE} does not match the staged predictions, whose figures would judge "
            f"and serve the run: {'; '.join(wrong)}. To stage them again, {again}"
        )


def _validation_bounds(n: int, warm: float | None, cold: float | None, clipped: bool) -> tuple[float, float] | None:
    """The lowest and highest validation RMSE a training run can have measured on its ``n`` validation ratings: from
    the squared errors of its staged predictions by the model (``warm``), and for those by the fallback, anything
    from none to the far end of the rating scale (``cold``: its sum; without bound for a run that does not clip).
    None without validation predictions."""
    if not n:
        return None
    lowest = math.sqrt((warm or 0.0) / n)
    if cold is None:  # none by the fallback: the figure is theirs
        return lowest, lowest
    return lowest, math.sqrt(((warm or 0.0) + cold) / n) if clipped else math.inf


def _within(value: float, lowest: float, highest: float) -> bool:
    """lowest <= value <= highest, to float noise (FIGURE_TOLERANCE); a NaN is within NaN bounds only."""
    if math.isnan(value) or math.isnan(lowest) or math.isnan(highest):
        return math.isnan(value) and (math.isnan(lowest) or math.isnan(highest))
    return lowest * (1 - FIGURE_TOLERANCE) - 1e-12 <= value <= highest * (1 + FIGURE_TOLERANCE) + 1e-12


def _agrees(claimed: float | None, recomputed: float | None) -> bool:
    """Whether a figure of run.json is the recomputed one, to float noise (both None agree)."""
    if claimed is None or recomputed is None:
        return claimed is None and recomputed is None
    return _within(claimed, recomputed, recomputed)


def audit(con: duckdb.DuckDBPyConnection, run: dict[str, Any]) -> list[str]:
    """Why the run's results must not be served (empty: they may be)."""
    reasons = []
    run_id = run["run_id"]
    for name in ("test_rmse", "validation_rmse"):
        value = run.get(name)
        if value is not None and not math.isfinite(value):
            reasons.append(f"{name} is {value}")
    ((low, high),) = con.execute("SELECT rating_min, rating_max FROM dataset").fetchall()
    bad = con.execute(
        "SELECT count(*) FROM predictions WHERE run_id = ? AND (NOT isfinite(predicted_rating) "
        "OR predicted_rating < ? OR predicted_rating > ? OR NOT isfinite(score))",
        [run_id, low, high],
    ).fetchall()[0][0]
    if bad:
        reasons.append(f"{bad:,} predictions are not finite or lie outside the rating scale {low:g}..{high:g}")
    # A scoring run scores the users it was asked for, not every user: it reports those it skipped itself.
    if json.loads(run.get("config") or "{}").get("top_n") and run.get("kind") != "score":
        # Users with a movie left to recommend (they have not rated every movie) but no recommendation.
        missing = con.execute(
            """
            SELECT count(*) FROM (SELECT user_id, count(*) AS rated FROM ratings GROUP BY user_id)
            WHERE rated < (SELECT count(*) FROM movie_index)
              AND user_id NOT IN (SELECT user_id FROM predictions WHERE run_id = ? AND kind = 'top_n')""",
            [run_id],
        ).fetchall()[0][0]
        if missing:
            reasons.append(f"{missing:,} users with movies left to recommend got no recommendations")
    model, baseline, where = run.get("audit_rmse"), run.get("baseline_rmse"), run.get("audit_slice", "validation")
    if where == "validation ranking":  # a model that only ranks: its validation lists against the most popular's
        # (a refit's validation slice is its training data: the run it refits chose on validation, and is judged)
        judged = json.loads(run.get("config") or "{}").get("refit_of") or run_id
        found = dict(
            con.execute(
                "SELECT metric, value FROM ranking_metrics WHERE run_id = ? AND part = 'validation'", [judged]
            ).fetchall()
        )
        ranked, popular = found.get("ndcg@10"), found.get("popular ndcg@10")
        if ranked is None or popular is None:
            reasons.append("no validation ranking to compare with the most popular movies'")
        elif not ranked >= popular:
            reasons.append(f"validation nDCG@10 {ranked:.4f} is worse than the most popular movies' ({popular:.4f})")
    elif where == "scores":  # a scoring by a model that only ranks: its scores were checked above
        pass
    elif model is None or baseline is None:
        reasons.append(f"no {where} RMSE to compare with predicting the training mean")
    elif not model <= baseline:  # a NaN fails too
        reasons.append(f"{where} RMSE {model:.4f} is worse than predicting the training mean ({baseline:.4f})")
    return reasons


def publish_bench(
    rows: list[dict[str, Any]], warehouse: Path, lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
) -> None:
    """Append `trainer bench` rows to bench_results (and refresh bench_summary)."""
    bench_rows = pa.Table.from_pylist(rows)  # noqa: F841 (DuckDB reads it by name in the query below)
    with rewriting(warehouse, lock_wait_seconds) as con:
        con.execute(read(RESULTS_DIR / f"{BENCH_TABLE}.sql"))
        con.execute(f"INSERT INTO {BENCH_TABLE} BY NAME SELECT * FROM bench_rows")
        con.execute(read(VIEWS_DIR / f"{BENCH_VIEW}.sql"))


def latest_summary(warehouse: Path) -> list[dict[str, Any]]:
    """Each (data set, model)'s latest bench figures (mean and std over its seeds), best RMSE first.

    Latest per model, not per bench: a bench of a few models updates their rows and keeps the others'.
    """
    con = connect(warehouse, read_only=True)
    try:
        table = con.sql("""
            SELECT dataset, model, protocol, n_seeds, rmse, coalesce(rmse_std, 0) AS rmse_std, mae,
                   coalesce(mae_std, 0) AS mae_std, ndcg_10, coalesce(ndcg_10_std, 0) AS ndcg_10_std, coverage_10,
                   train_seconds, device,
                   (SELECT any_value(r.config) FROM bench_results AS r
                    WHERE r.bench_id = s.bench_id AND r.model = s.model AND r.dataset = s.dataset) AS config
            FROM bench_summary AS s
            QUALIFY row_number() OVER (PARTITION BY dataset, model ORDER BY finished_at DESC) = 1
            ORDER BY dataset, rmse NULLS LAST, ndcg_10 DESC""").to_arrow_table()
    finally:
        con.close()
    return table.to_pylist()
