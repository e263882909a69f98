"""What analysts run: the example queries in sql/examples, and the warehouse through SQLAlchemy and Polars."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import sqlalchemy

from trainer.config import MachineSettings, resolve
from trainer.score import ScoreOptions, score
from trainer.train import run
from warehouse import results
from warehouse.sql import SQL_DIR

EXAMPLES = sorted((SQL_DIR / "examples").glob("*.sql"))


@pytest.fixture(scope="module")
def trained(small_warehouse, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("analysts")
    path = root / "warehouse.duckdb"
    path.write_bytes(small_warehouse.read_bytes())
    # Five epochs on 60 users do not beat the training mean: the audit fails, and the run is served anyway.
    trained = run(
        resolve({"warehouse": str(path), "runs_dir": str(root / "runs"), "epochs": 5, "publish_anyway": True})
    )
    # Served by hand: on 60 users its lists need not beat the most popular movies'.
    results.promote(trained.run_id, path, ("recommendations", "predictions"))
    # A scoring with shorter lists: the recommendations change (changed_recommendations.sql finds them).
    score(
        ScoreOptions(
            trained.run_id,
            path,
            top_n=5,
            machine=MachineSettings(runs_dir=str(root / "runs"), device="cpu", publish_anyway=True),
        )
    )
    return path


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {
        "user_top10.sql",
        "overrated_movies.sql",
        "error_by_genre.sql",
        "error_by_user_activity.sql",
    }


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_query_answers(trained, example) -> None:
    con = duckdb.connect(str(trained), read_only=True)
    con.execute("SET VARIABLE user_id = 1")
    con.execute("SET VARIABLE min_ratings = 1")  # the small warehouse has few held-out ratings a movie
    con.execute("SET VARIABLE run_id = (SELECT run_id FROM latest_run)")
    relation = con.sql(example.read_text())
    rows = relation.fetchall()
    con.close()
    assert rows, f"{example.name} returned nothing"
    assert all(value is not None for value in rows[0][:2])


def test_user_top10_is_ranked(trained) -> None:
    con = duckdb.connect(str(trained), read_only=True)
    con.execute("SET VARIABLE user_id = 2")
    ranks = [row[0] for row in con.sql((SQL_DIR / "examples" / "user_top10.sql").read_text()).fetchall()]
    assert ranks == list(range(1, len(ranks) + 1)) and 0 < len(ranks) <= 10


def test_sqlalchemy_reads_and_inspects_the_warehouse(trained) -> None:
    """Names, columns and queries work; Table(autoload_with=...) does not on DuckDB 2 (see README)."""
    engine = sqlalchemy.create_engine(f"duckdb:///{trained}", connect_args={"read_only": True})
    with engine.connect() as connection:
        inspector = sqlalchemy.inspect(connection)
        assert {"ratings", "movies", "runs", "predictions"} <= set(inspector.get_table_names())
        assert {"recommendations", "latest_predictions", "run_metrics"} <= set(inspector.get_view_names())
        columns = [c["name"] for c in inspector.get_columns("predictions")]
        assert "predicted_rating" in columns
        predictions = sqlalchemy.table("predictions", *(sqlalchemy.column(name) for name in columns))
        query = sqlalchemy.select(sqlalchemy.func.count()).select_from(predictions).where(predictions.c.kind == "test")
        assert connection.execute(query).scalar() > 0
        top = connection.execute(
            sqlalchemy.text("SELECT title, predicted_rating FROM recommendations WHERE user_id = :u ORDER BY rank"),
            {"u": 1},
        ).fetchall()
    engine.dispose()
    assert top and all(1.0 <= rating <= 5.0 for _, rating in top)


def test_polars_reads_the_views(trained) -> None:
    pl = pytest.importorskip("polars")  # absent where bench/gpu_check.sh runs on a bundle (bench/gpu_bundle.sh)
    con = duckdb.connect(str(trained), read_only=True)
    frame = con.sql("SELECT * FROM run_metrics").pl()
    assert isinstance(frame, pl.DataFrame) and frame.height == 2 and "test_rmse" in frame.columns  # run, scoring
