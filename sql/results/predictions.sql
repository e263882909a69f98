-- predictions: what each run predicted, with MovieLens ids. grain: one row per (run, kind, user, movie).
--   kind 'test'    every held-out test rating: predicted_rating next to actual_rating
--   kind 'validation'  every rating of the validation slice (held out from training, used for model
--                  selection), predicted by the selected model: what a blend of runs is fitted on
--   kind 'top_n'   each user's N best movies among those the user never rated; rank 1 is the best
--                  (a `trainer score` run writes only these)
--   kind 'test_top_n'  the held-out ranking the run's ranking metrics are computed from (trainer/ranking.py):
--                  for every user with a test rating of 4 stars or more, the LIST_LENGTH (100) best-scored
--                  movies the user had not rated in train or validation, with their rank
--   kind 'validation_top_n'  the same for the validation slice (candidates: movies unrated in train)
--   kind 'matrix'  every (user, movie) pair, only when the run asked for --full-matrix
CREATE TABLE IF NOT EXISTS predictions (
    run_id            VARCHAR,
    kind              VARCHAR,
    user_id           INTEGER,
    movie_id          INTEGER,
    rank              INTEGER,  -- top_n only
    predicted_rating  FLOAT,
    actual_rating     FLOAT,    -- test and validation only
    cold_start        BOOLEAN   -- predicted by the fallback: user or movie had no training rating
);
-- Added with ranking metrics: the model's score that ranks a list (for a rating model its unclipped predicted
-- rating; predicted_rating holds the rating as served). ALTER keeps warehouses that hold earlier runs writable.
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS score FLOAT;
