"""Ranking metrics (trainer/ranking.py) on hand-made lists, and sql/examples/ranking_quality.sql against them."""

from __future__ import annotations

import math

import duckdb
import pytest
import torch

from trainer.config import resolve
from trainer.ranking import RankingTally, popularity_percentiles, rank_block
from trainer.sparse import Csr
from trainer.train import run
from warehouse.sql import SQL_DIR


def csr(rows: list[dict[int, float]], n_cols: int) -> Csr:
    offsets = torch.tensor([0] + [len(r) for r in rows]).cumsum(0)
    cols = torch.tensor([c for r in rows for c in r], dtype=torch.int64)
    vals = torch.tensor([v for r in rows for v in r.values()], dtype=torch.float32)
    return Csr(offsets, cols, vals, n_cols)


def test_lists_leave_out_known_movies_and_users_without_a_relevant_one() -> None:
    scores = torch.tensor([[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5], [1, 1, 1, 1, 1, 1]])
    known = csr([{0: 5.0}, {5: 1.0}, {}], 6)  # user 0 rated movie 0, user 1 movie 5
    held = csr([{2: 4.0, 3: 2.0}, {}, {1: 3.5}], 6)  # user 1 has nothing held out; user 2 nothing relevant
    ranked = rank_block(scores, [known], held, length=3)
    assert ranked.rows.tolist() == [0]
    assert ranked.movies.tolist() == [[1, 2, 3]] and ranked.hits.tolist() == [[False, True, False]]


def test_metrics_of_a_hand_made_list() -> None:
    # 12 movies; the user's relevant ones are 1 and 11; the list ranks 1 second and 11 twelfth
    scores = torch.tensor([[1.0, 11, 12, 10, 9, 8, 7, 6, 5, 4, 3, 2]])  # ranked: 2, 1, 3, 4, ..., 11, 0
    held = csr([{1: 5.0, 11: 4.0, 4: 3.0}], 12)
    tally = RankingTally(popularity=torch.arange(12, dtype=torch.float64))
    block = rank_block(scores, [], held, length=20)
    tally.add(block, torch.tensor([2]))
    found = tally.metrics()
    assert found["precision@10"] == pytest.approx(0.1)
    assert found["recall@10"] == pytest.approx(0.5) and found["recall@20"] == pytest.approx(1.0)
    ideal = 1 + 1 / math.log2(3)
    assert found["ndcg@10"] == pytest.approx((1 / math.log2(3)) / ideal)
    assert found["ndcg@20"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(12)) / ideal)
    assert found["mrr@10"] == pytest.approx(0.5)
    assert found["coverage@10"] == 10 and found["users"] == 1
    top10 = block.movies[0, :10]
    assert found["popularity@10"] == pytest.approx(float(top10.double().mean()))


def test_popularity_percentiles_are_sqls_percent_rank() -> None:
    counts = torch.tensor([5, 0, 5, 9, 1])
    con = duckdb.connect()
    expected = con.sql(
        "SELECT 100 * percent_rank() OVER (ORDER BY n) FROM unnest([5, 0, 5, 9, 1]) WITH ORDINALITY AS t(n, i) ORDER BY i"
    ).fetchall()
    assert popularity_percentiles(counts).tolist() == pytest.approx([row[0] for row in expected])


def test_ranking_quality_sql_equals_the_runs_ranking_metrics(warehouse, tmp_path) -> None:
    trained = run(resolve({"warehouse": str(warehouse), "runs_dir": str(tmp_path / "runs"), "epochs": 3}))
    con = duckdb.connect(str(warehouse), read_only=True)
    con.execute("SET VARIABLE run_id = ?", [trained.run_id])
    relation = con.sql((SQL_DIR / "examples" / "ranking_quality.sql").read_text())
    recomputed = dict(zip(relation.columns, relation.fetchall()[0]))
    stored = dict(
        con.execute(
            "SELECT metric, value FROM ranking_metrics WHERE run_id = ? AND part = 'test'", [trained.run_id]
        ).fetchall()
    )
    assert stored["users"] > 0 and set(stored) == set(recomputed)
    for metric, value in stored.items():
        assert recomputed[metric] == pytest.approx(value, abs=1e-9), metric
    assert set(stored) == set(trained.ranking["test"]) and set(trained.ranking) == {"test", "validation"}


def test_held_out_lists_never_hold_a_movie_rated_in_train_or_validation(warehouse, tmp_path) -> None:
    trained = run(resolve({"warehouse": str(warehouse), "runs_dir": str(tmp_path / "runs"), "epochs": 3}))
    con = duckdb.connect(str(warehouse), read_only=True)
    leaks = con.execute(
        """SELECT p.kind, count(*) FROM predictions AS p
           JOIN runs AS r USING (run_id)
           JOIN split_ratings AS s ON s.split = r.split AND s.user_id = p.user_id AND s.movie_id = p.movie_id
           WHERE p.run_id = ? AND (p.kind = 'test_top_n' AND s.part <> 'test'
                                   OR p.kind = 'validation_top_n' AND s.part = 'train')
           GROUP BY ALL""",
        [trained.run_id],
    ).fetchall()
    assert leaks == []
    kinds = dict(
        con.execute(
            "SELECT kind, max(rank) FROM predictions WHERE run_id = ? GROUP BY kind", [trained.run_id]
        ).fetchall()
    )
    assert 0 < kinds["test_top_n"] <= 100 and 0 < kinds["validation_top_n"] <= 100


def test_ease_refuses_a_catalogue_too_wide_for_its_dense_matrices() -> None:
    from trainer.errors import TrainerError
    from trainer.models.ease import _gram

    wide = Csr(torch.zeros(2, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), torch.zeros(0), 87_585)
    with pytest.raises(TrainerError, match="ease holds 87,585 x 87,585 matrices while fitting, about 86 GB"):
        _gram(wide, stars=True, n_movies=87_585)


def test_ease_learns_from_rating_sessions_which_movies_go_together(timed_ratings) -> None:
    """Every user rated movies 0, 1 and 2, so users' rows alone cannot tell 1 from 2 as the company of 0; each rated
    0 and 1 in one sitting and 2 a day later, so with sessions ease puts 1 first for a user who rated 0 alone."""
    from trainer.models.ease import _ease_weights, _fit_gram

    day = 86_400
    con = timed_ratings(
        [
            (user, movie, 4.0, user * 10 * day + at, "train")
            for user in range(3)
            for movie, at in ((0, 0), (1, 60), (2, day))
        ]
    )
    users = csr([{0: 4.0, 1: 4.0, 2: 4.0}] * 3, 4)
    fan_of_0 = torch.tensor([[4.0, 0, 0, 0]])

    def scores(gap: int) -> torch.Tensor:
        config = resolve({"model": "ease", "ease_session_gap": gap})
        return (fan_of_0 @ _ease_weights(_fit_gram(con, config, ("train",), users, stars=True), 1.0))[0]

    assert scores(0)[1] == pytest.approx(float(scores(0)[2]))
    assert scores(300)[1] > scores(300)[2] + 0.1
