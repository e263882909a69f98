-- user_matrix: the sparse user×movie rating matrix of each split, one row per user (an autoencoder's
-- user row). Each part is a pair of aligned lists, movie indexes ascending: together a CSR row.
-- Never a wide PIVOT: at ml-32m that would be 200,948 × 87,585 cells.
-- grain: one row per (split, user); key: (split, user_idx). Users with nothing in a part get empty lists.
-- Built by matrix_rows (macros/matrix_rows.sql), which sorts each user's ratings once for all splits.
-- depends_on: matrix_rows
-- test: unique(split, user_idx)
-- test: not_null(split, user_idx)
-- test: relationships(user_idx, user_index.user_idx)
CREATE OR REPLACE TABLE user_matrix AS
SELECT
    split,
    row_idx            AS user_idx,
    train_columns      AS train_movie_idx,
    train_rating,
    validation_columns AS validation_movie_idx,
    validation_rating,
    test_columns       AS test_movie_idx,
    test_rating
FROM matrix_rows(user_idx, movie_idx)
ORDER BY split, user_idx;
