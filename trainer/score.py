"""Scoring: fresh predictions from a trained run for the ratings in the warehouse now, without retraining.

A scoring run loads the weights its parent (a training run) selected, reads the current ratings of the
users it is asked for, maps them through the parent's own coordinates (trainer/coordinates.py: a rebuild
may have renumbered the warehouse's indexes), and ranks each user's unrated movies. Movies the model never
saw are left out of its inputs and counted. Models that fold in (user-row autoencoders) score users they
never trained on from their ratings alone; the others score the users they know and count the rest as
skipped. The results are published like a training run's (staged, audited, swapped in whole) as a run of
kind 'score' with its parent's id; the parent's rows are never touched.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import torch

from trainer import trained
from trainer.config import MachineSettings
from trainer.coordinates import Coordinates
from trainer.data import dataset_info
from trainer.errors import TrainerError
from trainer.predict import top_n
from trainer.run_record import device_name, new_run_id, pick_device, run_folder, utc_now
from warehouse import results
from warehouse.connect import open_for_reading


@dataclass(frozen=True)
class ScoreOptions:
    run_id: str  # the training run whose model scores
    warehouse: Path = Path("warehouse.duckdb")
    users: str | None = None  # comma-separated user ids, or a SQL query returning them; None: every user
    since: datetime | None = None  # only users with a rating at or after this time
    top_n: int | None = None  # None: as many as the training run wrote
    machine: MachineSettings = field(default_factory=MachineSettings)


@dataclass
class ScoreSummary:
    run_id: str
    parent_run_id: str
    run_dir: Path
    n_scored_users: int
    n_skipped_users: int
    n_unseen_movies: int  # movies the scored users rated that the model never saw
    n_unseen_ratings: int  # their ratings, left out of the model's inputs
    changes: list[str]  # how the warehouse's users and movies differ from the training run's
    score_seconds: float  # reading, scoring and staging
    publish_seconds: float
    published: results.Published


def score(options: ScoreOptions, log: Callable[[str], None] = lambda message: None) -> ScoreSummary:
    """Score ``options.users`` with run ``options.run_id``'s model and publish the scoring as a run of its own."""
    started, started_at = time.perf_counter(), utc_now()
    device = pick_device(options.machine.device)
    needs = ("dataset", "ratings", "user_index", "movie_index", "runs")
    con = open_for_reading(options.warehouse, options.machine.lock_wait_seconds, needs=needs)
    try:
        loaded = trained.load(con, options.run_id, device)
        parent, config, coords, model = loaded.run, loaded.config, loaded.coords, loaded.model
        changes = coords.changes(Coordinates.read(con))
        if changes:
            log(f"since run {options.run_id} trained: " + "; ".join(changes) + " (read through the run's own ids)")
        info = dataset_info(con)
        fingerprint = info.fingerprint
        scale = (info.rating_min, info.rating_max) if config.clip else None

        wanted = _users_to_score(con, options)
        if not len(wanted):
            since = f" at or after {options.since}" if options.since else ""
            among = " among the users --users names" if options.users else ""
            raise TrainerError(f"no user has a rating{since}{among}: nothing to score")
        known = coords.users(wanted) >= 0
        _say_who(wanted, known, options, log)
        skipped = wanted[~known] if not model.folds_in else wanted[:0]
        users = wanted if model.folds_in else wanted[known]
        if len(skipped):
            log(
                f"skipping {len(skipped):,} users run {options.run_id} never trained on: its model ({config.model}) "
                f"scores only the users it knows (e.g. user {skipped[0]}); retrain to include them"
            )
        trained.register(con, coords, users)
        ((unseen_movies, unseen_ratings),) = con.execute(
            "SELECT count(DISTINCT movie_id), count(*) FROM ratings JOIN scored_users USING (user_id) "
            "WHERE movie_id NOT IN (SELECT movie_id FROM run_movies)"
        ).fetchall()
        if unseen_ratings:
            log(
                f"{unseen_movies:,} movies run {options.run_id} never saw are left out of the inputs "
                f"({unseen_ratings:,} ratings)"
            )

        n = options.top_n if options.top_n is not None else config.top_n
        run_id = new_run_id()
        scorer = model.user_scorer(lambda: trained.movie_rows(con, coords, device))
        tables, squared, squared_mean, count = [], 0.0, 0.0, 0
        with torch.no_grad():
            for user_ids, rated in trained.user_rows(con, coords):
                rated = rated.to(device)
                raw = scorer(rated, torch.from_numpy(coords.users(user_ids)).to(device))
                if model.predicts_ratings:
                    scores = raw.clamp(*scale) if scale else raw
                    squared += (scores[rated.row_ids(), rated.cols] - rated.vals).double().square().sum().item()
                    squared_mean += (rated.vals.double() - loaded.mean).square().sum().item()
                    count += rated.vals.numel()
                # the top-N leaves out every movie the user rated, new ratings included; ranked as training ranks
                tables.append(top_n(run_id, user_ids, [rated], raw, n, coords.movie_ids, scale, model.predicts_ratings))
        none = results.prediction_table(run_id, "top_n", *[np.array([])] * 3)
        predictions = pa.concat_tables(tables) if tables else none
        ratings_from = None
        if not model.predicts_ratings:  # its lists show the ratings of the run serving predictions, if any
            predictions, ratings_from = trained.served_ratings(con, predictions, device, log)
    finally:
        con.close()

    run_dir = run_folder(Path(options.machine.runs_dir) / run_id, "scoring run")
    row = {
        "run_id": run_id,
        "kind": "score",
        "parent_run_id": options.run_id,
        "started_at": started_at,
        "finished_at": utc_now(),
        "model": config.model,
        "split": parent["split"],
        "split_drawn_with": parent.get("split_drawn_with"),
        "seed": config.seed,
        "dataset_name": parent["dataset_name"],
        "dataset_fingerprint": fingerprint,
        "device": device_name(device),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "torch_version": torch.__version__,
        "run_dir": str(run_dir.resolve()),
        # the training run's settings, with the threads this process scored on (trainer/threads.py)
        "config": json.dumps(config.to_dict() | {"threads": torch.get_num_threads()}, sort_keys=True),
        "n_scored_users": len(users),
        "n_skipped_users": len(skipped),
        "n_unseen_movies": unseen_movies,
        "n_unseen_ratings": unseen_ratings,
        # the audit's figures: the model's RMSE on the scored users' ratings it read, and the training mean's (a
        # model that only ranks predicts no rating to check: its scores are checked for being finite)
        "audit_slice": "scored users'" if model.predicts_ratings else "scores",
        "audit_rmse": math.sqrt(squared / count) if count else None,
        "baseline_rmse": math.sqrt(squared_mean / count) if count else None,
        "ratings_from_run": ratings_from,
    }
    row["wall_seconds"] = time.perf_counter() - started
    results.stage(run_dir, row, {"predictions": predictions})
    score_seconds = time.perf_counter() - started
    # Its own decision, not its training run's: a run served anyway does not make its scorings so.
    machine = options.machine
    published = results.publish(run_dir, options.warehouse, machine.lock_wait_seconds, machine.publish_anyway)
    return ScoreSummary(
        run_id,
        options.run_id,
        run_dir,
        len(users),
        len(skipped),
        unseen_movies,
        unseen_ratings,
        changes,
        score_seconds,
        time.perf_counter() - started - score_seconds,
        published,
    )


def _say_who(wanted: np.ndarray, known: np.ndarray, options: ScoreOptions, log: Callable[[str], None]) -> None:
    """Name the users about to be scored, and why each is (up to 20 of them): every user is not worth a line."""
    if options.users is None and options.since is None:
        return
    why = f"rated since {options.since:%Y-%m-%d %H:%M}" if options.since else "named by --users"
    named = [f"{user} ({why if was_known else 'a new user'})" for user, was_known in zip(wanted[:20], known[:20])]
    more = f" and {len(wanted) - 20:,} more" if len(wanted) > 20 else ""
    log(f"scoring {len(wanted):,} user{'s' if len(wanted) != 1 else ''}: {', '.join(named)}{more}")


def _users_to_score(con: duckdb.DuckDBPyConnection, options: ScoreOptions) -> np.ndarray:
    """The user ids to score, ascending: every user with a rating, or those --users and --since name."""
    ids = trained.rated_users(con, options.since)
    if options.users is None:
        return ids
    named = _named_users(options.users, options.warehouse)
    unknown = np.setdiff1d(named.ids, ids if options.since is None else trained.rated_users(con))
    if len(unknown):
        raise TrainerError(
            f"--users names {len(unknown):,} users with no rating in {options.warehouse} (e.g. {unknown[0]})"
        )
    chosen = np.isin(ids, named.ids)
    for low, high in named.ranges:
        chosen |= (ids >= low) & (ids <= high)
    return ids[chosen].astype(np.int64)


@dataclass(frozen=True)
class _Named:
    """The users --users names: ids, each of which must have a rating, and ranges of ids (inclusive), which
    name the users with a rating inside them (kept as bounds: 1-10000000000 costs nothing)."""

    ids: np.ndarray
    ranges: tuple[tuple[int, int], ...] = ()


_MAX_ID = 2**63 - 1  # ids are read as 64-bit integers
_LIST = re.compile(r"[0-9.,+\-\s]*")  # what a list of ids and ranges is made of (a query has letters)
_INTEGER_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
}


def _named_users(users: str, warehouse: Path) -> _Named:
    """--users: comma-separated ids and ranges (12,40,100-200); @FILE, a file of them (one a line, or
    comma-separated); or one SELECT statement whose one column is user ids (_query_users)."""
    text = users.strip()
    if text.startswith("@"):
        path = Path(text[1:].strip())
        try:
            return _id_list(path.read_text(encoding="utf-8"), f"--users {text}")
        except (OSError, UnicodeDecodeError) as error:
            raise TrainerError(f"--users {text}: cannot read the file of user ids: {error}") from error
    if _LIST.fullmatch(text):
        return _id_list(text, "--users")
    return _Named(_checked_ids(_query_users(text, warehouse)))


def _id_list(text: str, source: str) -> _Named:
    """Ids and ranges (low-high) separated by commas, blanks or lines."""
    ids, ranges = [], []
    for item in re.split(r"[\s,]+", re.sub(r"\s*-\s*", "-", text.strip())):
        if not item:
            continue
        low, dash, high = item.partition("-")
        if not dash:
            ids.append(_id(item, item, source))
            continue
        bounds = _id(low, item, source), _id(high, item, source)
        if bounds[0] > bounds[1]:
            raise TrainerError(f"{source}: the range {item} is empty (write the lower id first)")
        ranges.append(bounds)
    return _Named(np.unique(np.array(ids, dtype=np.int64)), tuple(ranges))


def _id(digits: str, item: str, source: str) -> int:
    if not digits.isascii() or not digits.isdigit():
        raise TrainerError(f"{source}: {item!r} is not a user id or a range of them (whole numbers: 12, or 1-100)")
    if len(digits) > 19 or int(digits) > _MAX_ID:
        raise TrainerError(f"{source}: the user id {digits[:30]}{'...' if len(digits) > 30 else ''} is past 64 bits")
    return int(digits)


def _checked_ids(values: list[int | None]) -> np.ndarray:
    """A query's user ids as 64-bit integers: a NULL, or one past 64 bits, is refused."""
    for value in values:
        if value is None:
            raise TrainerError("--users: the query returned a NULL user id")
        if not -_MAX_ID - 1 <= value <= _MAX_ID:
            raise TrainerError(f"--users: the query returned the user id {value}, past 64 bits")
    return np.unique(np.array(values, dtype=np.int64))


def _query_users(query: str, warehouse: Path) -> list[int | None]:
    """Run the --users query: one SELECT statement (DuckDB's own parser says), in another process, on a
    read-only connection to the warehouse with external access disabled and the configuration locked: it
    reads the warehouse's tables and nothing else, and writes nothing (no COPY, ATTACH, INSTALL, read_csv of
    another file). Another process, because those settings hold for a whole DuckDB database instance: set in
    this one, they would outlive the scoring in any other connection of this process to the warehouse (a
    notebook's), and a second instance here would drop this process's DuckDB lock on the file when closed."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as error:
        raise TrainerError(f"--users is neither a list of ids nor a query this warehouse answers: {error}") from error
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        kinds = ", ".join(statement.type.name for statement in statements) or "nothing"
        raise TrainerError(
            f"--users is neither a list of ids nor a query this warehouse answers: it must be one SELECT statement, "
            f"not {kinds}"
        )
    child = subprocess.run(
        [sys.executable, "-P", "-c", _QUERY_CHILD, str(warehouse), json.dumps(sorted(_INTEGER_TYPES))],
        input=statements[0].query,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        answer = json.loads(child.stdout.splitlines()[-1])
    except (IndexError, ValueError):
        last = (child.stderr.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
        raise TrainerError(f"--users: the query could not be run: {last}") from None
    if "error" in answer:
        raise TrainerError(f"--users is neither a list of ids nor a query this warehouse answers: {answer['error']}")
    if len(answer["types"]) != 1:
        raise TrainerError("--users: the query must return one column, of user ids")
    if answer["types"][0] not in _INTEGER_TYPES:
        raise TrainerError(
            f"--users: the query must return user ids as whole numbers, not {answer['types'][0]} "
            "(nothing is rounded: cast them if they are whole, e.g. CAST(x AS INTEGER))"
        )
    return answer["ids"]


# The --users query's process: the statement on stdin, one line of JSON out (its column types, and the ids
# when there is one integer column; or the error). Started with -P: no module of the working folder is loaded.
_QUERY_CHILD = """
import json, sys
import duckdb
try:
    con = duckdb.connect(sys.argv[1], read_only=True)
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    result = con.execute(sys.stdin.read())
    types = [str(column[1]) for column in result.description or []]
    ids = [row[0] for row in result.fetchall()] if len(types) == 1 and types[0] in json.loads(sys.argv[2]) else []
    print(json.dumps({"types": types, "ids": ids}))
except duckdb.Error as error:
    print(json.dumps({"error": str(error)}))
"""
