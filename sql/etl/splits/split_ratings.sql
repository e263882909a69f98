-- split_ratings: rating_splits in long form, the shape to filter on: WHERE split = 'random' AND part = 'test'.
-- grain: one row per (split, rating); key: (split, user_id, movie_id). A view: it costs nothing to build,
-- and a scan of one split reads rating_splits once. Splits a data set does not have (NULL) yield no rows.
-- depends_on: rating_splits
CREATE OR REPLACE VIEW split_ratings AS
SELECT split, user_id, movie_id, user_idx, movie_idx, rating, part
FROM (
    UNPIVOT rating_splits
    ON random, temporal, u1, u2, u3, u4, u5
    INTO NAME split VALUE part
);
