-- split_ratings: for every split, which part each rating belongs to: train, validation or test.
-- grain: one row per (split, user, movie); key: (split, user_id, movie_id). user_idx and movie_idx are the
-- trainer's coordinates (user_index, movie_index), joined once here for both matrices.
--   random    each rating is test with probability test_fraction, decided by a seeded hash of
--             (user, movie): reproducible, and no sort of the whole table.
--   temporal  each user's latest test_fraction of ratings (by time, then movie id) are test.
--   u1..u5    ml-100k only: fold k tests on lines 20000(k-1)+1 .. 20000k of u.data, exactly as the
--             data set's mku.sh builds u1.base/u1.test .. u5.base/u5.test.
-- validation is then carved out of each split's train part (each train rating with probability
-- validation_fraction, by another seeded hash) for model
-- selection; train + validation together are the whole training side (u1's train + validation = u1.base).
CREATE OR REPLACE TABLE split_ratings AS
WITH indexed AS (
    SELECT r.user_id, r.movie_id, u.user_idx, m.movie_idx, r.rating, r.rated_at, r.source_line
    FROM ratings AS r
    JOIN user_index AS u USING (user_id)
    JOIN movie_index AS m USING (movie_id)
),
random_split AS (
    SELECT
        'random' AS split, user_id, movie_id, user_idx, movie_idx, rating,
        CASE WHEN hash(user_id, movie_id, getvariable('split_seed')) % 1000000
                  < getvariable('test_fraction') * 1000000
             THEN 'test' ELSE 'train' END AS part
    FROM indexed
),
temporal_split AS (
    SELECT
        'temporal' AS split, user_id, movie_id, user_idx, movie_idx, rating,
        CASE WHEN row_number() OVER (PARTITION BY user_id ORDER BY rated_at DESC, movie_id DESC)
                  <= round(count(*) OVER (PARTITION BY user_id) * getvariable('test_fraction'))
             THEN 'test' ELSE 'train' END AS part
    FROM indexed
),
fold_splits AS (
    SELECT
        'u' || fold AS split, user_id, movie_id, user_idx, movie_idx, rating,
        CASE WHEN (source_line - 1) // 20000 + 1 = fold THEN 'test' ELSE 'train' END AS part
    FROM indexed, range(1, 6) AS folds(fold)
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
    user_idx,
    movie_idx,
    rating,
    CASE WHEN part = 'train'
              AND hash(user_id, movie_id, split, getvariable('split_seed')) % 1000000
                  < getvariable('validation_fraction') * 1000000
         THEN 'validation' ELSE part END AS part
FROM assigned;
