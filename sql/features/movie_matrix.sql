-- movie_matrix: the same matrices transposed, one row per movie (an item-based autoencoder's row,
-- as in I-AutoRec). Each part is a pair of aligned lists, user indexes ascending.
-- grain: one row per (split, movie); key: (split, movie_idx). Movies with nothing in a part get empty lists.
CREATE OR REPLACE TABLE movie_matrix AS
SELECT
    s.split,
    s.movie_idx,
    coalesce(list(s.user_idx ORDER BY s.user_idx) FILTER (WHERE s.part = 'train'), [])      AS train_user_idx,
    coalesce(list(s.rating ORDER BY s.user_idx) FILTER (WHERE s.part = 'train'), [])        AS train_rating,
    coalesce(list(s.user_idx ORDER BY s.user_idx) FILTER (WHERE s.part = 'validation'), []) AS validation_user_idx,
    coalesce(list(s.rating ORDER BY s.user_idx) FILTER (WHERE s.part = 'validation'), [])   AS validation_rating,
    coalesce(list(s.user_idx ORDER BY s.user_idx) FILTER (WHERE s.part = 'test'), [])       AS test_user_idx,
    coalesce(list(s.rating ORDER BY s.user_idx) FILTER (WHERE s.part = 'test'), [])         AS test_rating
FROM split_ratings AS s
GROUP BY s.split, s.movie_idx
ORDER BY s.split, s.movie_idx;
