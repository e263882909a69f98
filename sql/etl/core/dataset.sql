-- dataset: what was loaded, in one row: the layout, the rating scale the trainer clips to, sizes.
-- depends_on: ratings, user_index, movie_index
-- test: not_null(layout, fingerprint)
-- test: accepted_values(layout, 'ml-100k', 'ml-1m', 'ml-10m', 'ml-latest')
CREATE OR REPLACE TABLE dataset AS
SELECT
    getvariable('dataset_name')              AS name,
    getvariable('layout')                    AS layout,
    -- sha256 over the input files' hashes: a run records which data it was trained on.
    getvariable('dataset_fingerprint')       AS fingerprint,
    getvariable('rating_min')::FLOAT         AS rating_min,
    getvariable('rating_max')::FLOAT         AS rating_max,
    getvariable('rating_step')::FLOAT        AS rating_step,
    (SELECT count(*) FROM ratings)           AS n_ratings,
    (SELECT count(*) FROM user_index)        AS n_users,
    (SELECT count(*) FROM movie_index)       AS n_movies,
    (SELECT avg(rating) FROM ratings)        AS mean_rating;
