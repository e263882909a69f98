-- int_ratings_checked: each staged rating line with the reason it is rejected (NULL when it is good).
-- Checks run in order; a line reports the first that fails. A rating must name a movie (and, where the
-- data set has a users file, a user) that loaded cleanly.
-- grain: one row per staged line, header excluded; key: line_no.
-- Two statements: the table with each line's own checks, then the duplicates marked in it. As one query, whose
-- duplicate search and result both read the checked lines, DuckDB first stored every checked line, text included.
-- depends_on: stg_ratings, ratings_lines, read_lines, int_movies_checked, int_users_checked
CREATE OR REPLACE TEMP TABLE int_ratings_checked AS
WITH staged AS (
    SELECT
        *,
        line_no = 1 AND user_id IS NULL AND regexp_matches(user_id_text, '^[A-Za-z_ ]+$') AS is_header
    FROM stg_ratings
),
row_checks AS (
    SELECT
        s.*,
        CASE
            WHEN s.n_fields <> 4
                THEN format('expected 4 fields separated by ''{}'', found {}',
                            getvariable('ratings_delimiter_label'), s.n_fields)
            WHEN s.user_id IS NULL OR s.user_id <= 0
                THEN format('user id ''{}'' is not a whole number from 1 to 2147483647', s.user_id_text)
            WHEN s.movie_id IS NULL OR s.movie_id <= 0
                THEN format('movie id ''{}'' is not a whole number from 1 to 2147483647', s.movie_id_text)
            WHEN s.rating IS NULL OR NOT isfinite(s.rating)
                OR s.rating < getvariable('rating_min') OR s.rating > getvariable('rating_max')
                OR (s.rating - getvariable('rating_min')) % getvariable('rating_step') <> 0
                THEN format('rating ''{}'' is outside the data set''s scale ({} to {} in steps of {})',
                            s.rating_text, getvariable('rating_min'), getvariable('rating_max'),
                            getvariable('rating_step'))
            -- Bounded so that every timestamp converts; MovieLens starts in 1995.
            WHEN s.epoch_seconds IS NULL OR s.epoch_seconds < 0 OR s.epoch_seconds > 32503680000
                THEN format('timestamp ''{}'' is not whole seconds from 1970 to 3000', s.timestamp_text)
            -- IN, not a LEFT JOIN: a join would carry every text column through it, 3x slower.
            WHEN s.movie_id NOT IN (SELECT movie_id FROM int_movies_checked WHERE reject_reason IS NULL)
                THEN format('movie {} is not in {}', s.movie_id, getvariable('movies_file'))
            WHEN getvariable('has_users_file')
                 AND s.user_id NOT IN (SELECT user_id FROM int_users_checked WHERE reject_reason IS NULL)
                THEN format('user {} is not in {}', s.user_id, getvariable('users_file'))
        END AS row_reason
    FROM staged AS s
    WHERE NOT s.is_header
)
SELECT
    line_no,
    -- Only a rejected line's text is kept: rejected_rows shows it, good lines need only their values. A
    -- duplicate's text is read back below, from the stored file.
    CASE WHEN row_reason IS NOT NULL THEN raw_line END AS raw_line,
    user_id,
    movie_id,
    rating,
    epoch_seconds,
    row_reason AS reject_reason
FROM row_checks;

-- A (user, movie) rated on several good lines: the first stands, the later ones are duplicates. A hash
-- aggregate, not a window that would sort every line by key.
UPDATE int_ratings_checked AS c
SET reject_reason = format('duplicate rating for user {} and movie {} (first on line {})',
                           c.user_id, c.movie_id, r.first_line),
    raw_line = without_bom(c.line_no, f.line)
FROM ratings_file AS f, (
    SELECT user_id, movie_id, min(line_no) AS first_line
    FROM int_ratings_checked
    WHERE reject_reason IS NULL
    GROUP BY user_id, movie_id
    HAVING count(*) > 1
) AS r
WHERE c.reject_reason IS NULL AND c.user_id = r.user_id AND c.movie_id = r.movie_id AND c.line_no > r.first_line
    AND f.rowid = c.line_no - 1;  -- a line's number is its stored row's position (staging/ratings_lines.sql)
