-- latest_run: the newest run that may be served: its audit passed, or it was published anyway (runs
-- written before audits existed count as served). A run that failed its audit never shows here, so
-- a diverged or weak run cannot replace good results. grain: one row.
CREATE OR REPLACE VIEW latest_run AS
SELECT * FROM runs WHERE coalesce(promoted, true) ORDER BY finished_at DESC, run_id DESC LIMIT 1;
