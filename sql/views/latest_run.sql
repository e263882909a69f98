-- latest_run: the run serving predicted ratings (served_runs' 'predictions' role): it passed its audit (or was
-- published anyway), belongs to the data in the warehouse now, and did at least as well on validation RMSE as the
-- run it replaced, or was promoted by hand. A run that failed its audit never shows here. grain: one row.
CREATE OR REPLACE VIEW latest_run AS
SELECT runs.* FROM runs JOIN served_runs USING (run_id) WHERE served_runs.role = 'predictions';
