-- user_matrix: the sparse user×movie rating matrix of each split, one row per user (an autoencoder's
-- user row). Each part is a pair of aligned lists, movie indexes ascending: together a CSR row.
-- Never a wide PIVOT: at ml-32m that would be 200,948 × 87,585 cells.
-- grain: one row per (split, user); key: (split, user_idx). Users with nothing in a part get empty lists.
-- Each user's ratings are packed into integer cells and sorted once for all splits (see
-- macros/split_parts.sql); each split then keeps its own parts of that one sorted list.
CREATE OR REPLACE TABLE user_matrix AS
WITH user_cells AS (
    SELECT user_idx, list_sort(list(pack_cell(movie_idx, rating, random, temporal, u1, u2, u3, u4, u5))) AS cells
    FROM rating_splits
    GROUP BY user_idx
),
split_cells AS (
    SELECT s.split, c.user_idx, c.cells, split_slot(s.split) AS slot
    FROM user_cells AS c
    CROSS JOIN splits AS s
),
parts AS (
    SELECT
        split,
        user_idx,
        list_filter(cells, lambda cell: cell_part(cell, slot) = 0) AS train,
        list_filter(cells, lambda cell: cell_part(cell, slot) = 1) AS validation,
        list_filter(cells, lambda cell: cell_part(cell, slot) = 2) AS test
    FROM split_cells
)
SELECT
    split,
    user_idx,
    list_transform(train, lambda cell: cell_column(cell))      AS train_movie_idx,
    list_transform(train, lambda cell: cell_rating(cell))      AS train_rating,
    list_transform(validation, lambda cell: cell_column(cell)) AS validation_movie_idx,
    list_transform(validation, lambda cell: cell_rating(cell)) AS validation_rating,
    list_transform(test, lambda cell: cell_column(cell))       AS test_movie_idx,
    list_transform(test, lambda cell: cell_rating(cell))       AS test_rating
FROM parts
ORDER BY split, user_idx;
