-- stg_movies (ml-1m / ml-10m layout): movies.dat, "MovieID::Title::Genres", genres '|'-separated.
-- grain: one row per non-blank line; key: line_no.
-- depends_on: read_lines, whole_number
CREATE OR REPLACE TEMP VIEW stg_movies AS
WITH lines AS (
    SELECT line_no, line AS raw_line, string_split(line, '::') AS fields
    FROM read_lines(getvariable('movies_path'), getvariable('movies_newline'), getvariable('movies_encoding'))
)
SELECT
    line_no,
    raw_line,
    len(fields) = 3                     AS well_formed,
    format('expected 3 fields separated by ''::'', found {}', len(fields)) AS shape_error,
    fields[1]                           AS movie_id_text,
    TRY_CAST(whole_number(fields[1]) AS INTEGER)      AS movie_id,
    fields[2]                           AS title,
    fields[3]                           AS genres_text,
    NULL::VARCHAR                       AS release_date_text
FROM lines;
