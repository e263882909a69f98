-- int_movies_checked: each staged movie line with the reason it is rejected (NULL when it is good).
-- grain: one row per staged line, header excluded; key: line_no.
-- depends_on: stg_movies
CREATE OR REPLACE TEMP TABLE int_movies_checked AS
WITH staged AS (
    SELECT
        *,
        -- A header line where none is expected is a trap, not an error: skip it.
        line_no = 1 AND movie_id IS NULL AND regexp_matches(movie_id_text, '^[A-Za-z_ ]+$') AS is_header
    FROM stg_movies
),
row_checks AS (
    SELECT
        *,
        CASE
            WHEN NOT well_formed THEN shape_error
            WHEN movie_id IS NULL OR movie_id <= 0
                THEN format('movie id ''{}'' is not a whole number from 1 to 2147483647', movie_id_text)
            WHEN trim(coalesce(title, '')) = '' THEN 'the title is empty'
        END AS row_reason
    FROM staged
    WHERE NOT is_header
)
SELECT
    line_no,
    raw_line,
    movie_id,
    title,
    genres_text,
    release_date_text,
    coalesce(
        row_reason,
        CASE WHEN row_number() OVER (PARTITION BY movie_id, row_reason IS NULL ORDER BY line_no) > 1
             THEN format('duplicate movie id {} (first on line {})', movie_id,
                         min(line_no) OVER (PARTITION BY movie_id, row_reason IS NULL))
        END
    ) AS reject_reason
FROM row_checks;
