"""etl.generate: synthetic MovieLens folders pass the ETL's strict validation, have the real data's shape,
and the same seed writes the same bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl import generate as gen
from etl.build import build_warehouse
from etl.cli import app
from etl.errors import EtlError
from etl.generate import GenerateOptions, generate

RATINGS = 30_000


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks of 64 users, so that these small folders still span several blocks (and block seeds)."""
    monkeypatch.setattr(gen, "USERS_PER_BLOCK", 64)


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    ("layout", "expected_layout", "files", "stars"),
    [
        ("csv", "ml-latest", {"ratings.csv", "movies.csv"}, [0.5 * k for k in range(1, 11)]),
        ("dat", "ml-1m", {"ratings.dat", "movies.dat", "users.dat"}, [1.0, 2.0, 3.0, 4.0, 5.0]),
    ],
)
def test_generated_folder_passes_strict_etl(tmp_path, query, layout, expected_layout, files, stars):
    folder = tmp_path / layout
    report = generate(GenerateOptions(RATINGS, movies=3_000, layout=layout, seed=7), folder)
    assert {p.name for p in folder.iterdir()} == files  # nothing partial left behind
    warehouse = tmp_path / "warehouse.duckdb"
    etl = build_warehouse(folder, warehouse)  # max_bad_rows=0: the first bad or duplicate row would fail it
    assert etl.layout == expected_layout
    assert etl.rejected == 0
    assert etl.row_counts["ratings"] == RATINGS
    assert etl.row_counts["users"] == report.n_users == RATINGS // 160
    assert etl.row_counts["movies"] == report.n_movies

    per_user = query(warehouse, "SELECT min(n), max(n) FROM (SELECT count(*) AS n FROM ratings GROUP BY user_id)")[0]
    assert per_user[0] >= 20 and per_user[1] <= report.n_movies // 3
    assert per_user[1] > 4 * 160  # a long tail of busy users, not everyone at the mean
    # Long-tailed popularity: the busiest tenth of the movies holds far more than a tenth of the ratings.
    top_share = query(
        warehouse,
        """
        SELECT sum(n) FILTER (WHERE rank <= (SELECT count(*) FROM movies) / 10) / sum(n)
        FROM (SELECT count(*) AS n, row_number() OVER (ORDER BY count(*) DESC) AS rank FROM ratings GROUP BY movie_id)
    """,
    )[0][0]
    assert top_share > 0.3
    shares = dict(query(warehouse, "SELECT rating, count(*) / sum(count(*)) OVER () FROM ratings GROUP BY rating"))
    assert sorted(shares) == stars
    real = gen.HALF_STAR_SHARES if layout == "csv" else gen.WHOLE_STAR_SHARES
    for star, share in real.items():
        assert shares[star] == pytest.approx(share, abs=0.01)
    assert query(warehouse, "SELECT count(*) FROM movies WHERE year IS NULL OR len(genres) > 3") == [(0,)]
    assert query(warehouse, "SELECT count(*) FROM movies WHERE title LIKE '%é%'")[0][0] > 0  # latin-1 read right
    assert query(warehouse, "SELECT min(rated_at) >= '1996-01-01', max(rated_at) < '2023-10-14' FROM ratings") == [
        (True, True)
    ]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    options = GenerateOptions(RATINGS, layout="dat", seed=3)
    generate(options, tmp_path / "a")
    generate(options, tmp_path / "b")
    generate(GenerateOptions(RATINGS, layout="dat", seed=4), tmp_path / "c")
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert digests(tmp_path / "a")["ratings.dat"] != digests(tmp_path / "c")["ratings.dat"]


def test_impossible_sizes_are_refused_before_writing(tmp_path):
    with pytest.raises(EtlError, match="cannot be spread over 100 users"):
        generate(GenerateOptions(1_000, users=100), tmp_path / "out")
    with pytest.raises(EtlError, match="at least 60 movies"):
        generate(GenerateOptions(1_000, users=10, movies=30), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_generate(tmp_path):
    result = CliRunner().invoke(
        app, ["generate", "--output", str(tmp_path / "g"), "--ratings", "5000", "--movies", "600", "--layout", "dat"]
    )
    assert result.exit_code == 0, result.output
    assert "5,000 ratings, 31 users, 600 movies" in result.output
    assert sum(1 for _ in (tmp_path / "g" / "ratings.dat").open()) == 5000

    result = CliRunner().invoke(
        app, ["generate", "--output", str(tmp_path / "h"), "--ratings", "10", "--layout", "xml"]
    )
    assert result.exit_code == 2  # a usage error, naming the choices
    assert "'xml' is not one of 'csv', 'dat'" in result.output
