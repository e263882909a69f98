"""Blends: several training runs' predictions combined with weights fitted on their validation predictions.

Every training run keeps its predictions of its split's validation slice (kind 'validation'), made by the
model it selected, from training inputs that never held those ratings. A blend fits one weight per run and
an intercept to them (ridge regression, shrunk towards an equal average), then applies the weights to the
runs' test predictions: nothing is retrained, and the test part is read only after the weights are fixed.
The blend is published as a run of its own (kind 'blend', its members and weights in `runs.members`),
with test and validation predictions and a top-N like any training run's; the top-N ranks each user's
unrated movies by the blended scores of the members' models, from the user's ratings in the warehouse.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import torch

from trainer import trained
from trainer.config import BLEND_RIDGE
from trainer.errors import TrainerError
from trainer.evaluate import rating_metrics
from trainer.run_record import device_name, new_run_id, pick_device, utc_now
from warehouse import results
from warehouse.connect import DEFAULT_LOCK_WAIT_SECONDS, open_for_reading


@dataclass(frozen=True)
class BlendOptions:
    run_ids: tuple[str, ...]  # the training runs to blend, on the same split of the same data
    warehouse: Path = Path("warehouse.duckdb")
    ridge: float = BLEND_RIDGE
    top_n: int = 20
    runs_dir: Path = Path("runs")
    device: str = "auto"
    threads: int = 0
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
    publish_anyway: bool = False


@dataclass
class BlendSummary:
    run_id: str
    run_dir: Path
    weights: dict[str, float]  # by member run
    intercept: float
    validation_rmse: float  # of the blend, on the validation slice it was fitted on
    member_validation_rmse: dict[str, float]
    metrics: dict[str, float]  # on the test part: rmse, mae, user_rmse, n
    member_test_rmse: dict[str, float]
    wall_seconds: float
    published: results.Published


def blend(options: BlendOptions, log: Callable[[str], None] = lambda message: None) -> BlendSummary:
    """Fit the blend of ``options.run_ids`` on their validation predictions, score it on the test part, rank
    each user's movies, and publish it as a run of kind 'blend'."""
    started, started_at = time.perf_counter(), utc_now()
    if len(options.run_ids) < 2 or len(set(options.run_ids)) != len(options.run_ids):
        raise TrainerError("a blend takes two or more different training runs")
    device = pick_device(options.device)
    if options.threads:
        torch.set_num_threads(options.threads)
    needs = ("dataset", "ratings", "user_index", "movie_index", "runs", "predictions")
    con = open_for_reading(options.warehouse, options.lock_wait_seconds, needs=needs)
    try:
        members = [trained.load(con, run_id, device) for run_id in options.run_ids]
        ((fingerprint, rating_min, rating_max),) = con.execute(
            "SELECT fingerprint, rating_min, rating_max FROM dataset"
        ).fetchall()
        _check_members(members, fingerprint)

        # -- fit the weights on the validation slice: the test part is not read before they are fixed
        users, movies, actual, predicted = _held_out(con, members, "validation")
        weights, intercept = fit_weights(predicted, actual, options.ridge)
        blended_validation = np.clip(intercept + predicted @ weights, rating_min, rating_max)
        validation_rmse = _rmse(blended_validation, actual)
        member_validation = {m.run_id: _rmse(predicted[:, i], actual) for i, m in enumerate(members)}
        baseline = _rmse(np.full_like(actual, members[0].mean), actual)
        log("weights fitted on the validation slice: " + ", ".join(
            f"{m.run_id} ({m.config.model}) {w:+.3f}" for m, w in zip(members, weights)
        ) + f", intercept {intercept:+.3f}; validation RMSE {validation_rmse:.4f} (members: "
            + ", ".join(f"{rmse:.4f}" for rmse in member_validation.values()) + ")")  # fmt: skip

        run_id = new_run_id()
        tables = [
            results.prediction_table(run_id, "validation", users, movies, blended_validation, actual),
        ]
        # -- the test part, read now for the first time
        users, movies, actual, predicted = _held_out(con, members, "test")
        blended = np.clip(intercept + predicted @ weights, rating_min, rating_max)
        metrics = rating_metrics(torch.from_numpy(users), torch.from_numpy(blended), torch.from_numpy(actual))
        member_test = {m.run_id: _rmse(predicted[:, i], actual) for i, m in enumerate(members)}
        tables.append(results.prediction_table(run_id, "test", users, movies, blended, actual))

        # -- every user's top-N, from the members' models' blended scores
        if options.top_n:
            tables += _top_n(con, members, weights, intercept, (rating_min, rating_max), options.top_n, run_id,
                             device)  # fmt: skip
    finally:
        con.close()

    run_dir = options.runs_dir / run_id
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TrainerError(f"{run_dir}: cannot create the blend's folder: {error}") from error
    first = members[0].run
    row = {
        "run_id": run_id, "kind": "blend", "started_at": started_at, "finished_at": utc_now(),
        "model": "blend(" + " + ".join(m.config.model for m in members) + ")", "split": first["split"],
        "dataset_name": first["dataset_name"], "dataset_fingerprint": fingerprint, "device": device_name(device),
        "validation_rmse": validation_rmse, "test_rmse": metrics["rmse"], "test_mae": metrics["mae"],
        "test_user_rmse": metrics["user_rmse"], "n_test": metrics["n"], "torch_version": torch.__version__,
        "run_dir": str(run_dir.resolve()),
        "config": json.dumps({"ridge": options.ridge, "top_n": options.top_n,
                              "publish_anyway": options.publish_anyway}),  # fmt: skip
        "members": json.dumps({"runs": list(options.run_ids), "weights": weights.tolist(), "intercept": intercept}),
        # the audit's figures: the blend on the validation slice it was fitted on, and the training mean there
        "audit_slice": "validation", "audit_rmse": validation_rmse, "baseline_rmse": baseline,
        "train_seconds": sum(m.run.get("train_seconds") or 0.0 for m in members),
        "wall_seconds": time.perf_counter() - started,
    }  # fmt: skip
    results.stage(run_dir, row, {"predictions": pa.concat_tables(tables)})
    published = results.publish(run_dir, options.warehouse, options.lock_wait_seconds, options.publish_anyway)
    return BlendSummary(
        run_id, run_dir, dict(zip(options.run_ids, weights.tolist())), intercept, validation_rmse,
        member_validation, metrics, member_test, time.perf_counter() - started, published,
    )  # fmt: skip


def fit_weights(predicted: np.ndarray, actual: np.ndarray, ridge: float) -> tuple[np.ndarray, float]:
    """Weights w and intercept b minimising mean((actual - b - predicted @ w)^2) + ridge * |w - 1/k|^2.

    The penalty pulls the weights towards an equal average of the k members rather than towards 0: the
    members are all predictions of the same rating, so an average is the natural prior."""
    k = predicted.shape[1]
    x_mean, y_mean = predicted.mean(axis=0), actual.mean()
    x, y = predicted - x_mean, actual - y_mean
    n = len(actual)
    gram = x.T @ x / n + ridge * np.eye(k)
    weights = np.linalg.solve(gram, x.T @ y / n + ridge * np.full(k, 1.0 / k))
    return weights, float(y_mean - x_mean @ weights)


def _check_members(members: list[trained.TrainedRun], fingerprint: str) -> None:
    """Every member predicts the same split of the data the warehouse holds now."""
    first = members[0]
    for member in members:
        if member.run["split"] != first.run["split"]:
            raise TrainerError(f"runs {first.run_id} and {member.run_id} were trained on different splits "
                               f"({first.run['split']}, {member.run['split']}); a blend needs one split")  # fmt: skip
        if member.run["dataset_fingerprint"] != fingerprint:
            raise TrainerError(f"run {member.run_id} was trained on other data than the warehouse holds now (the "
                               "ETL ran again since): its predictions cannot be blended here")  # fmt: skip


def _held_out(
    con: duckdb.DuckDBPyConnection, members: list[trained.TrainedRun], kind: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The members' predictions of one held-out part (``kind``: validation or test): user ids, movie ids, the
    actual ratings, and one column of predictions per member, rows aligned."""
    columns: list[np.ndarray] = []
    keys: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    for member in members:
        rows = con.execute(
            "SELECT user_id, movie_id, actual_rating, predicted_rating FROM predictions "
            "WHERE run_id = ? AND kind = ? ORDER BY user_id, movie_id",
            [member.run_id, kind],
        ).fetchnumpy()
        if not len(rows["user_id"]):
            raise TrainerError(f"run {member.run_id} has no {kind} predictions (a run trained with --no-validation, "
                               "or before runs kept them): train it again to blend it")  # fmt: skip
        these = (rows["user_id"], rows["movie_id"], rows["actual_rating"])
        if keys is None:
            keys = these
        elif not all(np.array_equal(a, b) for a, b in zip(keys, these)):
            raise TrainerError(f"runs {members[0].run_id} and {member.run_id} predicted different {kind} ratings")
        columns.append(np.asarray(rows["predicted_rating"], dtype=np.float64))
    assert keys is not None
    users, movies, actual = keys
    return users.astype(np.int64), movies.astype(np.int64), np.asarray(actual, np.float64), np.stack(columns, 1)


def _top_n(
    con: duckdb.DuckDBPyConnection, members: list[trained.TrainedRun], weights: np.ndarray, intercept: float,
    scale: tuple[float, float], n: int, run_id: str, device: torch.device,
) -> list[pa.Table]:  # fmt: skip
    """Every user's top-N by the blended scores of the members' models."""
    coords = members[0].coords  # the same for every member: they were trained on the same data
    all_users = con.execute("SELECT DISTINCT user_id FROM ratings ORDER BY user_id").fetchnumpy()["user_id"]
    users = all_users[coords.users(all_users.astype(np.int64)) >= 0].astype(np.int64)
    trained.register(con, coords, users)
    scorers = [m.model.user_scorer(lambda: trained.movie_rows(con, coords, device)) for m in members]
    tables = []
    with torch.no_grad():
        for user_ids, rated in trained.user_rows(con, coords):
            rated = rated.to(device)
            index = torch.from_numpy(coords.users(user_ids)).to(device)
            scores = torch.full((len(user_ids), coords.n_movies), intercept, device=device)
            for member, scorer, weight in zip(members, scorers, weights):
                member_scores = scorer(rated, index)
                if member.config.clip:
                    member_scores = member_scores.clamp(*scale)
                scores += float(weight) * member_scores
            tables.append(trained.top_n(run_id, user_ids, rated, scores.clamp(*scale), n, coords))
    return tables


def _rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return math.sqrt(float(np.mean((predicted - actual) ** 2)))
