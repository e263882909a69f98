-- stg_genres (ml-100k layout): u.genre, "name|index"; names the 19 flag columns of u.item.
-- grain: one row per genre; key: genre_index.
-- depends_on: read_lines, whole_number
CREATE OR REPLACE TEMP VIEW stg_genres AS
SELECT
    split_part(line, '|', 1)                    AS genre,
    TRY_CAST(whole_number(split_part(line, '|', 2)) AS INTEGER) AS genre_index
FROM read_lines(getvariable('genres_path'), getvariable('genres_newline'), getvariable('genres_encoding'));
