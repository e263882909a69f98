-- stg_movies (ml-latest / ml-20m / ml-25m / ml-32m layout): movies.csv, "movieId,title,genres".
-- Titles holding commas are double-quoted, with inner quotes doubled (RFC 4180).
-- grain: one row per non-blank line; key: line_no.
-- depends_on: read_lines, whole_number
CREATE OR REPLACE TEMP VIEW stg_movies AS
WITH lines AS (
    SELECT
        line_no,
        line AS raw_line,
        regexp_matches(line, '^([^,]*),(?:"((?:[^"]|"")*)"|([^",]*)),(.*)$') AS well_formed,
        regexp_extract(
            line, '^([^,]*),(?:"((?:[^"]|"")*)"|([^",]*)),(.*)$',
            ['movie_id', 'quoted_title', 'plain_title', 'genres']
        ) AS fields
    FROM read_lines(getvariable('movies_path'), getvariable('movies_newline'), getvariable('movies_encoding'))
)
SELECT
    line_no,
    raw_line,
    well_formed,
    'expected movieId,title,genres (titles with commas in double quotes)' AS shape_error,
    fields.movie_id                                  AS movie_id_text,
    TRY_CAST(whole_number(fields.movie_id) AS INTEGER)             AS movie_id,
    CASE WHEN fields.quoted_title <> '' THEN replace(fields.quoted_title, '""', '"')
         ELSE fields.plain_title END                 AS title,
    fields.genres                                    AS genres_text,
    NULL::VARCHAR                                    AS release_date_text
FROM lines;
