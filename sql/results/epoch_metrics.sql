-- epoch_metrics: the learning curve of each run. grain: one row per (run, epoch); key: (run_id, epoch).
CREATE TABLE IF NOT EXISTS epoch_metrics (
    run_id           VARCHAR,
    epoch            INTEGER,   -- 1-based
    train_rmse       DOUBLE,    -- over the training ratings seen during the epoch
    validation_rmse  DOUBLE,    -- NULL on epochs not scored (see eval_every) or without validation
    seconds          DOUBLE
);
