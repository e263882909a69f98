-- latest_run: the newest training run that may be served: its audit passed, or it was published anyway
-- (runs written before audits existed count as served). A run that failed its audit never shows here, so
-- a diverged or weak run cannot replace good results. Scoring runs (kind 'score') have no test figures:
-- they show in latest_scoring instead. grain: one row.
CREATE OR REPLACE VIEW latest_run AS
SELECT * FROM runs
WHERE coalesce(promoted, true) AND coalesce(kind, 'train') <> 'score'
ORDER BY finished_at DESC, run_id DESC LIMIT 1;
