-- movie_matrix: the same matrices transposed, one row per movie (an item-based autoencoder's row,
-- as in I-AutoRec). Each part is a pair of aligned lists, user indexes ascending.
-- grain: one row per (split, movie); key: (split, movie_idx). Movies with nothing in a part get empty lists.
-- Built by matrix_rows (macros/matrix_rows.sql), as user_matrix is.
-- depends_on: matrix_rows
-- test: unique(split, movie_idx)
-- test: not_null(split, movie_idx)
-- test: relationships(movie_idx, movie_index.movie_idx)
CREATE OR REPLACE TABLE movie_matrix AS
SELECT
    split,
    row_idx            AS movie_idx,
    train_columns      AS train_user_idx,
    train_rating,
    validation_columns AS validation_user_idx,
    validation_rating,
    test_columns       AS test_user_idx,
    test_rating
FROM matrix_rows(movie_idx, user_idx)
ORDER BY split, movie_idx;
