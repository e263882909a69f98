-- latest_run: the run whose results were written last. grain: one row.
CREATE OR REPLACE VIEW latest_run AS
SELECT * FROM runs ORDER BY finished_at DESC, run_id DESC LIMIT 1;
