"""Blends: several training runs' predictions combined with weights fitted on their validation predictions.

Every training run keeps its predictions of its split's validation slice (kind 'validation'), made by the
model it selected, from training inputs that never held those ratings. A blend fits one weight per run and
an intercept to them (ridge regression, shrunk towards an equal average), then applies the weights to the
runs' test predictions: nothing is retrained, and the test part is read only after the weights are fixed.
The blend is published as a run of its own (kind 'blend', its members and weights in `runs.members`),
with test and validation predictions and a top-N like any training run's; the top-N ranks each user's
unrated movies by the blended scores of the members' models, from the user's ratings in the warehouse.

A member may be a refit (trainer/refit.py), trained on the validation slice too: its weight is fitted on the
validation predictions of the run it refits, which never trained on them, and applied to its own test predictions.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import torch

from trainer import trained
from trainer.config import MachineSettings
from trainer.data import dataset_info, eval_rows, stream_rows
from trainer.errors import TrainerError
from trainer.evaluate import rating_metrics
from trainer.predict import list_table, movie_counts, top_n
from trainer.ranking import RankingTally, evaluate_block, popularity_percentiles
from trainer.run_record import device_name, new_run_id, pick_device, run_folder, utc_now
from trainer.sparse import Csr, merge_parts
from warehouse import results
from warehouse.connect import open_for_reading


@dataclass(frozen=True)
class BlendOptions:
    run_ids: tuple[str, ...]  # the training runs to blend, on the same split of the same data
    warehouse: Path = Path("warehouse.duckdb")
    ridge: float | None = None  # None: chosen by cross-validation on the validation slice
    activity: bool | None = None  # weights that vary with users' and movies' activity; None: chosen likewise
    top_n: int = 20
    machine: MachineSettings = field(default_factory=MachineSettings)


@dataclass
class BlendSummary:
    run_id: str
    run_dir: Path
    blender: Blender
    validation_rmse: float  # of the blend, out of fold on the validation slice (cross-validation)
    member_validation_rmse: dict[str, float]
    metrics: dict[str, float]  # on the test part: rmse, mae, user_rmse, n
    member_test_rmse: dict[str, float]
    ranking: dict[str, dict[str, float]]  # the blended scores' held-out ranking metrics, by part
    wall_seconds: float
    published: results.Published


def blend(options: BlendOptions, log: Callable[[str], None] = lambda message: None) -> BlendSummary:
    """Fit the blend of ``options.run_ids`` on their validation predictions, score it on the test part, rank
    each user's movies, and publish it as a run of kind 'blend'."""
    started, started_at = time.perf_counter(), utc_now()
    repeated = sorted({run_id for run_id in options.run_ids if options.run_ids.count(run_id) > 1})
    if repeated:
        raise TrainerError(
            f"run{'s' if len(repeated) > 1 else ''} {', '.join(repeated)} named more than once: a "
            "blend takes each run once"
        )
    if len(options.run_ids) < 2:
        raise TrainerError("a blend takes two or more different training runs")
    device = pick_device(options.machine.device)
    needs = ("dataset", "ratings", "user_index", "movie_index", "runs", "predictions")
    con = open_for_reading(options.warehouse, options.machine.lock_wait_seconds, needs=needs)
    try:
        members = [trained.load(con, run_id, device) for run_id in options.run_ids]
        info = dataset_info(con)
        fingerprint, rating_min, rating_max = info.fingerprint, info.rating_min, info.rating_max
        _check_members(members, fingerprint, log)

        # -- fit the weights on the validation slice: the test part is not read before they are fixed
        users, movies, actual, predicted = _held_out(con, members, "validation")
        activity = Activity.of(con, members[0].run["split"], users, movies)
        blender, validation_rmse = choose(predicted, actual, users, movies, activity, options.ridge, options.activity)
        blended_validation = np.clip(blender.apply(predicted, activity, users, movies), rating_min, rating_max)
        member_validation = {m.run_id: _rmse(predicted[:, i], actual) for i, m in enumerate(members)}
        baseline = _rmse(np.full_like(actual, members[0].mean), actual)
        log(
            f"blend chosen by {FOLDS}-fold cross-validation on the validation slice: {blender.describe()}; "
            f"validation RMSE {validation_rmse:.4f} out of fold (members: "
            + ", ".join(f"{rmse:.4f}" for rmse in member_validation.values())
            + ")"
        )

        run_id = new_run_id()
        tables = [
            results.prediction_table(run_id, "validation", users, movies, blended_validation, actual),
        ]
        # -- the test part, read now for the first time
        users, movies, actual, predicted = _held_out(con, members, "test")
        blended = np.clip(blender.apply(predicted, activity, users, movies), rating_min, rating_max)
        metrics = rating_metrics(torch.from_numpy(users), torch.from_numpy(blended), torch.from_numpy(actual))
        member_test = {m.run_id: _rmse(predicted[:, i], actual) for i, m in enumerate(members)}
        tables.append(results.prediction_table(run_id, "test", users, movies, blended, actual))

        # -- the held-out rankings and every user's top-N, from the members' models' blended scores
        blended_scores = _BlendedScores(con, members, blender, activity, (rating_min, rating_max), device)
        lists, ranking = blended_scores.held_out_rankings(run_id)
        tables += lists
        if options.top_n:
            tables += blended_scores.top_n(run_id, options.top_n)
    finally:
        con.close()

    run_dir = run_folder(Path(options.machine.runs_dir) / run_id, "blend")
    first = members[0].run
    row = {
        "run_id": run_id,
        "kind": "blend",
        "started_at": started_at,
        "finished_at": utc_now(),
        "model": "blend(" + " + ".join(m.config.model for m in members) + ")",
        "split": first["split"],
        "split_drawn_with": first.get("split_drawn_with"),
        "dataset_name": first["dataset_name"],
        "dataset_fingerprint": fingerprint,
        "device": device_name(device),
        "validation_rmse": validation_rmse,
        "test_rmse": metrics["rmse"],
        "test_mae": metrics["mae"],
        "test_user_rmse": metrics["user_rmse"],
        "n_test": metrics["n"],
        "torch_version": torch.__version__,
        "run_dir": str(run_dir.resolve()),
        "config": json.dumps(
            {
                "ridge": options.ridge,
                "activity": options.activity,
                "top_n": options.top_n,
                "publish_anyway": options.machine.publish_anyway,
                "threads": torch.get_num_threads(),
            }
        ),  # this process's (trainer/threads.py)
        "members": json.dumps({"runs": list(options.run_ids), **blender.to_dict()}),
        # the audit's figures: the blend out of fold on the validation slice, and the training mean there
        "audit_slice": "validation",
        "audit_rmse": validation_rmse,
        "baseline_rmse": baseline,
        "train_seconds": sum(m.run.get("train_seconds") or 0.0 for m in members),
        "wall_seconds": time.perf_counter() - started,
    }
    staged = {"predictions": pa.concat_tables(tables), "ranking_metrics": results.ranking_table(run_id, ranking)}
    results.stage(run_dir, row, staged)
    machine = options.machine
    published = results.publish(run_dir, options.warehouse, machine.lock_wait_seconds, machine.publish_anyway)
    return BlendSummary(
        run_id,
        run_dir,
        blender,
        validation_rmse,
        member_validation,
        metrics,
        member_test,
        ranking,
        time.perf_counter() - started,
        published,
    )


FOLDS = 5  # the cross-validation that chooses the penalty and the features, on the validation slice
RIDGES = (1e-4, 1e-3, 1e-2, 1e-1)  # the penalties it tries, in the units of a mean squared error


def fit_weights(
    features: np.ndarray, actual: np.ndarray, ridge: float, prior: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Weights w and intercept b minimising mean((actual - b - features @ w)^2) + ridge * |w - prior|^2.

    The prior is an equal average of the members' predictions (and 0 for any other feature): the members
    all predict the same rating, so the penalty pulls towards averaging them rather than towards 0."""
    k = features.shape[1]
    prior = np.full(k, 1.0 / k) if prior is None else prior
    x_mean, y_mean = features.mean(axis=0), actual.mean()
    x, y = features - x_mean, actual - y_mean
    n = len(actual)
    # lstsq, not solve: with no penalty, two members that predict alike make the system singular
    weights = np.linalg.lstsq(x.T @ x / n + ridge * np.eye(k), x.T @ y / n + ridge * prior, rcond=None)[0]
    return weights, float(y_mean - x_mean @ weights)


@dataclass(frozen=True)
class Activity:
    """How many training ratings each user and movie has, as standardised logs: blend weights may lean on
    one member for users or movies with few ratings and on another for those with many."""

    user_counts: dict[int, int]
    movie_counts: dict[int, int]
    centre: tuple[float, float]  # the mean and standard deviation of the logs over the validation slice
    scale: tuple[float, float]

    @staticmethod
    def of(con: duckdb.DuckDBPyConnection, split: str, users: np.ndarray, movies: np.ndarray) -> Activity:
        def counts(column: str) -> dict[int, int]:  # column: a fixed name from below
            rows = con.execute(
                f"SELECT {column}, count(*) FROM split_ratings WHERE split = ? AND part = 'train' GROUP BY 1", [split]
            ).fetchall()
            return dict(rows)

        user_counts, movie_counts = counts("user_id"), counts("movie_id")
        logs = [
            np.log1p(np.array([c.get(i, 0) for i in ids], float))
            for c, ids in ((user_counts, users), (movie_counts, movies))
        ]
        centre = (float(logs[0].mean()), float(logs[1].mean()))
        scale = (float(logs[0].std()) or 1.0, float(logs[1].std()) or 1.0)
        return Activity(user_counts, movie_counts, centre, scale)

    def users(self, ids: np.ndarray) -> np.ndarray:
        logs = np.log1p(np.array([self.user_counts.get(int(i), 0) for i in ids], float))
        return (logs - self.centre[0]) / self.scale[0]

    def movies(self, ids: np.ndarray) -> np.ndarray:
        logs = np.log1p(np.array([self.movie_counts.get(int(i), 0) for i in ids], float))
        return (logs - self.centre[1]) / self.scale[1]


@dataclass(frozen=True)
class Blender:
    """blended = intercept + sum over members i of p_i * (weight_i + by_user_i * a_u + by_movie_i * a_m)
    + user * a_u + movie * a_m, where a_u and a_m are the user's and the movie's Activity (all 0 without)."""

    weights: np.ndarray
    intercept: float
    ridge: float
    activity: bool
    by_user: np.ndarray
    by_movie: np.ndarray
    user: float = 0.0
    movie: float = 0.0

    @staticmethod
    def fit(
        predicted: np.ndarray,
        actual: np.ndarray,
        activity: Activity | None,
        ridge: float,
        users: np.ndarray,
        movies: np.ndarray,
    ) -> Blender:
        k = predicted.shape[1]
        if activity is None:
            weights, intercept = fit_weights(predicted, actual, ridge)
            return Blender(weights, intercept, ridge, False, np.zeros(k), np.zeros(k))
        a_u, a_m = activity.users(users)[:, None], activity.movies(movies)[:, None]
        features = np.concatenate([predicted, predicted * a_u, predicted * a_m, a_u, a_m], axis=1)
        prior = np.concatenate([np.full(k, 1.0 / k), np.zeros(2 * k + 2)])
        w, intercept = fit_weights(features, actual, ridge, prior)
        return Blender(w[:k], intercept, ridge, True, w[k : 2 * k], w[2 * k : 3 * k], float(w[-2]), float(w[-1]))

    def apply(self, predicted: np.ndarray, activity: Activity, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        if not self.activity:
            return self.intercept + predicted @ self.weights
        a_u, a_m = activity.users(users), activity.movies(movies)
        per_member = self.weights + np.outer(a_u, self.by_user) + np.outer(a_m, self.by_movie)
        return self.intercept + (predicted * per_member).sum(axis=1) + self.user * a_u + self.movie * a_m

    def describe(self) -> str:
        weights = ", ".join(f"{w:+.3f}" for w in self.weights)
        return f"weights {weights}, intercept {self.intercept:+.3f}, ridge {self.ridge:g}" + (
            ", weights varying with activity" if self.activity else ""
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights.tolist(),
            "intercept": self.intercept,
            "ridge": self.ridge,
            "activity": self.activity,
            "by_user": self.by_user.tolist(),
            "by_movie": self.by_movie.tolist(),
            "user": self.user,
            "movie": self.movie,
        }


def choose(
    predicted: np.ndarray,
    actual: np.ndarray,
    users: np.ndarray,
    movies: np.ndarray,
    activity: Activity,
    ridge: float | None,
    with_activity: bool | None,
) -> tuple[Blender, float]:
    """The penalty and features with the best out-of-fold RMSE over FOLDS folds of the validation slice (the
    given ones only, where fixed), refitted on all of it; and that out-of-fold RMSE."""
    folds = np.random.default_rng(0).permutation(len(actual)) % FOLDS
    best: tuple[float, float, bool] | None = None
    for candidate in RIDGES if ridge is None else (ridge,):
        for uses in (False, True) if with_activity is None else (with_activity,):
            errors = np.empty(len(actual))
            for fold in range(FOLDS):
                fit, held = folds != fold, folds == fold
                blender = Blender.fit(
                    predicted[fit], actual[fit], activity if uses else None, candidate, users[fit], movies[fit]
                )
                errors[held] = blender.apply(predicted[held], activity, users[held], movies[held]) - actual[held]
            rmse = math.sqrt(float(np.mean(errors**2)))
            if best is None or rmse < best[0]:
                best = (rmse, candidate, uses)
    assert best is not None
    rmse, candidate, uses = best
    return Blender.fit(predicted, actual, activity if uses else None, candidate, users, movies), rmse


def _check_members(members: list[trained.TrainedRun], fingerprint: str, log: Callable[[str], None]) -> None:
    """Every member predicts ratings of the same split of the data the warehouse holds now, and no refit comes with
    the run it refits (the two would share their validation predictions). A member that failed its audit is said."""
    first = members[0]
    ids = {member.run_id for member in members}
    for member in members:
        if member.run["test_rmse"] is None:
            raise TrainerError(
                f"run {member.run_id} ({member.config.model}) ranks movies and predicts no ratings: a "
                "blend of predicted ratings cannot take it"
            )
        if member.run.get("audit_passed") is False:
            log(
                f"run {member.run_id} failed its audit ({member.run.get('audit_reason')}); the blend takes it as "
                "asked, and is audited on its own"
            )
        if member.config.refit_of in ids:
            raise TrainerError(
                f"run {member.run_id} is a refit of run {member.config.refit_of}: blend one of the two, not both"
            )
        if member.run["split"] != first.run["split"]:
            raise TrainerError(
                f"runs {first.run_id} and {member.run_id} were trained on different splits "
                f"({first.run['split']}, {member.run['split']}); a blend needs one split"
            )
        drawn = (first.run.get("split_drawn_with"), member.run.get("split_drawn_with"))
        if None not in drawn and drawn[0] != drawn[1]:
            raise TrainerError(
                f"runs {first.run_id} and {member.run_id} were trained on split {first.run['split']} "
                f"drawn anew in between ({drawn[0]}; {drawn[1]}): their held-out ratings differ, a "
                "blend needs one draw"
            )
        if member.run["dataset_fingerprint"] != fingerprint:
            raise TrainerError(
                f"run {member.run_id} was trained on other data than the warehouse holds now (the "
                "ETL ran again since): its predictions cannot be blended here"
            )


def _held_out(
    con: duckdb.DuckDBPyConnection, members: list[trained.TrainedRun], kind: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The members' predictions of one held-out part (``kind``: validation or test): user ids, movie ids, the
    actual ratings, and one column of predictions per member, rows aligned."""
    columns: list[np.ndarray] = []
    keys: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    for member in members:
        # a refit trained on the validation slice: the run it refits predicted that slice for it
        source = member.config.refit_of if kind == "validation" and member.config.refit_of else member.run_id
        rows = con.execute(
            "SELECT user_id, movie_id, actual_rating, predicted_rating FROM predictions "
            "WHERE run_id = ? AND kind = ? ORDER BY user_id, movie_id",
            [source, kind],
        ).fetchnumpy()
        if not len(rows["user_id"]):
            raise TrainerError(
                f"run {member.run_id} has no {kind} predictions (a run trained with --no-validation, "
                "or before runs kept them): train it again to blend it"
            )
        these = (rows["user_id"], rows["movie_id"], rows["actual_rating"])
        if keys is None:
            keys = these
        elif not all(np.array_equal(a, b) for a, b in zip(keys, these)):
            raise TrainerError(f"runs {members[0].run_id} and {member.run_id} predicted different {kind} ratings")
        columns.append(np.asarray(rows["predicted_rating"], dtype=np.float64))
    assert keys is not None
    users, movies, actual = keys
    return users.astype(np.int64), movies.astype(np.int64), np.asarray(actual, np.float64), np.stack(columns, 1)


class _BlendedScores:
    """The blend's score of every movie for blocks of users: the members' models' scores (clipped as each member's
    predictions were when the weights were fitted), weighted as the blender weighs their predictions."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        members: list[trained.TrainedRun],
        blender: Blender,
        activity: Activity,
        scale: tuple[float, float],
        device: torch.device,
    ) -> None:
        self.con, self.members, self.blender, self.activity, self.scale = con, members, blender, activity, scale
        self.coords = members[0].coords  # the same for every member: they were trained on the same data
        all_users = trained.rated_users(con)  # the users of the top-N, and the run's ids that movie rows read
        trained.register(con, self.coords, all_users[self.coords.users(all_users) >= 0])
        self.scorers = [m.model.user_scorer(lambda: trained.movie_rows(con, self.coords, device)) for m in members]
        self.movie_activity = torch.from_numpy(activity.movies(self.coords.movie_ids)).float().to(device)[None, :]
        self.device = device

    def __call__(self, rated: Csr, index: torch.Tensor) -> torch.Tensor:
        """Scores (users x movies, unclipped: they rank) of the users at ``index`` whose known ratings are ``rated``."""
        user_ids = self.coords.user_ids[index.cpu().numpy()]
        user_activity = torch.from_numpy(self.activity.users(user_ids)).float().to(self.device)[:, None]
        blender, movie_activity = self.blender, self.movie_activity
        scores = blender.intercept + blender.user * user_activity + blender.movie * movie_activity
        scores = scores.expand(len(user_ids), self.coords.n_movies).clone()
        for i, (member, scorer) in enumerate(zip(self.members, self.scorers)):
            member_scores = scorer(rated, index)
            if member.config.clip:
                member_scores = member_scores.clamp(*self.scale)
            weight = blender.weights[i] + blender.by_user[i] * user_activity + blender.by_movie[i] * movie_activity
            scores += weight * member_scores
        return scores

    def top_n(self, run_id: str, n: int) -> list[pa.Table]:
        """Every user's top-N among the movies she has not rated, from all her ratings now."""
        tables = []
        with torch.no_grad():
            for user_ids, rated in trained.user_rows(self.con, self.coords):
                rated = rated.to(self.device)
                scores = self(rated, torch.from_numpy(self.coords.users(user_ids)).to(self.device))
                tables.append(top_n(run_id, user_ids, [rated], scores, n, self.coords.movie_ids, self.scale))
        return tables

    def held_out_rankings(self, run_id: str) -> tuple[list[pa.Table], dict[str, dict[str, float]]]:
        """The blend's held-out lists (predictions of kind test_top_n, validation_top_n) and their ranking metrics
        (trainer/ranking.py), as a training run's: the test part ranked among the movies unrated in train and
        validation, from those ratings; the validation slice among the movies unrated in train, from the train
        ratings, unless a member is a refit (which trained on the validation slice)."""
        split, n_movies = self.members[0].run["split"], self.coords.n_movies
        knows: dict[str, tuple[str, ...]] = {"test": ("train", "validation")}
        if not any(member.config.refit_of for member in self.members):
            knows["validation"] = ("train",)
        rankings = {
            part: RankingTally(popularity_percentiles(movie_counts(self.con, split, known, n_movies)))
            for part, known in knows.items()
        }
        tables = []
        with torch.no_grad():
            for users, matrices in stream_rows(
                self.con, split, ("train", "validation", "test"), n_movies, eval_rows(n_movies)
            ):
                users = users.to(self.device)
                matrices = {part: m.to(self.device) for part, m in matrices.items()}
                block_ids = self.coords.user_ids[users.cpu().numpy()]
                for part, tally in rankings.items():
                    scores = self(merge_parts(matrices, knows[part]), users)
                    ranked = evaluate_block(tally, scores, [matrices[known] for known in knows[part]], matrices[part])
                    tables.append(
                        list_table(run_id, f"{part}_top_n", block_ids, ranked, self.coords.movie_ids, self.scale, True)
                    )
        return tables, {part: tally.metrics() for part, tally in rankings.items()}


def _rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return math.sqrt(float(np.mean((predicted - actual) ** 2)))
