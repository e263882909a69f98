-- user_matrix: the sparse user×movie rating matrix of each split, one row per user (an autoencoder's
-- user row). Each part is a pair of aligned lists, movie indexes ascending: together a CSR row.
-- Never a wide PIVOT: at ml-32m that would be 200,948 × 87,585 cells.
-- grain: one row per (split, user); key: (split, user_idx). Users with nothing in a part get empty lists.
CREATE OR REPLACE TABLE user_matrix AS
SELECT
    s.split,
    s.user_idx,
    coalesce(list(s.movie_idx ORDER BY s.movie_idx) FILTER (WHERE s.part = 'train'), [])      AS train_movie_idx,
    coalesce(list(s.rating ORDER BY s.movie_idx) FILTER (WHERE s.part = 'train'), [])         AS train_rating,
    coalesce(list(s.movie_idx ORDER BY s.movie_idx) FILTER (WHERE s.part = 'validation'), []) AS validation_movie_idx,
    coalesce(list(s.rating ORDER BY s.movie_idx) FILTER (WHERE s.part = 'validation'), [])    AS validation_rating,
    coalesce(list(s.movie_idx ORDER BY s.movie_idx) FILTER (WHERE s.part = 'test'), [])       AS test_movie_idx,
    coalesce(list(s.rating ORDER BY s.movie_idx) FILTER (WHERE s.part = 'test'), [])          AS test_rating
FROM split_ratings AS s
GROUP BY s.split, s.user_idx
ORDER BY s.split, s.user_idx;
