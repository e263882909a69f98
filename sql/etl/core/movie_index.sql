-- movie_index: the trainer's dense 0-based movie coordinates, in movie_id order, so the same input
-- always gives the same indexes. grain: one row per movie that was rated; key: movie_id (and movie_idx).
-- depends_on: ratings
-- test: unique(movie_id)
-- test: unique(movie_idx)
-- test: not_null(movie_id, movie_idx)
-- test: relationships(movie_id, movies.movie_id)
CREATE OR REPLACE TABLE movie_index AS
SELECT movie_id, (row_number() OVER (ORDER BY movie_id) - 1)::INTEGER AS movie_idx
FROM (SELECT DISTINCT movie_id FROM ratings)
ORDER BY movie_idx;
