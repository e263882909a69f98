-- run_index: the coordinates each training run used: which user each of its model's rows (or, for
-- movie-row models, columns) stands for, and which movie each column does. A model is read only through
-- these, never through the current user_index and movie_index, which a rebuild may renumber.
-- grain: one row per (run, axis, idx); key: (run_id, axis, idx), and (run_id, axis, id).
CREATE TABLE IF NOT EXISTS run_index (
    run_id  VARCHAR,
    axis    VARCHAR,   -- 'user' or 'movie'
    id      INTEGER,   -- user_id or movie_id
    idx     INTEGER    -- the model's 0-based row or column
);
