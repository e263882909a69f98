-- matrix_rows(row_key, column_key): rating_splits as sparse rows, one per (split, row), for either matrix:
-- (user_idx, movie_idx) gives the user rows, (movie_idx, user_idx) the movie rows. Each row's ratings are
-- packed into cells and sorted once for all splits; each split then keeps its own parts of that one list.
-- Per part, a pair of aligned lists (column indexes ascending, their ratings): empty when the part is.
-- Created after the splits: a table macro names its tables when it is created. (The parameters are
-- named apart from the columns: a macro substitutes its arguments wherever a parameter's name appears.)
-- depends_on: rating_splits, splits, split_parts
CREATE OR REPLACE TEMP MACRO matrix_rows(row_key, column_key) AS TABLE
WITH row_cells AS (
    SELECT row_key AS row_idx, list_sort(list(pack_cell(column_key, rating, random, temporal, u1, u2, u3, u4, u5))) AS cells
    FROM rating_splits
    GROUP BY row_key
),
split_cells AS (
    SELECT s.split, c.row_idx, c.cells, split_slot(s.split) AS slot
    FROM row_cells AS c
    CROSS JOIN splits AS s
),
parts AS (
    SELECT
        split,
        row_idx,
        list_filter(cells, lambda cell: cell_part(cell, slot) = 0) AS train,
        list_filter(cells, lambda cell: cell_part(cell, slot) = 1) AS validation,
        list_filter(cells, lambda cell: cell_part(cell, slot) = 2) AS test
    FROM split_cells
)
SELECT
    split,
    row_idx,
    list_transform(train, lambda cell: cell_column(cell))      AS train_columns,
    list_transform(train, lambda cell: cell_rating(cell))      AS train_rating,
    list_transform(validation, lambda cell: cell_column(cell)) AS validation_columns,
    list_transform(validation, lambda cell: cell_rating(cell)) AS validation_rating,
    list_transform(test, lambda cell: cell_column(cell))       AS test_columns,
    list_transform(test, lambda cell: cell_rating(cell))       AS test_rating
FROM parts;
