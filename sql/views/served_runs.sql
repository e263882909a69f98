-- served_runs: the run serving each role now: the newest decision of `serving`, while the run's data is in the
-- warehouse's lineage (dataset_lineage: a rebuild from other data leaves a role empty until a run on it takes it).
-- grain: one row per role; key: role.
CREATE OR REPLACE VIEW served_runs AS
SELECT s.role, s.run_id, s.decided_at, s.reason, r.model, r.split, r.finished_at
FROM (SELECT * FROM serving QUALIFY row_number() OVER (PARTITION BY role ORDER BY decision DESC) = 1) AS s
JOIN runs AS r USING (run_id)
WHERE r.dataset_fingerprint IN (SELECT fingerprint FROM dataset_lineage);
