-- movies: the catalogue. grain: one row per movie; key: movie_id.
-- year comes from the title's trailing "(1995)" (ml-latest has ranges such as "(2006–2007)": the first
-- year), else from u.item's release date; genres is a list, empty for "(no genres listed)".
-- depends_on: int_movies_checked
-- test: unique(movie_id)
-- test: not_null(movie_id, title, genres)
CREATE OR REPLACE TABLE movies AS
SELECT
    movie_id,
    trim(title) AS title,
    coalesce(
        TRY_CAST(regexp_extract(trim(title), '\((\d{4})[^()]*\)$', 1) AS INTEGER),
        TRY_CAST(regexp_extract(release_date_text, '(\d{4})$', 1) AS INTEGER)
    ) AS year,
    CASE WHEN genres_text IN ('', '(no genres listed)') THEN []::VARCHAR[]
         ELSE string_split(genres_text, '|') END AS genres
FROM int_movies_checked
WHERE reject_reason IS NULL
ORDER BY movie_id;
