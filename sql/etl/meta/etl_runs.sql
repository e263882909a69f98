-- etl_runs: one row per successful ETL run, kept across rebuilds (the history of the warehouse).
-- key: run_id. Inputs are in etl_run_files.
CREATE TABLE IF NOT EXISTS etl_runs (
    run_id        VARCHAR PRIMARY KEY,
    started_at    TIMESTAMP,
    finished_at   TIMESTAMP,
    seconds       DOUBLE,
    input_dir     VARCHAR,
    layout        VARCHAR,
    options       VARCHAR,   -- JSON: max_bad_rows, split_seed, test_fraction, validation_fraction
    n_ratings     BIGINT,
    n_movies      BIGINT,
    n_users       BIGINT,
    n_rejected    BIGINT,
    duckdb_version VARCHAR
);
