-- ratings: every rating that passed validation. grain: one row per (user, movie); key: (user_id, movie_id).
-- source_line is the line of the ratings file it came from: ml-100k's u1..u5 splits are defined by it.
-- Rows are not sorted: sorting a million rows by key cost half of this model's time.
-- The key is not tested here: int_ratings_checked already sets every later duplicate of a (user, movie)
-- aside as a bad row, naming its line, and a second hash of every key would cost a twentieth of the build.
-- depends_on: int_ratings_checked
-- test: not_null(user_id, movie_id, rating, rated_at, source_line)
-- test: relationships(movie_id, movies.movie_id)
-- test: relationships(user_id, users.user_id)
CREATE OR REPLACE TABLE ratings AS
SELECT
    user_id,
    movie_id,
    rating::FLOAT                            AS rating,
    make_timestamp(epoch_seconds * 1000000)  AS rated_at,
    line_no                                  AS source_line
FROM int_ratings_checked
WHERE reject_reason IS NULL;
