import json

import duckdb
import pytest
from typer.testing import CliRunner

from trainer.cli import app

# `trainer bench` end to end (slow): it builds each data set's warehouse with `python -m etl build` in a child
# process, then trains, refits and blends every model it is given.


def small_bench(tmp_path, make_movielens_1m, *options: str):
    """`trainer bench` on one seed of a small generated ml-1m: its outcome, results warehouse and work folder."""
    make_movielens_1m(tmp_path / "data" / "ml-1m")
    results, work = tmp_path / "results.duckdb", tmp_path / "work"
    outcome = CliRunner().invoke(
        app,
        [
            "bench",
            "--data-dir",
            str(tmp_path / "data"),
            "--datasets",
            "ml-1m",
            "--seeds",
            "1",
            "--work-dir",
            str(work),
            "--warehouse",
            str(results),
            *options,
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    return outcome, results, work


@pytest.mark.slow
def test_bench_runs_each_model_on_each_seed_and_writes_table_and_markdown(tmp_path, make_movielens_1m) -> None:
    make_movielens_1m(tmp_path / "data" / "ml-1m")
    results, markdown = tmp_path / "results.duckdb", tmp_path / "docs" / "bench.md"
    outcome = CliRunner().invoke(
        app,
        [
            "bench",
            "--data-dir",
            str(tmp_path / "data"),
            "--datasets",
            "ml-1m",
            "--models",
            "global-mean,biases",
            "--seeds",
            "2",
            "--epochs",
            "3",
            "--work-dir",
            str(tmp_path / "work"),
            "--warehouse",
            str(results),
            "--markdown",
            str(markdown),
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    assert "the bench took " in outcome.output and " minutes in all" in outcome.output
    con = duckdb.connect(str(results), read_only=True)
    rows = con.execute("SELECT model, seed, test_rmse, best_epoch FROM bench_results ORDER BY model, seed").fetchall()
    assert [(m, s) for m, s, _, _ in rows] == [("biases", 1), ("biases", 2), ("global-mean", 1), ("global-mean", 2)]
    assert all(0.3 < rmse < 2.0 and 1 <= best <= 3 for _, _, rmse, best in rows)
    # two seeds are two different random splits: different test sets, different scores
    assert rows[0][2] != rows[1][2]
    summary = dict(con.execute("SELECT model, n_seeds FROM bench_summary").fetchall())
    assert summary == {"biases": 2, "global-mean": 2}
    table = markdown.read_text().splitlines()
    assert table[0].startswith("| model | data set | protocol | RMSE | MAE |") and len(table) == 4
    assert "random 90/10, 2 seeds" in table[2] and "±" in table[2]
    assert table[2].endswith("`trainer bench --datasets ml-1m --models " + table[2].split(" | ")[0][2:] + "` |")


def test_bench_refuses_an_unknown_data_set(tmp_path) -> None:
    outcome = CliRunner().invoke(app, ["bench", "--data-dir", str(tmp_path), "--datasets", "ml-20m"])
    assert outcome.exit_code == 1 and "no benchmark protocol for data set 'ml-20m'" in outcome.output


@pytest.mark.slow
def test_bench_blends_the_models_of_each_seed(tmp_path, make_movielens_1m) -> None:
    markdown = tmp_path / "bench.md"
    _, results, _ = small_bench(
        tmp_path, make_movielens_1m, "--models", "biases,mf", "--epochs", "5", "--markdown", str(markdown), "--blend"
    )
    with duckdb.connect(str(results), read_only=True) as con:
        rows = dict(con.execute("SELECT model, train_seconds FROM bench_results").fetchall())
    assert set(rows) == {"biases", "mf", "blend"} and rows["blend"] == rows["biases"] + rows["mf"]
    (blend_row,) = [line for line in markdown.read_text().splitlines() if line.startswith("| blend |")]
    assert blend_row.endswith("`trainer bench --datasets ml-1m --models biases,mf --blend` |")


@pytest.mark.slow
def test_bench_trains_a_fine_tuned_models_parent_first(tmp_path, make_movielens_1m) -> None:
    _, results, work = small_bench(
        tmp_path,
        make_movielens_1m,
        *["--models", "glocal-k,biases", "--epochs", "2", "--blend"],
        "--markdown",
        str(tmp_path / "bench.md"),
    )
    with duckdb.connect(str(results), read_only=True) as con:
        rows = {
            m: (run, s)
            for m, run, s in con.execute("SELECT model, run_id, train_seconds FROM bench_results").fetchall()
        }
        (members,) = con.execute("SELECT config FROM bench_results WHERE model = 'blend'").fetchone()
    assert set(rows) == {"kernel-ae", "glocal-k", "biases", "blend"}  # the parent has a row of its own
    assert rows["glocal-k"][1] > rows["kernel-ae"][1]  # its train time counts its parent's
    assert rows["blend"][1] == pytest.approx(rows["glocal-k"][1] + rows["biases"][1])  # each run counted once
    assert '"members": ["glocal-k", "biases"]' in members
    with duckdb.connect(str(work / "ml-1m-seed1.duckdb"), read_only=True) as con:
        parent = con.execute("SELECT parent_run_id FROM runs WHERE run_id = ?", [rows["glocal-k"][0]]).fetchone()
    assert parent == (rows["kernel-ae"][0],)


@pytest.mark.slow
def test_bench_refits_each_model_and_blends_the_refits(tmp_path, make_movielens_1m) -> None:
    markdown = tmp_path / "bench.md"
    _, results, work = small_bench(
        tmp_path,
        make_movielens_1m,
        *["--models", "biases,mf", "--epochs", "5", "--blend", "--refit"],
        "--markdown",
        str(markdown),
    )
    with duckdb.connect(str(results), read_only=True) as con:
        rows = {
            m: (run, s)
            for m, run, s in con.execute("SELECT model, run_id, train_seconds FROM bench_results").fetchall()
        }
    assert set(rows) == {"biases", "mf", "biases refit", "mf refit", "blend refit"}
    assert rows["mf refit"][1] > rows["mf"][1]  # the refit's time counts the run that chose its epochs
    assert rows["blend refit"][1] == pytest.approx(rows["biases refit"][1] + rows["mf refit"][1])
    with duckdb.connect(str(work / "ml-1m-seed1.duckdb"), read_only=True) as con:
        refitted = con.execute("SELECT parent_run_id FROM runs WHERE run_id = ?", [rows["mf refit"][0]]).fetchone()
        (members,) = con.execute("SELECT members FROM runs WHERE run_id = ?", [rows["blend refit"][0]]).fetchone()
    assert refitted == (rows["mf"][0],)
    assert json.loads(members)["runs"] == [rows["biases refit"][0], rows["mf refit"][0]]
    table = markdown.read_text()
    assert "`trainer bench --datasets ml-1m --models mf --refit` |" in table
    assert "`trainer bench --datasets ml-1m --models biases,mf --blend --refit` |" in table


@pytest.mark.slow
def test_bench_keeps_a_fine_tuned_run_that_kept_its_parents_weights_out_of_the_refits(
    tmp_path, make_movielens_1m
) -> None:
    # On this small data no epoch of glocal-k's fine-tuning validates better than its parent, so it selects epoch
    # 0: its refit would be its parent's refit itself, and the refit blend takes its own run.
    _, results, work = small_bench(
        tmp_path,
        make_movielens_1m,
        *["--models", "glocal-k,biases", "--epochs", "2", "--blend", "--refit"],
        "--markdown",
        str(tmp_path / "bench.md"),
    )
    with duckdb.connect(str(results), read_only=True) as con:
        rows = {
            m: (run, e) for m, run, e in con.execute("SELECT model, run_id, best_epoch FROM bench_results").fetchall()
        }
    assert rows["glocal-k"][1] == 0
    assert set(rows) == {"kernel-ae", "kernel-ae refit", "glocal-k", "biases", "biases refit", "blend refit"}
    with duckdb.connect(str(work / "ml-1m-seed1.duckdb"), read_only=True) as con:
        (members,) = con.execute("SELECT members FROM runs WHERE run_id = ?", [rows["blend refit"][0]]).fetchone()
    assert json.loads(members)["runs"] == [rows["glocal-k"][0], rows["biases refit"][0]]
