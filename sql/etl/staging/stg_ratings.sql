-- stg_ratings: the ratings file of any layout, split into fields and cast.
-- grain: one row per non-blank line of the ratings file; key: line_no.
-- Casts use TRY_CAST: a NULL next to non-NULL text is a bad value, judged in int_ratings_checked.
-- depends_on: ratings_lines, whole_number
CREATE OR REPLACE TEMP VIEW stg_ratings AS
WITH lines AS (
    SELECT line_no, line AS raw_line, string_split(line, getvariable('ratings_delimiter')) AS fields
    FROM ratings_lines
)
SELECT
    line_no,
    raw_line,
    len(fields)                         AS n_fields,
    fields[1]                           AS user_id_text,
    fields[2]                           AS movie_id_text,
    fields[3]                           AS rating_text,
    fields[4]                           AS timestamp_text,
    TRY_CAST(whole_number(fields[1]) AS INTEGER)      AS user_id,
    TRY_CAST(whole_number(fields[2]) AS INTEGER)      AS movie_id,
    TRY_CAST(fields[3] AS DOUBLE)       AS rating,
    TRY_CAST(whole_number(fields[4]) AS BIGINT)       AS epoch_seconds
FROM lines;
