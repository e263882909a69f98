-- movie_matrix: the same matrices transposed, one row per movie (an item-based autoencoder's row,
-- as in I-AutoRec). Each part is a pair of aligned lists, user indexes ascending.
-- grain: one row per (split, movie); key: (split, movie_idx). Movies with nothing in a part get empty lists.
-- Built as user_matrix is, from cells packed with the user index (see macros/split_parts.sql).
CREATE OR REPLACE TABLE movie_matrix AS
WITH movie_cells AS (
    SELECT movie_idx, list_sort(list(pack_cell(user_idx, rating, random, temporal, u1, u2, u3, u4, u5))) AS cells
    FROM rating_splits
    GROUP BY movie_idx
),
split_cells AS (
    SELECT s.split, c.movie_idx, c.cells, split_slot(s.split) AS slot
    FROM movie_cells AS c
    CROSS JOIN splits AS s
),
parts AS (
    SELECT
        split,
        movie_idx,
        list_filter(cells, lambda cell: cell_part(cell, slot) = 0) AS train,
        list_filter(cells, lambda cell: cell_part(cell, slot) = 1) AS validation,
        list_filter(cells, lambda cell: cell_part(cell, slot) = 2) AS test
    FROM split_cells
)
SELECT
    split,
    movie_idx,
    list_transform(train, lambda cell: cell_column(cell))      AS train_user_idx,
    list_transform(train, lambda cell: cell_rating(cell))      AS train_rating,
    list_transform(validation, lambda cell: cell_column(cell)) AS validation_user_idx,
    list_transform(validation, lambda cell: cell_rating(cell)) AS validation_rating,
    list_transform(test, lambda cell: cell_column(cell))       AS test_user_idx,
    list_transform(test, lambda cell: cell_rating(cell))       AS test_rating
FROM parts
ORDER BY split, movie_idx;
