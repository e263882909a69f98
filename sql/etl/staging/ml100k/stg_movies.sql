-- stg_movies (ml-100k layout): u.item, "id|title|release date|video release date|IMDb URL|flag×19",
-- one 0/1 flag per genre in u.genre order.
-- grain: one row per non-blank line; key: line_no.
-- depends_on: stg_genres, read_lines, whole_number
CREATE OR REPLACE TEMP VIEW stg_movies AS
WITH genre_names AS (
    SELECT list(genre ORDER BY genre_index) AS names FROM stg_genres
),
lines AS (
    SELECT line_no, line AS raw_line, string_split(line, '|') AS fields
    FROM read_lines(getvariable('movies_path'), getvariable('movies_newline'), getvariable('movies_encoding'))
)
SELECT
    line_no,
    raw_line,
    len(fields) = 5 + len(names)        AS well_formed,
    format('expected {} fields separated by ''|'', found {}', 5 + len(names), len(fields)) AS shape_error,
    fields[1]                           AS movie_id_text,
    TRY_CAST(whole_number(fields[1]) AS INTEGER)      AS movie_id,
    fields[2]                           AS title,
    -- The flags become the same '|'-joined text the other layouts carry.
    array_to_string([names[i] FOR i IN range(1, len(names) + 1) IF fields[5 + i] = '1'], '|') AS genres_text,
    fields[3]                           AS release_date_text
FROM lines, genre_names;
