"""A finished training run's model, loaded for use after training: by `trainer score` and `trainer blend`.

The model is loaded with the weights the run selected and read only through the run's own coordinates
(trainer/coordinates.py). Its inputs are the users' ratings in the warehouse now, as CSR rows in the
model's columns, so new ratings change its predictions and movies it never saw are left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from trainer import checkpoint
from trainer.config import TrainConfig, from_dict
from trainer.coordinates import Coordinates
from trainer.data import dataset_info, eval_rows
from trainer.errors import TrainerError
from trainer.models.base import Model, build_model
from trainer.sparse import Csr


@dataclass
class TrainedRun:
    run: dict[str, Any]  # its row of runs
    config: TrainConfig
    coords: Coordinates
    model: Model
    mean: float  # its training ratings' mean

    @property
    def run_id(self) -> str:
        return self.run["run_id"]


def load(con: duckdb.DuckDBPyConnection, run_id: str, device: torch.device) -> TrainedRun:
    """Run ``run_id``'s model with the weights it selected, on ``device``, ready to predict."""
    row, state, config, weights = saved(con, run_id, device)
    coords = Coordinates.from_state(state)
    if coords is None:
        raise TrainerError(
            f"run {run_id} was trained before runs kept their own user and movie coordinates, so "
            "its model cannot be read safely against a rebuilt warehouse; train a new run"
        )
    model = build_model(config, coords.n_users, coords.n_movies, state["mean"])
    model.load_state_dict(weights)
    model.to(device)
    model.eval()
    return TrainedRun(row, config, coords, model, state["mean"])


def served_ratings(
    con: duckdb.DuckDBPyConnection, predictions: pa.Table, device: torch.device, log: Callable[[str], None]
) -> tuple[pa.Table, str | None]:
    """For a model that only ranks: its top-N rows (``predictions``' rows of kind top_n) with the ratings predicted by
    the run serving predictions now (served_runs), and that run's id; unchanged, and None, when none serves them
    or its model cannot be loaded (said in ``log``): the lists do not depend on them."""
    try:
        found = con.execute("SELECT run_id FROM served_runs WHERE role = 'predictions'").fetchall()
    except duckdb.CatalogException:  # a warehouse with no run published yet, or the Parquet features alone
        return predictions, None
    listed = pc.equal(predictions["kind"], "top_n").to_numpy(zero_copy_only=False)
    if not found or not listed.any():
        return predictions, None
    rating_run = found[0][0]
    try:
        ratings = rate_pairs(
            con,
            rating_run,
            predictions["user_id"].to_numpy()[listed],
            predictions["movie_id"].to_numpy()[listed],
            device,
        )
    except TrainerError as error:
        log(f"the lists show no predicted ratings: run {rating_run}, which serves predictions, cannot be read: {error}")
        return predictions, None
    column = np.full(len(predictions), np.nan, dtype=np.float32)
    column[listed] = ratings
    at = predictions.schema.get_field_index("predicted_rating")
    rated = pa.array(column, pa.float32(), mask=np.isnan(column))
    return predictions.set_column(at, predictions.schema.field(at), rated), rating_run


def rate_pairs(
    con: duckdb.DuckDBPyConnection, run_id: str, user_ids: np.ndarray, movie_ids: np.ndarray, device: torch.device
) -> np.ndarray:
    """Run ``run_id``'s predicted ratings of the (user, movie) pairs, from each user's ratings in the warehouse now,
    clipped to the scale as its predictions are: NaN where its model cannot rate a pair (a movie it never saw, or a
    user it never trained on, for a model that does not fold in)."""
    loaded = load(con, run_id, device)
    model, coords = loaded.model, loaded.coords
    if not model.predicts_ratings:
        raise TrainerError(f"run {run_id}'s model ({loaded.config.model}) predicts no ratings")
    users = np.unique(user_ids)
    if not model.folds_in:
        users = users[coords.users(users) >= 0]
    register(con, coords, users)
    cols = coords.movies(movie_ids)
    info = dataset_info(con)
    scorer = model.user_scorer(lambda: movie_rows(con, coords, device))
    rated = np.full(len(user_ids), np.nan, dtype=np.float32)
    with torch.no_grad():
        for block_users, rows in user_rows(con, coords):
            scores = scorer(rows.to(device), torch.from_numpy(coords.users(block_users)).to(device))
            if loaded.config.clip:
                scores = scores.clamp(info.rating_min, info.rating_max)
            at = np.minimum(np.searchsorted(block_users, user_ids), len(block_users) - 1)
            mine = (block_users[at] == user_ids) & (cols >= 0)
            picked = scores[torch.from_numpy(at[mine]).to(device), torch.from_numpy(cols[mine]).to(device)]
            rated[mine] = picked.float().cpu().numpy()
    return rated


def start_from(
    model: Model, con: duckdb.DuckDBPyConnection, run_id: str, coords: Coordinates, device: torch.device
) -> None:
    """Load into ``model`` the weights run ``run_id`` selected, for every weight the two share (--init-from).

    Refused unless that run was trained on the same users and movies at the same indexes, and unless every
    weight it has is one of this model's, of the same shape."""
    try:
        row, state, _, weights = saved(con, run_id, device)
    except duckdb.CatalogException:  # no run published yet, or the Parquet features (which hold none)
        raise TrainerError(f"--init-from: no run {run_id!r}: the warehouse holds no runs yet") from None
    parents = Coordinates.from_state(state)
    changes = parents.changes(coords) if parents else ["other files"]
    if changes:
        raise TrainerError(
            f"--init-from {run_id}: that run was trained on other users or movies than this "
            f"warehouse holds ({'; '.join(changes)}); train it again on this data first"
        )
    own = model.state_dict()
    unexpected = [name for name in weights if name not in own]
    if unexpected or not weights:
        raise TrainerError(
            f"--init-from {run_id}: its model ({row['model']}) has weights this model lacks: "
            f"{', '.join(unexpected) or 'it has none'}"
        )
    try:
        model.load_state_dict(weights, strict=False)
    except RuntimeError as error:  # a weight of another shape (other hidden widths, say)
        raise TrainerError(f"--init-from {run_id}: its weights do not fit this model: {error}") from error


def rated_users(con: duckdb.DuckDBPyConnection, since: datetime | None = None) -> np.ndarray:
    """The ids of the users with a rating in the warehouse (at or after ``since``), ascending."""
    where, params = ("WHERE rated_at >= ?", [since]) if since is not None else ("", [])
    query = f"SELECT DISTINCT user_id FROM ratings {where} ORDER BY user_id"
    return con.execute(query, params).fetchnumpy()["user_id"].astype(np.int64)


def register(con: duckdb.DuckDBPyConnection, coords: Coordinates, users: np.ndarray) -> None:
    """Name, on ``con``, the users to score (scored_users) and the run's coordinates (run_movies, run_users),
    for user_rows and movie_rows."""
    con.register("scored_users", pa.table({"user_id": pa.array(users, pa.int32())}))
    con.register("run_movies", _id_table("movie_id", "col", coords.movie_ids))
    con.register("run_users", _id_table("user_id", "row", coords.user_ids))


def _training_run(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    """The training run's row of `runs`; a scoring run, a blend or an unknown id is refused with the reason."""
    cursor = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
    found = cursor.fetchall()
    if not found:
        raise TrainerError(f"no run {run_id!r} in the warehouse (SELECT run_id, kind FROM run_metrics lists them)")
    row = dict(zip([column[0] for column in cursor.description], found[0]))
    if row.get("kind") == "score":
        raise TrainerError(f"run {run_id} is a scoring run; use its training run, {row['parent_run_id']}")
    if row.get("kind") == "blend":
        raise TrainerError(
            f"run {run_id} is a blend of several models, not one model; use its members "
            f"({', '.join(json.loads(row['members'])['runs'])})"
        )
    if not Path(row["run_dir"]).is_dir():
        raise TrainerError(f"{row['run_dir']}: run {run_id}'s folder, which holds its weights, is gone")
    return row


def saved(
    con: duckdb.DuckDBPyConnection, run_id: str, device: torch.device
) -> tuple[dict[str, Any], dict[str, Any], TrainConfig, dict[str, torch.Tensor]]:
    """Training run ``run_id``'s row of `runs`, its checkpoint, its configuration, and the weights it scored
    with: the best epoch's on validation, or the last epoch's."""
    row = _training_run(con, run_id)
    run_dir = Path(row["run_dir"])
    found = checkpoint.digest(run_dir)
    state = checkpoint.load(run_dir, device)
    _check_own(row, run_dir / checkpoint.FILE_NAME, state, found)
    config = from_dict(state["config"])
    best = state.get("best", {}).get("weights")
    return row, state, config, best if config.select_best and best is not None else state["model"]


def _check_own(row: dict[str, Any], path: Path, state: dict[str, Any], found: str) -> None:
    """Refuse a checkpoint that is not the run's own: another run's copied into its folder, or one changed since the
    run recorded its SHA-256 (runs published before it was recorded have none: only their run id is checked)."""
    run_id, owner, recorded = row["run_id"], state.get("run_id"), row.get("checkpoint_sha256")
    if owner != run_id:
        raise TrainerError(
            f"{path} is run {owner}'s checkpoint, not run {run_id}'s: it was copied or moved "
            f"into run {run_id}'s folder. Put run {run_id}'s own checkpoint back, or use run "
            f"{owner}"
        )
    if recorded is not None and found != recorded:
        raise TrainerError(
            f"{path} is not the checkpoint run {run_id} finished with: its SHA-256 is {found[:16]}..., "
            f"the run recorded {recorded[:16]}... It was changed or replaced since; put the run's own "
            "checkpoint back, or train the run again"
        )


def _id_table(id_column: str, idx_column: str, ids: np.ndarray) -> pa.Table:
    return pa.table({id_column: pa.array(ids, pa.int32()), idx_column: pa.array(np.arange(len(ids)), pa.int64())})


def user_rows(con: duckdb.DuckDBPyConnection, coords: Coordinates) -> Iterator[tuple[np.ndarray, Csr]]:
    """Blocks of the scored users: their ids, and their current ratings of the movies the model knows, as CSR
    rows in the model's columns (a user whose every movie is new to the model has an empty row)."""
    reader = con.sql(
        """
        SELECT s.user_id,
               coalesce(list(m.col ORDER BY m.col) FILTER (WHERE m.col IS NOT NULL), []) AS cols,
               coalesce(list(r.rating ORDER BY m.col) FILTER (WHERE m.col IS NOT NULL), []) AS vals
        FROM scored_users AS s
        LEFT JOIN ratings AS r USING (user_id)
        LEFT JOIN run_movies AS m USING (movie_id)
        GROUP BY s.user_id
        ORDER BY s.user_id"""
    ).to_arrow_reader(eval_rows(coords.n_movies))
    for batch in reader:
        yield (
            batch.column(0).to_numpy().astype(np.int64),
            Csr.from_arrow(batch.column(1), batch.column(2), coords.n_movies),
        )


def movie_rows(
    con: duckdb.DuckDBPyConnection, coords: Coordinates, device: torch.device
) -> Iterator[tuple[torch.Tensor, Csr]]:
    """For a model of movie rows: each movie's current ratings by the users the model knows, in its columns."""
    rows = con.sql(
        """
        SELECT m.col, list(u.row ORDER BY u.row) AS cols, list(r.rating ORDER BY u.row) AS vals
        FROM ratings AS r
        JOIN run_movies AS m USING (movie_id)
        JOIN run_users AS u USING (user_id)
        GROUP BY m.col
        ORDER BY m.col"""
    ).to_arrow_reader(eval_rows(coords.n_users))
    for batch in rows:
        movies = torch.from_numpy(batch.column(0).to_numpy().astype(np.int64))
        yield movies.to(device), Csr.from_arrow(batch.column(1), batch.column(2), coords.n_users).to(device)
