"""Bad input: each bad line stops the ETL with its file, line number and reason, or with --max-bad-rows N is
set aside in rejected_rows while the rest loads. Also the errors no allowance covers, and the traps that
must not be errors."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from etl.build import EtlOptions, build_warehouse
from etl.errors import EtlError

SCALE_1M = "outside the data set's scale (1.0 to 5.0 in steps of 1.0)"
SCALE_HALF = "outside the data set's scale (0.5 to 5.0 in steps of 0.5)"
WHOLE_NUMBER = "is not a whole number from 1 to 2147483647"


@dataclass(frozen=True)
class Bad:
    """One bad line: ``text`` replaces line ``line_no`` of ``file`` (or is appended as that line)."""

    id: str
    layout: str
    file: str
    line_no: int
    text: str
    reason: str
    last: bool = False  # the file ends with this line, without a line ending (a truncated last line)
    stops: bool = True  # also run alone, without an allowance (each such run costs a build)


# Within a layout the cases touch different lines, so that all of them fit in one folder too.
# The default ratings files have 12 lines (ratings.csv: a header, then 12); movies 5; users 5.
CASES = [
    Bad("fields", "ml-1m", "ratings.dat", 3, "1::4::4", "expected 4 fields separated by '::', found 3"),
    Bad("user-id", "ml-1m", "ratings.dat", 4, "two::1::4::978298413", f"user id 'two' {WHOLE_NUMBER}"),
    Bad("movie-id", "ml-1m", "ratings.dat", 5, "2::x2::2::978299000", f"movie id 'x2' {WHOLE_NUMBER}"),
    Bad("rating-6", "ml-1m", "ratings.dat", 6, "2::5::6::978299620", f"rating '6' is {SCALE_1M}"),
    Bad(
        "half-star-in-whole",
        "ml-1m",
        "ratings.dat",
        7,
        "3::3::4.5::978297039",
        f"rating '4.5' is {SCALE_1M}",
        stops=False,
    ),
    Bad(
        "timestamp",
        "ml-1m",
        "ratings.dat",
        8,
        "3::4::3::yesterday",
        "timestamp 'yesterday' is not whole seconds from 1970 to 3000",
        stops=False,
    ),
    Bad("zero-user-id", "ml-1m", "ratings.dat", 9, "0::1::2::978297867", f"user id '0' {WHOLE_NUMBER}", stops=False),
    Bad(
        "duplicate",
        "ml-1m",
        "ratings.dat",
        13,
        "1::3::4::978302200",
        "duplicate rating for user 1 and movie 3 (first on line 2)",
    ),
    Bad("unknown-movie", "ml-1m", "ratings.dat", 14, "2::99::3::978299000", "movie 99 is not in movies.dat"),
    Bad("unknown-user", "ml-1m", "ratings.dat", 15, "99::1::3::978299000", "user 99 is not in users.dat"),
    Bad(
        "truncated-last-line",
        "ml-1m",
        "ratings.dat",
        16,
        "4::4::",
        "expected 4 fields separated by '::', found 3",
        last=True,
    ),
    Bad("movie-fields", "ml-1m", "movies.dat", 6, "6::Broken (1999)", "expected 3 fields separated by '::', found 2"),
    Bad(
        "movie-duplicate",
        "ml-1m",
        "movies.dat",
        7,
        "3::Other (1990)::Drama",
        "duplicate movie id 3 (first on line 3)",
        stops=False,
    ),
    Bad("movie-no-title", "ml-1m", "movies.dat", 8, "8:: ::Drama", "the title is empty", stops=False),
    Bad("user-gender", "ml-1m", "users.dat", 5, "5::X::18::4::48065", "gender 'X' is not M or F"),
    Bad(
        "user-occupation",
        "ml-1m",
        "users.dat",
        6,
        "6::M::18::99::48066",
        "occupation '99' is not a known code",
        stops=False,
    ),
    Bad(
        "user-duplicate",
        "ml-1m",
        "users.dat",
        7,
        "2::F::18::4::48067",
        "duplicate user id 2 (first on line 2)",
        stops=False,
    ),
    Bad("rating-3.7", "ml-10m", "ratings.dat", 2, "1::3::3.7::978302109", f"rating '3.7' is {SCALE_HALF}"),
    Bad("rating-0", "ml-10m", "ratings.dat", 3, "1::4::0::978301968", f"rating '0' is {SCALE_HALF}", stops=False),
    Bad("rating-5.5", "ml-10m", "ratings.dat", 4, "2::1::5.5::978298413", f"rating '5.5' is {SCALE_HALF}", stops=False),
    Bad("rating-nan", "ml-10m", "ratings.dat", 5, "2::2::nan::978299000", f"rating 'nan' is {SCALE_HALF}", stops=False),
    Bad("tab-fields", "ml-100k", "u.data", 2, "1\t3\t3", "expected 4 fields separated by 'a tab', found 3"),
    Bad("u-user-missing", "ml-100k", "u.data", 13, "99\t1\t3\t978299000", "user 99 is not in u.user"),
    Bad(
        "u-item-fields",
        "ml-100k",
        "u.item",
        6,
        "6|Short (1999)|01-Jan-1999||url|0|1",
        "expected 24 fields separated by '|', found 7",
        stops=False,
    ),
    Bad("u-user-age", "ml-100k", "u.user", 6, "6|abc|M|other|12345", "age is not a whole number from 0 to 150"),
    Bad(
        "csv-fields",
        "ml-latest",
        "ratings.csv",
        4,
        "1,4,4.0,978301968,extra",
        "expected 4 fields separated by ',', found 5",
    ),
    Bad(
        "csv-rating-3.7",
        "ml-latest",
        "ratings.csv",
        5,
        "2,1,3.7,978298413",
        f"rating '3.7' is {SCALE_HALF}",
        stops=False,
    ),
    Bad("csv-unknown-movie", "ml-latest", "ratings.csv", 14, "2,99,3.0,978299000", "movie 99 is not in movies.csv"),
    Bad(
        "csv-movie-id",
        "ml-latest",
        "movies.csv",
        7,
        "x7,Bad id (1999),Drama",
        f"movie id 'x7' {WHOLE_NUMBER}",
        stops=False,
    ),
    Bad(
        "csv-unclosed-quote",
        "ml-latest",
        "movies.csv",
        8,
        '8,"Unclosed, quote (1999),Drama',
        "expected movieId,title,genres (titles with commas in double quotes)",
    ),
]
LAYOUTS = sorted({case.layout for case in CASES})


def edit_lines(path: Path, edits: dict[int, str], *, truncate: bool = False) -> dict[int, int]:
    """Replace lines by number, or append them (in order, past the end: at the end), keeping the file's
    other bytes and its line endings. Returns where each line went."""
    data = path.read_bytes().decode("latin-1")  # round-trips any bytes, UTF-8 included
    newline = "\r\n" if "\r\n" in data else "\n"
    lines = data.split(newline)[:-1]
    placed = {}
    for line_no, text in sorted(edits.items()):
        if line_no <= len(lines):
            lines[line_no - 1] = text
        else:
            lines.append(text)
        placed[line_no] = min(line_no, len(lines))
    path.write_bytes((newline.join(lines) + ("" if truncate else newline)).encode("latin-1"))
    return placed


def folder_with(movielens, layout: str, cases: list[Bad]) -> tuple[Path, dict[int, int]]:
    """A default folder of ``layout`` with the bad lines of ``cases``; also where the lines went."""
    folder = movielens(layout)
    placed = {}
    for file in {case.file for case in cases}:
        mine = [case for case in cases if case.file == file]
        placed |= edit_lines(folder / file, {c.line_no: c.text for c in mine}, truncate=any(c.last for c in mine))
    return folder, placed


@pytest.mark.parametrize("case", [case for case in CASES if case.stops], ids=lambda case: case.id)
def test_bad_line_stops_the_etl(movielens, tmp_path, case):
    folder, placed = folder_with(movielens, case.layout, [case])
    warehouse = tmp_path / "warehouse.duckdb"
    with pytest.raises(EtlError) as raised:
        build_warehouse(folder, warehouse)
    message = str(raised.value)
    assert f"{folder / case.file}, line {placed[case.line_no]}: {case.reason}\n" in message
    assert repr(case.text) in message
    assert "--max-bad-rows" in message
    assert not warehouse.exists()
    assert list(tmp_path.iterdir()) == []  # no half-built file left behind


@pytest.fixture(scope="module")
def all_bad_lines(movielens, etl_build):
    """For each layout, one folder holding all its bad lines, built once with an allowance for all of them."""
    built: dict[str, tuple[Path, Path]] = {}

    def get(layout: str) -> tuple[Path, Path]:
        if layout not in built:
            cases = [case for case in CASES if case.layout == layout]
            folder, placed = folder_with(movielens, layout, cases)
            assert all(placed[c.line_no] == c.line_no for c in cases)
            built[layout] = folder, etl_build(folder, max_bad_rows=len(cases))
        return built[layout]

    return get


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_line_set_aside(all_bad_lines, query, case):
    _, warehouse = all_bad_lines(case.layout)
    rows = query(
        warehouse,
        "SELECT file, line_no, raw_line, reason FROM rejected_rows WHERE file = ? AND line_no = ?",
        [case.file, case.line_no],
    )
    assert rows == [(case.file, case.line_no, case.text, case.reason)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_rest_loads(all_bad_lines, query, layout):
    folder, warehouse = all_bad_lines(layout)
    cases = [case for case in CASES if case.layout == layout]
    assert query(warehouse, "SELECT count(*) FROM rejected_rows") == [(len(cases),)]
    assert query(warehouse, "SELECT sum(n_rejected) FROM etl_run_files") == [(len(cases),)]
    # Every other line of the ratings file loaded, with its line number.
    ratings_file = next(path for path in folder.iterdir() if path.name in ("ratings.dat", "u.data", "ratings.csv"))
    rejected = {case.line_no for case in cases if case.file == ratings_file.name}
    delimiter = {"ratings.dat": "::", "u.data": "\t", "ratings.csv": ","}[ratings_file.name]
    expected = []
    for line_no, line in enumerate(ratings_file.read_text("latin-1").splitlines(), start=1):
        if line_no not in rejected and not line.startswith("userId"):
            user, movie, rating, _ = line.split(delimiter)
            expected.append((int(user), int(movie), float(rating), line_no))
    assert (
        query(warehouse, "SELECT user_id, movie_id, rating, source_line FROM ratings ORDER BY source_line") == expected
    )
    assert query(warehouse, "SELECT count(*) FROM movies") == [(5,)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_one_bad_line_too_many(movielens, tmp_path, layout):
    cases = [case for case in CASES if case.layout == layout]
    folder, _ = folder_with(movielens, layout, cases)
    with pytest.raises(EtlError, match=rf"{len(cases)} bad rows in all, at most {len(cases) - 1} allowed"):
        build_warehouse(folder, tmp_path / "warehouse.duckdb", EtlOptions(max_bad_rows=len(cases) - 1))


def test_the_root_cause_is_reported_first(movielens, tmp_path):
    """A bad movie line makes that movie's ratings bad too: the error must point at the movie line."""
    folder, _ = folder_with(movielens, "ml-1m", [Bad("", "ml-1m", "movies.dat", 3, "3::Misérables", "")])
    with pytest.raises(EtlError) as raised:
        build_warehouse(folder, tmp_path / "warehouse.duckdb")
    message = str(raised.value)
    assert message.startswith(f"{folder / 'movies.dat'}, line 3: expected 3 fields separated by '::', found 2\n")
    # The three ratings of movie 3 are bad as well, and counted.
    assert "4 bad rows in all" in message


@pytest.mark.parametrize(
    "layout, file",
    [
        ("ml-1m", "ratings.dat"),
        ("ml-1m", "movies.dat"),
        ("ml-1m", "users.dat"),
        ("ml-100k", "u.genre"),
        ("ml-latest", "ratings.csv"),
    ],
)
def test_empty_file(movielens, tmp_path, layout, file):
    folder = movielens(layout)
    (folder / file).write_bytes(b"")
    with pytest.raises(EtlError, match=f"^{folder / file}: the file is empty$"):
        build_warehouse(folder, tmp_path / "warehouse.duckdb")


@pytest.mark.parametrize("content", ["userId,movieId,rating,timestamp\r\n", "\r\n\r\n  \r\n"], ids=["header", "blank"])
def test_no_ratings_at_all(movielens, tmp_path, content):
    folder = movielens("ml-latest")
    (folder / "ratings.csv").write_text(content, newline="")
    with pytest.raises(EtlError, match=f"^{folder / 'ratings.csv'}: no ratings to load$"):
        build_warehouse(folder, tmp_path / "warehouse.duckdb")


@pytest.mark.parametrize(
    "layout, file",
    [
        ("ml-1m", "movies.dat"),
        ("ml-10m", "movies.dat"),
        ("ml-100k", "u.item"),
        ("ml-100k", "u.user"),
        ("ml-100k", "u.genre"),
        ("ml-latest", "movies.csv"),
    ],
)
def test_missing_file(movielens, tmp_path, layout, file):
    folder = movielens(layout)
    (folder / file).unlink()
    with pytest.raises(EtlError) as raised:
        build_warehouse(folder, tmp_path / "warehouse.duckdb")
    message = str(raised.value)
    assert message.startswith(f"{folder}: looks like the ")
    assert f"but {file} is missing" in message


def test_unrecognised_folder(tmp_path):
    (tmp_path / "README.txt").write_text("not MovieLens\n")
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    with pytest.raises(EtlError, match=f"^{tmp_path}: not a MovieLens folder: found none of u.data"):
        build_warehouse(tmp_path, tmp_path / "warehouse.duckdb")


def test_no_such_folder(tmp_path):
    with pytest.raises(EtlError, match=f"^{tmp_path / 'nowhere'}: no such folder$"):
        build_warehouse(tmp_path / "nowhere", tmp_path / "warehouse.duckdb")


# Traps: inputs that look odd but are fine. UTF-8 re-encoded files and CRLF endings: test_layouts.py.


@pytest.mark.parametrize(
    "layout, headers",
    [
        (
            "ml-1m",
            {
                "ratings.dat": "UserID::MovieID::Rating::Timestamp",
                "movies.dat": "MovieID::Title::Genres",
                "users.dat": "UserID::Gender::Age::Occupation::Zip-code",
            },
        ),
        (
            "ml-100k",
            {
                "u.data": "user id\titem id\trating\ttimestamp",
                "u.user": "user id|age|gender|occupation|zip code",
                "u.item": "movie id|movie title|release date|video release date|IMDb URL|" + "|".join("g" * 19),
            },
        ),
    ],
)
def test_header_line_is_skipped(movielens, etl_build, query, layout, headers):
    folder = movielens(layout)
    for file, header in headers.items():
        content = (folder / file).read_bytes()
        (folder / file).write_bytes(header.encode() + b"\n" + content)
    warehouse = etl_build(folder)
    assert query(warehouse, "SELECT count(*), min(source_line), max(source_line) FROM ratings") == [(12, 2, 13)]
    assert query(warehouse, "SELECT count(*) FROM movies") == [(5,)]
    assert query(warehouse, "SELECT count(*) FROM users") == [(5,)]
    assert query(warehouse, "SELECT count(*) FROM rejected_rows") == [(0,)]


def test_blank_lines_byte_order_mark_and_no_final_newline(movielens, etl_build, query):
    folder = movielens("ml-1m")
    ratings = (folder / "ratings.dat").read_text().splitlines()
    # A BOM, a blank line after line 4, a line of blanks after line 8, a bad line after both, blank lines at
    # the end, and a last good line without a line ending.
    lines = ["\ufeff" + ratings[0], *ratings[1:4], "", *ratings[4:8], "   ", "1::1::9::978300760", *ratings[8:], "", ""]
    (folder / "ratings.dat").write_bytes("\n".join(lines).encode("utf-8") + b"\n1::2::4::978300999")
    movies = (folder / "movies.dat").read_text("latin-1").splitlines()
    (folder / "movies.dat").write_text("\n".join([movies[0], "", *movies[1:]]) + "\n", "latin-1")

    warehouse = etl_build(folder, max_bad_rows=1)
    assert query(warehouse, "SELECT line_no, raw_line, reason FROM rejected_rows") == [
        (11, "1::1::9::978300760", f"rating '9' is {SCALE_1M}")
    ]
    assert query(warehouse, "SELECT user_id, movie_id, source_line FROM ratings ORDER BY source_line") == [
        (1, 1, 1),
        (1, 3, 2),
        (1, 4, 3),
        (2, 1, 4),
        (2, 2, 6),
        (2, 5, 7),
        (3, 3, 8),
        (3, 4, 9),
        (3, 1, 12),
        (4, 2, 13),
        (4, 5, 14),
        (4, 3, 15),
        (1, 2, 18),
    ]
    assert query(warehouse, "SELECT count(*) FROM movies") == [(5,)]


def test_a_line_of_megabytes_is_named_shortened_and_can_be_set_aside(movielens, tmp_path, query):
    folder = movielens("ml-1m")
    with (folder / "ratings.dat").open("a") as ratings:
        ratings.write("1::" + "7" * 3_000_000 + "::5::978300760\n")  # past DuckDB's own 2 MB line limit
    with pytest.raises(EtlError) as raised:
        build_warehouse(folder, tmp_path / "warehouse.duckdb")
    message = str(raised.value)
    assert f"{folder / 'ratings.dat'}, line 13: movie id '777" in message
    assert message.count(" characters)") == 2 and len(message) < 1_000  # the reason and the line, each cut short
    warehouse = tmp_path / "warehouse.duckdb"
    build_warehouse(folder, warehouse, EtlOptions(max_bad_rows=1))
    assert query(warehouse, "SELECT line_no, length(raw_line) FROM rejected_rows") == [(13, 3_000_017)]


def test_a_line_past_what_a_line_may_hold_is_named_in_one_sentence(movielens, tmp_path, monkeypatch):
    """Past the reader's line limit (16 MB; lowered here) DuckDB fails the read: one sentence names file and line."""
    from etl import models as models_module

    folder = movielens("ml-1m")
    with (folder / "ratings.dat").open("a") as ratings:
        ratings.write("1::" + "7" * 3_000_000 + "::5::978300760\n")
    macros = tmp_path / "sql"
    shutil.copytree(models_module.ETL_DIR, macros)
    read_lines = macros / "macros" / "read_lines.sql"
    read_lines.write_text(read_lines.read_text().replace("max_line_size = 16777216", "max_line_size = 2097152"))
    monkeypatch.setattr(models_module, "ETL_DIR", macros)
    with pytest.raises(EtlError) as raised:
        build_warehouse(folder, tmp_path / "warehouse.duckdb")
    assert str(raised.value) == (
        f"{folder / 'ratings.dat'}, line 13: longer than the 2,097,152 bytes a line may "
        "hold (no MovieLens line comes near); remove or fix that line"
    )


# What the fuzzer (test_fuzz.py) found, kept as plain examples: each was loaded wrongly or failed without a line number.
@pytest.mark.parametrize("value", ["1.7", "1e3", "0x10", "1_000", " 3", "+3"])
def test_an_id_is_digits_only(movielens, etl_build, query, value):
    """DuckDB's text-to-integer cast rounds '1.7' to 2 and reads '1e3' or '0x10': such an id is a bad row."""
    folder = movielens("ml-1m")
    with (folder / "ratings.dat").open("a") as f:
        f.write(f"1::{value}::4::978300760\n")
    warehouse = etl_build(folder, max_bad_rows=1)
    assert query(warehouse, "SELECT line_no, reason FROM rejected_rows") == [
        (13, f"movie id '{value}' is not a whole number from 1 to 2147483647")
    ]


@pytest.mark.parametrize("file", ["ratings.dat", "movies.dat"])
def test_a_byte_that_is_not_latin1_text_is_reported_with_its_line(movielens, tmp_path, file):
    """DuckDB's latin-1 reader refuses bytes 0x80-0x9F with an error naming no line (a cp1252 curly quote)."""
    folder = movielens("ml-1m")
    content = (folder / file).read_bytes().split(b"\n")
    content[2] = content[2].replace(b"::", b"\x92::", 1)
    (folder / file).write_bytes(b"\n".join(content))
    with pytest.raises(EtlError, match=rf"^{folder / file}, line 3: byte 0x92 cannot be read as latin-1 text"):
        build_warehouse(folder, tmp_path / "warehouse.duckdb")
    assert list(tmp_path.iterdir()) == []
