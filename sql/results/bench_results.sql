-- bench_results: every run of `trainer bench`, one row per (bench, model, data set, seed); key:
-- (bench_id, model, dataset, seed). Each row is one `trainer run` (run_id) on a warehouse the bench
-- built for that data set and split seed; test scores are from the epoch chosen on validation.
CREATE TABLE IF NOT EXISTS bench_results (
    bench_id        VARCHAR,
    finished_at     TIMESTAMP,
    model           VARCHAR,
    dataset         VARCHAR,    -- ml-100k, ml-1m
    protocol        VARCHAR,    -- e.g. 'u1.base/u1.test', 'random 90/10'
    split           VARCHAR,
    seed            BIGINT,     -- the ETL's split seed and the model's seed
    run_id          VARCHAR,    -- the run, in the runs table of that data set's bench warehouse
    test_rmse       DOUBLE,
    test_mae        DOUBLE,
    validation_rmse DOUBLE,
    best_epoch      INTEGER,
    epochs_run      INTEGER,
    train_seconds   DOUBLE,
    device          VARCHAR,    -- with the number of CPU threads torch used
    config          VARCHAR     -- JSON: the run's resolved TrainConfig
);
-- Added with ranking metrics: the run's held-out ranking (ranking_metrics), NULL for a blend. ALTER keeps the
-- results warehouses of earlier benches writable.
ALTER TABLE bench_results ADD COLUMN IF NOT EXISTS test_ndcg_10 DOUBLE;
ALTER TABLE bench_results ADD COLUMN IF NOT EXISTS test_recall_10 DOUBLE;
ALTER TABLE bench_results ADD COLUMN IF NOT EXISTS test_coverage_10 DOUBLE;
ALTER TABLE bench_results ADD COLUMN IF NOT EXISTS validation_ndcg_10 DOUBLE;
