"""Every MovieLens layout loads from small hand-made folders: detection, encodings, titles, years, genres, users."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.layouts import HALF_STARS, WHOLE_STARS, detect_encoding, detect_layout, detect_newline

LAYOUTS = ["ml-100k", "ml-1m", "ml-10m", "ml-latest"]
MISERABLES = "Misérables, Les (1995)"


def movies_by_id(query, warehouse: Path) -> dict[int, tuple]:
    return {row[0]: row[1:] for row in query(warehouse, "SELECT movie_id, title, year, genres FROM movies")}


@pytest.mark.parametrize(
    "layout, name, files, delimiter, scale",
    [
        ("ml-100k", "ml-100k", {"u.data", "u.item", "u.user", "u.genre"}, "\t", WHOLE_STARS),
        ("ml-1m", "ml-1m", {"ratings.dat", "movies.dat", "users.dat"}, "::", WHOLE_STARS),
        ("ml-10m", "ml-10m", {"ratings.dat", "movies.dat"}, "::", HALF_STARS),
        ("ml-latest", "ml-latest", {"ratings.csv", "movies.csv"}, ",", HALF_STARS),
    ],
)
def test_detect_layout(movielens, layout, name, files, delimiter, scale):
    detected = detect_layout(movielens(layout))
    assert detected.name == name
    assert {path.name for path in detected.files.values()} == files
    assert detected.has_users_file == ("u.user" in files or "users.dat" in files)
    assert detected.ratings_delimiter == delimiter
    assert detected.scale == scale


def test_detect_encoding_and_newline(tmp_path):
    latin1 = tmp_path / "latin1.dat"
    latin1.write_bytes(f"3::{MISERABLES}::Drama\n".encode("latin-1"))
    utf8 = tmp_path / "utf8.dat"
    utf8.write_bytes(f"3::{MISERABLES}::Drama\r\n".encode())
    assert (detect_encoding(latin1), detect_newline(latin1)) == ("latin-1", r"\n")
    assert (detect_encoding(utf8), detect_newline(utf8)) == ("utf-8", r"\r\n")


@pytest.fixture(scope="module", params=LAYOUTS)
def default_build(request, movielens, etl_build) -> tuple[str, Path]:
    """The default small folder of each layout, built once for the tests of this module."""
    return request.param, etl_build(movielens(request.param))


def test_layout_loads(default_build, query):
    layout, warehouse = default_build

    assert query(warehouse, "SELECT user_id, movie_id, rating, epoch(rated_at)::BIGINT FROM ratings ORDER BY ALL") == [
        (1, 1, 5.0, 978300760),
        (1, 3, 3.0, 978302109),
        (1, 4, 4.0, 978301968),
        (2, 1, 4.0, 978298413),
        (2, 2, 2.0, 978299000),
        (2, 5, 1.0, 978299620),
        (3, 1, 2.0, 978297867),
        (3, 3, 5.0, 978297039),
        (3, 4, 3.0, 978298709),
        (4, 2, 4.0, 978294008),
        (4, 3, 1.0, 978294200),
        (4, 5, 5.0, 978294282),
    ]
    assert movies_by_id(query, warehouse) == {
        1: ("Toy Story (1995)", 1995, ["Animation", "Children's", "Comedy"]),
        2: ("Jumanji (1995)", 1995, ["Adventure", "Children's", "Fantasy"]),
        3: (MISERABLES, 1995, ["Drama", "Musical"]),
        4: ('Dr. "Strangelove", or How I Learned (1964)', 1964, ["Comedy", "War"]),
        5: ("Heat (1995)", 1995, []),
    }
    scale = (1.0, 5.0, 1.0) if layout in ("ml-100k", "ml-1m") else (0.5, 5.0, 0.5)
    expected_layout = "ml-latest" if layout == "ml-latest" else layout
    assert query(
        warehouse, "SELECT layout, rating_min, rating_max, rating_step, n_ratings, n_users, n_movies FROM dataset"
    ) == [(expected_layout, *scale, 12, 4, 5)]
    assert query(warehouse, "SELECT count(*) FROM rejected_rows") == [(0,)]


USERS = {
    "ml-1m": [
        (1, "F", 1, "K-12 student", "48061"),
        (2, "M", 56, "self-employed", "48062"),
        (3, "M", 25, "scientist", "48063"),
        (4, "F", 35, "executive/managerial", "48064"),
        (5, "M", 18, "college/grad student", "48065"),
    ],
    "ml-100k": [
        (1, "F", 1, "K-12 student", "01123"),
        (2, "M", 56, "self-employed", "02123"),
        (3, "M", 25, "scientist", "03123"),
        (4, "F", 35, "executive/managerial", "04123"),
        (5, "M", 18, "student", "05123"),
    ],
    # No users file: the users are those who rated, with NULL demographics.
    "ml-10m": [(u, None, None, None, None) for u in (1, 2, 3, 4)],
    "ml-latest": [(u, None, None, None, None) for u in (1, 2, 3, 4)],
}


def test_users(default_build, query):
    layout, warehouse = default_build
    expected = USERS[layout]
    assert query(warehouse, "SELECT user_id, gender, age, occupation, zip_code FROM users ORDER BY user_id") == expected
    # user_index holds only the users who rated.
    assert query(warehouse, "SELECT list(user_id ORDER BY user_idx) FROM user_index") == [([1, 2, 3, 4],)]


@pytest.mark.parametrize("layout, encoding", [("ml-1m", "utf-8"), ("ml-1m", "utf-8-sig"), ("ml-100k", "utf-8")])
def test_accented_titles_in_utf8(movielens, etl_build, query, layout, encoding):
    """The official files are latin-1 (test_layout_loads); circulating copies were re-encoded to UTF-8,
    some with a byte-order mark."""
    warehouse = etl_build(movielens(layout, encoding=encoding))
    assert movies_by_id(query, warehouse)[3][0] == MISERABLES
    assert query(warehouse, "SELECT count(*) FROM movies") == [(5,)]
    assert query(warehouse, "SELECT count(*) FROM ratings") == [(12,)]


@pytest.mark.parametrize("layout", ["ml-1m", "ml-100k"])  # ml-latest's default files are CRLF already
def test_crlf_line_endings(movielens, etl_build, query, layout):
    warehouse = etl_build(movielens(layout, newline="\r\n"))
    assert query(warehouse, "SELECT count(*), sum(rating) FROM ratings") == [(12, 39.0)]
    # No stray '\r' on the last field of any file.
    assert movies_by_id(query, warehouse)[2][2] == ["Adventure", "Children's", "Fantasy"]
    assert query(warehouse, "SELECT count(*) FROM users WHERE zip_code LIKE '%\r%'") == [(0,)]


def test_csv_titles_with_commas_and_doubled_quotes(movielens, etl_build, query):
    movies = [
        (1, "American President, The (1995)", ["Comedy"]),
        (2, '"Great Performances" Cats (1998)', ["Musical"]),
        (3, 'Dr. "Strangelove", or, How I Learned (1964)', ["Comedy", "War"]),
        (4, "Plain (2000)", ["Drama"]),
        (5, "Babylon 5 ", ["Sci-Fi"]),  # ml-latest has titles with trailing blanks and no year
    ]
    folder = movielens("ml-latest", movies=movies, encoding="latin-1", newline="\n")
    assert (folder / "movies.csv").read_text().splitlines()[2] == '2,"""Great Performances"" Cats (1998)",Musical'
    warehouse = etl_build(folder)
    assert movies_by_id(query, warehouse) == {
        1: ("American President, The (1995)", 1995, ["Comedy"]),
        2: ('"Great Performances" Cats (1998)', 1998, ["Musical"]),
        3: ('Dr. "Strangelove", or, How I Learned (1964)', 1964, ["Comedy", "War"]),
        4: ("Plain (2000)", 2000, ["Drama"]),
        5: ("Babylon 5", None, ["Sci-Fi"]),
    }


def test_years(movielens, etl_build, query):
    movies = [
        (1, "Death Note: Desu nôto (2006–2007)", ["Drama"]),  # a range: its first year
        (2, "Jumanji (1995)", []),
        (3, "City of Lost Children, The (Cité des enfants perdus, La) (1995)", ["Drama"]),
        (4, "Untitled", ["Drama"]),
        (5, "Heat (1995)", []),
    ]
    warehouse = etl_build(movielens("ml-latest", movies=movies))
    assert {m: year for m, (_, year, _) in movies_by_id(query, warehouse).items()} == {
        1: 2006,
        2: 1995,
        3: 1995,
        4: None,
        5: 1995,
    }


def test_ml100k_year_from_release_date_and_genre_names_from_u_genre(movielens, etl_build, query):
    folder = movielens("ml-100k")
    item = (folder / "u.item").read_text("latin-1").splitlines()
    item[0] = item[0].replace("Toy Story (1995)", "unknown").replace("01-Jan-1995", "14-Oct-1994")
    (folder / "u.item").write_text("\n".join(item) + "\n", "latin-1")
    # The flags are named by u.genre, not by a list in the code.
    genre = (folder / "u.genre").read_text().replace("Musical|12", "Musicals|12")
    (folder / "u.genre").write_text(genre)
    movies = movies_by_id(query, etl_build(folder))
    assert movies[1] == ("unknown", 1994, ["Animation", "Children's", "Comedy"])
    assert movies[3] == (MISERABLES, 1995, ["Drama", "Musicals"])


def test_ml10m_half_stars(movielens, etl_build, query):
    ratings = [(1, 1, 0.5, 978300760), (1, 2, 4.5, 978300761), (2, 1, 5.0, 978300762), (2, 3, 3.5, 978300763)]
    warehouse = etl_build(movielens("ml-10m", ratings=ratings))
    assert query(warehouse, "SELECT list(rating ORDER BY user_id, movie_id) FROM ratings") == [([0.5, 4.5, 5.0, 3.5],)]
    assert movies_by_id(query, warehouse)[5][2] == []  # '(no genres listed)'
