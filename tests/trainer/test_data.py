"""The CSR plumbing and the DuckDB stream: checked against dense matrices built by hand."""

from __future__ import annotations

import threading

import duckdb
import pyarrow as pa
import pytest
import torch

from trainer.data import load_rows, stream_rows
from trainer.sparse import Csr


def csr(rows: list[dict[int, float]], n_cols: int = 5) -> Csr:
    indexes = pa.array([list(r) for r in rows], pa.list_(pa.int32()))
    ratings = pa.array([list(r.values()) for r in rows], pa.list_(pa.float32()))
    return Csr.from_arrow(indexes, ratings, n_cols)


def dense(rows: list[dict[int, float]], n_cols: int = 5) -> torch.Tensor:
    out = torch.zeros(len(rows), n_cols)
    for i, row in enumerate(rows):
        for j, v in row.items():
            out[i, j] = v
    return out


ROWS = [{0: 5.0, 3: 1.0}, {}, {1: 2.5, 2: 4.0, 4: 3.0}, {4: 0.5}]


def test_from_arrow_to_dense_matches_the_rows() -> None:
    assert torch.equal(csr(ROWS).to_dense(), dense(ROWS))


def test_from_arrow_of_a_sliced_batch_starts_its_offsets_at_zero() -> None:
    indexes = pa.array([list(r) for r in ROWS], pa.list_(pa.int32())).slice(2)
    ratings = pa.array([list(r.values()) for r in ROWS], pa.list_(pa.float32())).slice(2)
    assert torch.equal(Csr.from_arrow(indexes, ratings, 5).to_dense(), dense(ROWS[2:]))


def test_select_gathers_rows_in_the_given_order() -> None:
    picked = csr(ROWS).select(torch.tensor([3, 0, 1, 2]))
    assert torch.equal(picked.to_dense(), dense([ROWS[3], ROWS[0], ROWS[1], ROWS[2]]))


def test_concat_stacks_blocks() -> None:
    stacked = Csr.concat([csr(ROWS[:2]), csr(ROWS[2:])])
    assert torch.equal(stacked.to_dense(), dense(ROWS))


def test_merge_is_the_row_wise_union() -> None:
    extra = [{1: 3.0}, {2: 2.0}, {}, {0: 1.0}]
    merged = Csr.merge(csr(ROWS), csr(extra))
    assert torch.equal(merged.to_dense(), dense(ROWS) + dense(extra))


def test_without_drops_one_entry_named_by_user_index_and_movie() -> None:
    rows = [{}, {3: 4.0, 1: 2.0}, {0: 5.0}]
    users = torch.tensor([7, 8, 9])  # the block's rows are users 7, 8, 9
    assert torch.equal(csr(rows).without(users, 8, 1).to_dense(), dense([{}, {3: 4.0}, {0: 5.0}]))
    assert torch.equal(csr(rows).without(users, 7, 1).to_dense(), dense(rows))  # not held: unchanged


def test_stream_rows_yields_every_user_once_in_bounded_batches(small_warehouse) -> None:
    con = duckdb.connect(str(small_warehouse), read_only=True)
    n_users, n_movies = con.execute("SELECT n_users, n_movies FROM dataset").fetchall()[0]
    seen = []
    for users, matrices in stream_rows(con, "random", ("train", "test"), n_movies, batch_rows=7):
        assert users.numel() <= 7
        assert matrices["train"].n_rows == users.numel() == matrices["test"].n_rows
        seen += users.tolist()
    assert sorted(seen) == list(range(n_users))
    assert seen == sorted(seen)  # unshuffled: user_idx order


def test_stream_rows_shuffles_by_seed(small_warehouse) -> None:
    con = duckdb.connect(str(small_warehouse), read_only=True)
    n_movies = con.execute("SELECT n_movies FROM dataset").fetchall()[0][0]

    def order(seed: int) -> list[int]:
        return [
            u
            for users, _ in stream_rows(con, "random", ("train",), n_movies, 16, shuffle_seed=seed)
            for u in users.tolist()
        ]

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert sorted(order(1)) == sorted(order(2))


def test_loaded_matrix_matches_split_ratings(small_warehouse) -> None:
    con = duckdb.connect(str(small_warehouse), read_only=True)
    n_users, n_movies = con.execute("SELECT n_users, n_movies FROM dataset").fetchall()[0]
    users, matrices = load_rows(con, "random", ("train", "test"), n_movies)
    assert users.tolist() == list(range(n_users))
    for part in ("train", "test"):
        expected = torch.zeros(n_users, n_movies)
        for u, m, r in con.execute(
            "SELECT user_idx, movie_idx, rating FROM split_ratings WHERE split = 'random' AND part = ?", [part]
        ).fetchall():
            expected[u, m] = r
        assert torch.equal(matrices[part].to_dense(), expected)


def test_unknown_part_is_refused(small_warehouse) -> None:
    con = duckdb.connect(str(small_warehouse), read_only=True)
    with pytest.raises(ValueError):
        next(stream_rows(con, "random", ("train; DROP TABLE ratings",), 10, 4))


def test_slice_is_a_contiguous_block_of_rows() -> None:
    assert torch.equal(csr(ROWS).slice(1, 3).to_dense(), dense(ROWS[1:3]))
    assert torch.equal(csr(ROWS).slice(0, 4).to_dense(), dense(ROWS))


def rows_held(con: duckdb.DuckDBPyConnection, config, info, fit_parts: tuple[str, ...], rows: str = "user"):
    """The training matrix on the CPU, held as the run would hold it (cached or streamed, by the budget)."""
    from trainer.data import training_data_class

    return training_data_class(con, config, fit_parts)(con, config, info, fit_parts, torch.device("cpu"), rows=rows)


def test_the_notebook_quirk_loses_one_rating_whether_cached_or_streamed(small_warehouse) -> None:
    """The first training line is dropped once per epoch, not once per streamed batch."""
    from trainer.config import resolve
    from trainer.data import CachedRows, dataset_info
    from trainer.notebook import first_rating

    con = duckdb.connect(str(small_warehouse), read_only=True)
    info = dataset_info(con)
    n_fit = con.execute("SELECT n_train + n_validation FROM splits WHERE split = 'random'").fetchall()[0][0]
    user, _ = first_rating(con, "random", ("train", "validation"))
    assert user == 0  # user 0 rated something: the first line is theirs
    for budget in (2048, 1e-9):
        config = resolve({"model": "notebook", "cache_budget_mb": budget, "batch_size": 7})
        data = rows_held(con, config, info, ("train", "validation"))
        assert isinstance(data, CachedRows) == (budget == 2048)
        assert sum(batch.targets.numel() for batch in data.batches(1)) == n_fit - 1


@pytest.mark.parametrize("fixed", [True, False], ids=["dealt-once", "dealt-every-epoch"])
def test_every_epoch_takes_each_training_rating_once(small_warehouse, fixed) -> None:
    """Cached rows dealt into batches once keep their batches from epoch to epoch (in another order); dealt
    every epoch, the batches change. Either way an epoch holds every training rating exactly once."""
    from trainer.config import resolve
    from trainer.data import dataset_info

    con = duckdb.connect(str(small_warehouse), read_only=True)
    config = resolve({"batch_size": 3, "fixed_batches": fixed})
    data = rows_held(con, config, dataset_info(con), ("train",))
    expected = sorted(
        con.execute(
            "SELECT user_idx, movie_idx, rating FROM split_ratings WHERE split = 'random' AND part = 'train'"
        ).fetchall()
    )

    def epoch(n: int) -> tuple[list[tuple], list[frozenset]]:
        ratings, batches = [], []
        for batch in data.batches(n):
            users = batch.index[batch.rows.row_ids()].tolist()
            ratings += zip(users, batch.rows.cols.tolist(), batch.rows.vals.tolist())
            batches.append(frozenset(batch.index.tolist()))
        return sorted(ratings), batches

    (first, first_batches), (second, second_batches) = epoch(1), epoch(2)
    assert first == second == expected
    assert (set(first_batches) == set(second_batches)) == fixed
    assert first_batches != second_batches  # a new order, or new batches


@pytest.mark.parametrize("rows", ["user", "movie"])
def test_cached_and_streamed_rows_hold_the_same_ratings(small_warehouse, rows) -> None:
    """The two ways of holding the training matrix differ in their batches' order, not in what an epoch trains on
    nor in what validation scores."""
    from trainer.config import resolve
    from trainer.data import CachedRows, StreamedRows, dataset_info

    con = duckdb.connect(str(small_warehouse), read_only=True)
    info = dataset_info(con)

    def held(budget: float) -> tuple[list[tuple], list[tuple]]:
        config = resolve({"batch_size": 5, "cache_budget_mb": budget})
        data = rows_held(con, config, info, ("train",), rows=rows)
        assert isinstance(data, CachedRows if budget == 2048 else StreamedRows)

        def cells(index: torch.Tensor, block: Csr) -> list[tuple]:
            return list(zip(index[block.row_ids()].tolist(), block.cols.tolist(), block.vals.tolist()))

        trained = [cell for batch in data.batches(1) for cell in cells(batch.index, batch.rows)]
        validation = [cell for _, index, targets in data.validation_blocks(False) for cell in cells(index, targets)]
        return sorted(trained), sorted(validation)

    cached, streamed = held(2048), held(1e-9)
    assert cached == streamed
    assert cached[0] and cached[1]  # both hold ratings


def test_a_consumer_that_stops_early_leaves_no_thread_and_no_cursor(warehouse) -> None:
    con = duckdb.connect(str(warehouse), read_only=True)
    before = threading.active_count()
    rows = stream_rows(con, "random", ("train",), 40, batch_rows=4)  # 60 users: 15 batches, read ahead
    next(rows)
    rows.close()  # as a diverged run's loop does when it raises
    assert threading.active_count() == before
    # the connection is free and the data still reads
    assert con.execute("SELECT count(*) FROM user_matrix").fetchall()[0][0] > 0

    def loop_that_fails() -> None:  # the training loop's shape: the stream ends with the frame that raised
        for _ in stream_rows(con, "random", ("train",), 40, batch_rows=4):
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        loop_that_fails()
    assert threading.active_count() == before


def test_rating_sessions_cut_at_pauses_longer_than_the_gap_in_the_parts_read(timed_ratings) -> None:
    from trainer.data import rating_sessions

    con = timed_ratings(
        [
            (1, 2, 4.0, 1_000, "train"),  # user 1's rows come after user 0's, whatever the times
            (0, 3, 5.0, 0, "train"),
            (0, 1, 3.0, 100, "train"),
            (0, 4, 2.0, 350, "test"),  # would join the two sessions around it, were test times read
            (0, 0, 1.0, 600, "train"),
            (0, 2, 4.0, 850, "validation"),
            (1, 0, 2.0, 1_200, "train"),
        ]
    )
    sessions = rating_sessions(con, "random", ("train",), 300, 5)
    assert sessions.counts.tolist() == [2, 1, 2]
    assert sessions.cols.tolist() == [3, 1, 0, 2, 0] and sessions.vals.tolist() == [5.0, 3.0, 1.0, 4.0, 2.0]
    with_validation = rating_sessions(con, "random", ("train", "validation"), 300, 5)
    assert with_validation.counts.tolist() == [2, 2, 2]  # validation at 850: within 300 s of the rating at 600
