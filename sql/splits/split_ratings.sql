-- split_ratings: for every split, which part each rating belongs to: train, validation or test.
-- grain: one row per (split, user, movie); key: (split, user_id, movie_id).
--   random    seeded shuffle of all ratings; the first test_fraction of them are test (exact count).
--   temporal  each user's latest test_fraction of ratings (by time, then movie id) are test.
--   u1..u5    ml-100k only: fold k tests on lines 20000(k-1)+1 .. 20000k of u.data, exactly as the
--             data set's mku.sh builds u1.base/u1.test .. u5.base/u5.test.
-- validation is then carved out of each split's train part (seeded, validation_fraction of it) for model
-- selection; train + validation together are the whole training side (u1's train + validation = u1.base).
CREATE OR REPLACE TABLE split_ratings AS
WITH random_split AS (
    SELECT
        'random' AS split, user_id, movie_id, rating,
        CASE WHEN row_number() OVER (ORDER BY hash(user_id, movie_id, getvariable('split_seed')), user_id, movie_id)
                  <= round(count(*) OVER () * getvariable('test_fraction'))
             THEN 'test' ELSE 'train' END AS part
    FROM ratings
),
temporal_split AS (
    SELECT
        'temporal' AS split, user_id, movie_id, rating,
        CASE WHEN row_number() OVER (PARTITION BY user_id ORDER BY rated_at DESC, movie_id DESC)
                  <= round(count(*) OVER (PARTITION BY user_id) * getvariable('test_fraction'))
             THEN 'test' ELSE 'train' END AS part
    FROM ratings
),
fold_splits AS (
    SELECT
        'u' || fold AS split, user_id, movie_id, rating,
        CASE WHEN (source_line - 1) // 20000 + 1 = fold THEN 'test' ELSE 'train' END AS part
    FROM ratings, range(1, 6) AS folds(fold)
    WHERE getvariable('layout') = 'ml-100k'
),
assigned AS (
    SELECT * FROM random_split
    UNION ALL SELECT * FROM temporal_split
    UNION ALL SELECT * FROM fold_splits
)
SELECT
    split,
    user_id,
    movie_id,
    rating,
    CASE WHEN part = 'train'
              AND row_number() OVER (
                      PARTITION BY split, part
                      ORDER BY hash(user_id, movie_id, split, getvariable('split_seed')), user_id, movie_id)
                  <= round(count(*) OVER (PARTITION BY split, part) * getvariable('validation_fraction'))
         THEN 'validation' ELSE part END AS part
FROM assigned
ORDER BY split, user_id, movie_id;
