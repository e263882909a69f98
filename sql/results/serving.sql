-- serving: which run serves each analysts' role, as the log of decisions (warehouse/serving.py); the newest
-- decision of a role is in force (the served_runs view). grain: one row per decision; key: decision.
--   role    'recommendations' (the recommendations view: judged on validation nDCG@10) or 'predictions'
--           (latest_predictions and latest_run: judged on validation RMSE)
--   reason  why the run took the role: it did at least as well as the run before it, or it was promoted by
--           hand (trainer promote), or no run served the role on this data
CREATE TABLE IF NOT EXISTS serving (
    decision    BIGINT PRIMARY KEY,
    role        VARCHAR,
    run_id      VARCHAR,
    decided_at  TIMESTAMP,
    reason      VARCHAR
);
