"""Which run serves each of the analysts' two roles, and how a new run earns one (champion/challenger).

- `recommendations`: the lists handed to people (the recommendations view). Judged on the validation slice's
  ranking, nDCG@10 (ranking_metrics); a run that ranks worse than the most popular movies there cannot hold it.
- `predictions`: the predicted star ratings (latest_predictions, latest_run). Judged on validation RMSE.

A finished run takes a role only when it is at least as good on that role's validation metric as the run
holding it, on the same data and split; otherwise it is recorded with the reason, and `trainer promote` can
still put it there (or put any earlier passing run back). Every decision is a row of `serving`; the newest
per role is in force, and the views serve it only while it belongs to the data in the warehouse now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import duckdb

from warehouse.errors import WarehouseError

ROLES = ("recommendations", "predictions")
RANKING_METRIC = "ndcg@10"  # trainer/ranking.py MAIN_METRIC: what the recommendations role compares
CONTESTING_KINDS = ("train", "blend")  # a scoring run refreshes its parent's lists; it holds no role itself


@dataclass(frozen=True)
class Verdict:
    role: str
    serves: bool
    reason: str  # a sentence: why it serves the role now, or why not
    promotable: bool = False  # it does not serve the role, but `trainer promote` can put it there


def contest(con: duckdb.DuckDBPyConnection, run_id: str) -> list[Verdict]:
    """Decide, for each role, whether the newly published run ``run_id`` takes it; record the winners."""
    return [_contest(con, run_id, role) for role in ROLES]


def scoring(con: duckdb.DuckDBPyConnection, run_id: str) -> Verdict:
    """Whether a scoring run's lists show in recommendations: they do when its parent serves recommendations (a
    scoring refreshes the lists of the run serving them); otherwise promoting the parent shows them."""
    ((parent,),) = con.execute("SELECT parent_run_id FROM runs WHERE run_id = ?", [run_id]).fetchall()
    holder = _holder(con, "recommendations")
    if holder is not None and holder["run_id"] == parent and _current(con, holder):
        return Verdict("recommendations", True, f"run {parent}, which it scored with, serves them")
    serving = f"run {holder['run_id']} serves them" if holder is not None else "no run serves them"
    return Verdict(
        "recommendations",
        False,
        f"{serving}, not run {parent}, which it scored with; trainer promote "
        f"{parent} --as recommendations shows these lists",
    )


def promote(con: duckdb.DuckDBPyConnection, run_id: str, roles: tuple[str, ...]) -> list[Verdict]:
    """Put ``run_id`` in ``roles`` by hand, whatever the holders' metrics: it must be a passing run that can play
    the role, on the data in the warehouse now."""
    run = _run(con, run_id)
    if run is None:
        raise WarehouseError(f"no run {run_id} in this warehouse: SELECT run_id, model FROM run_metrics lists them")
    if not _current(con, run):
        raise WarehouseError(
            f"run {run_id} was trained on other data than the warehouse holds now (other movies): "
            "its rows would be served against the wrong titles"
        )
    verdicts = []
    for role in roles:
        why_not = _cannot_play(con, run, role, by_hand=True)
        if why_not:
            raise WarehouseError(f"run {run_id} cannot serve {role}: {why_not}")
        _record(con, role, run_id, "promoted by hand (trainer promote)")
        verdicts.append(Verdict(role, True, "promoted by hand"))
    return verdicts


def playable(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[str, ...]:
    """The roles the run could be promoted to by hand."""
    run = _run(con, run_id)
    if run is None:
        raise WarehouseError(f"no run {run_id} in this warehouse: SELECT run_id, model FROM run_metrics lists them")
    roles = tuple(role for role in ROLES if _cannot_play(con, run, role, by_hand=True) is None)
    if not roles:
        raise WarehouseError(
            f"run {run_id} can serve no role: "
            + "; ".join(f"{role}: {_cannot_play(con, run, role, by_hand=True)}" for role in ROLES)
        )
    return roles


def backfill(con: duckdb.DuckDBPyConnection) -> None:
    """A warehouse written before roles existed served its newest passing training run everywhere: it keeps
    serving both roles until a better run takes them."""
    if con.execute("SELECT count(*) FROM serving").fetchall()[0][0]:
        return
    newest = con.execute(
        "SELECT run_id FROM runs WHERE coalesce(promoted, true) AND coalesce(kind, 'train') <> 'score' "
        "ORDER BY finished_at DESC, run_id DESC LIMIT 1"
    ).fetchall()
    for role in ROLES if newest else ():
        _record(con, role, newest[0][0], "served before roles existed")


def _contest(con: duckdb.DuckDBPyConnection, run_id: str, role: str) -> Verdict:
    run = _run(con, run_id)
    assert run is not None
    why_not = _cannot_play(con, run, role, by_hand=True)
    if why_not:
        return Verdict(role, False, why_not)
    why_not = _cannot_play(con, run, role, by_hand=False)
    if why_not:
        return Verdict(role, False, why_not, promotable=True)
    holder = _holder(con, role)
    if holder is None or not _current(con, holder):
        _record(con, role, run_id, "no run served it on this data")
        return Verdict(role, True, "no run served it on this data")
    if holder["run_id"] == run_id:
        return Verdict(role, True, "it served it already")
    if holder["split"] != run["split"]:
        return Verdict(
            role,
            False,
            f"run {holder['run_id']} serves it from split {holder['split']}, not "
            f"{run['split']}: their validation figures do not compare",
            True,
        )
    drawn = (holder["split_drawn_with"], run["split_drawn_with"])
    if None not in drawn and drawn[0] != drawn[1]:
        # the holder's draw is gone from the warehouse: a run on today's draw takes its place
        if drawn[1] == split_drawn_with(con, run["split"]):
            reason = f"run {holder['run_id']} was trained on an earlier draw of split {run['split']} ({drawn[0]})"
            _record(con, role, run_id, reason)
            return Verdict(role, True, reason)
        return Verdict(
            role,
            False,
            f"run {holder['run_id']} serves it from split {holder['split']} drawn with "
            f"{drawn[0]}, this run's was drawn with {drawn[1]}: their validation figures do "
            "not compare",
            True,
        )
    mine, theirs = _metric(con, run, role), _metric(con, holder, role)
    name = "validation nDCG@10" if role == "recommendations" else "validation RMSE"
    if theirs is not None and mine is None:
        return Verdict(role, False, f"it has no {name} to compare with run {holder['run_id']}'s {theirs:.4f}", True)
    if theirs is not None and mine is not None and not _at_least_as_good(role, mine, theirs):
        return Verdict(role, False, f"its {name} {mine:.4f} is worse than run {holder['run_id']}'s {theirs:.4f}", True)
    if theirs is None:  # a run from before ranking metrics: the newer run takes its place
        reason = f"run {holder['run_id']} has no {name} to compare with"
    else:
        reason = f"its {name} {mine:.4f} against run {holder['run_id']}'s {theirs:.4f}"
    _record(con, role, run_id, reason)
    return Verdict(role, True, reason)


def split_drawn_with(con: duckdb.DuckDBPyConnection, split: str) -> str | None:
    """The settings that drew the split's parts in the warehouse now (splits.drawn_with), or None where the
    warehouse (or its Parquet features) predates the column."""
    try:
        found = con.execute("SELECT drawn_with FROM splits WHERE split = ?", [split]).fetchall()
    except duckdb.BinderException:
        return None
    return found[0][0] if found else None


def _at_least_as_good(role: str, mine: float, theirs: float) -> bool:
    return mine >= theirs if role == "recommendations" else mine <= theirs


def _cannot_play(con: duckdb.DuckDBPyConnection, run: dict[str, Any], role: str, by_hand: bool) -> str | None:
    """Why the run cannot hold ``role`` (None when it can)."""
    if run["kind"] not in CONTESTING_KINDS:
        return f"a {run['kind']} run refreshes its parent's lists and holds no role"
    if not run["promoted"]:
        return f"it failed its audit ({run['audit_reason']})"
    if role == "predictions" and run["test_rmse"] is None:
        return "it ranks movies and predicts no ratings"
    if role == "recommendations":
        if not _has_lists(con, run["run_id"]):
            return "it wrote no recommendations (--top-n 0)"
        ranking = _validation_ranking(con, _judged_by(con, run)["run_id"])
        ranked, popular = ranking.get(RANKING_METRIC), ranking.get(f"popular {RANKING_METRIC}")
        if not by_hand and ranked is not None and popular is not None and ranked < popular:
            return (
                f"its validation nDCG@10 {ranked:.4f} is worse than the most popular movies' ({popular:.4f}); "
                "train a model built for ranking (--model ease)"
            )
    return None


def _metric(con: duckdb.DuckDBPyConnection, run: dict[str, Any], role: str) -> float | None:
    """The run's validation figure for ``role`` (_judged_by: a refit's validation slice is its training data, and
    the choices it repeats were made on the validation slice of the run it refits)."""
    judged = _judged_by(con, run)
    if role == "predictions":
        return judged["validation_rmse"]
    return _validation_ranking(con, judged["run_id"]).get(RANKING_METRIC)


def _judged_by(con: duckdb.DuckDBPyConnection, run: dict[str, Any]) -> dict[str, Any]:
    """The run whose validation figures judge ``run``: itself, or for a refit the run it refits."""
    parent = run["config"].get("refit_of")
    refitted = _run(con, parent) if parent else None
    return refitted if refitted is not None else run


def _validation_ranking(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, float]:
    rows = con.execute(
        "SELECT metric, value FROM ranking_metrics WHERE run_id = ? AND part = 'validation'", [run_id]
    ).fetchall()
    return dict(rows)


def _has_lists(con: duckdb.DuckDBPyConnection, run_id: str) -> bool:
    found = con.execute("SELECT 1 FROM predictions WHERE run_id = ? AND kind = 'top_n' LIMIT 1", [run_id]).fetchall()
    return bool(found)


def _run(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any] | None:
    rows = con.execute(
        "SELECT run_id, coalesce(kind, 'train') AS kind, split, split_drawn_with, dataset_fingerprint AS fingerprint, "
        "test_rmse, validation_rmse, coalesce(promoted, true) AS promoted, audit_reason, config FROM runs "
        "WHERE run_id = ?",
        [run_id],
    )
    found = rows.fetchall()
    if not found:
        return None
    run = dict(zip([column[0] for column in rows.description], found[0]))
    run["config"] = json.loads(run["config"] or "{}")
    return run


def _holder(con: duckdb.DuckDBPyConnection, role: str) -> dict[str, Any] | None:
    found = con.execute("SELECT run_id FROM serving WHERE role = ? ORDER BY decision DESC LIMIT 1", [role]).fetchall()
    return _run(con, found[0][0]) if found else None


def _current(con: duckdb.DuckDBPyConnection, run: dict[str, Any]) -> bool:
    """Whether the run's data is in the warehouse's lineage: its ids mean the movies the warehouse holds now."""
    found = con.execute("SELECT 1 FROM dataset_lineage WHERE fingerprint = ?", [run["fingerprint"]]).fetchall()
    return bool(found)


def _record(con: duckdb.DuckDBPyConnection, role: str, run_id: str, reason: str) -> None:
    con.execute(
        "INSERT INTO serving SELECT coalesce(max(decision), 0) + 1, ?, ?, now(), ? FROM serving", [role, run_id, reason]
    )
