-- rating_splits: for every rating, the part (train, validation or test) it takes in each split.
-- grain: one row per rating; key: (user_id, movie_id). One column per split: random, temporal, and
-- u1..u5 (ml-100k's official folds, NULL in other data sets). user_idx and movie_idx are the trainer's
-- coordinates (user_index, movie_index), joined once here for both matrices.
--   random    each rating is test with probability test_fraction, decided by a seeded hash of
--             (user, movie): reproducible, and no sort of the whole table.
--   temporal  each user's latest test_fraction of ratings (by time, then movie id) are test.
--   u1..u5    ml-100k only: fold k tests on lines 20000(k-1)+1 .. 20000k of u.data, exactly as the
--             data set's mku.sh builds u1.base/u1.test .. u5.base/u5.test.
-- Then part_of carves the validation slice out of each split's train side, for model selection:
-- train + validation together are the whole training side (u1's train + validation = u1.base).
-- Wide, one column per split, rather than a row per (split, rating): half the rows to write on ml-1m and a
-- third on ml-100k. split_ratings is the long form, as a view.
CREATE OR REPLACE TABLE rating_splits AS
WITH indexed AS (
    SELECT r.user_id, r.movie_id, u.user_idx, m.movie_idx, r.rating, r.rated_at, r.source_line
    FROM ratings AS r
    JOIN user_index AS u USING (user_id)
    JOIN movie_index AS m USING (movie_id)
),
held_out AS (
    SELECT
        *,
        hash(user_id, movie_id, getvariable('split_seed')) % 1000000
            < getvariable('test_fraction') * 1000000 AS random_test,
        row_number() OVER latest_first
            <= round(count(*) OVER (latest_first ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
                     * getvariable('test_fraction')) AS temporal_test,
        CASE WHEN getvariable('layout') = 'ml-100k' THEN (source_line - 1) // 20000 + 1 END AS test_fold
    FROM indexed
    WINDOW latest_first AS (PARTITION BY user_id ORDER BY rated_at DESC, movie_id DESC)
)
SELECT
    user_id,
    movie_id,
    user_idx,
    movie_idx,
    rating,
    part_of(random_test, user_id, movie_id, 'random')     AS random,
    part_of(temporal_test, user_id, movie_id, 'temporal') AS temporal,
    CASE WHEN test_fold IS NOT NULL THEN part_of(test_fold = 1, user_id, movie_id, 'u1') END AS u1,
    CASE WHEN test_fold IS NOT NULL THEN part_of(test_fold = 2, user_id, movie_id, 'u2') END AS u2,
    CASE WHEN test_fold IS NOT NULL THEN part_of(test_fold = 3, user_id, movie_id, 'u3') END AS u3,
    CASE WHEN test_fold IS NOT NULL THEN part_of(test_fold = 4, user_id, movie_id, 'u4') END AS u4,
    CASE WHEN test_fold IS NOT NULL THEN part_of(test_fold = 5, user_id, movie_id, 'u5') END AS u5
FROM held_out;
