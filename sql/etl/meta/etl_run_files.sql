-- etl_run_files: the input files of each ETL run. grain: one row per (run, file); key: (run_id, role).
CREATE TABLE IF NOT EXISTS etl_run_files (
    run_id    VARCHAR,
    role      VARCHAR,   -- ratings | movies | users | genres
    file      VARCHAR,
    bytes     BIGINT,
    sha256    VARCHAR,
    encoding  VARCHAR,
    newline   VARCHAR,
    n_rejected BIGINT
);
