-- The runs whose audit failed, and why: they are recorded but not served (unless published anyway).
SELECT run_id, finished_at, model, split, audit, audit_reason, validation_rmse, baseline_rmse, test_rmse
FROM run_metrics
WHERE audit LIKE 'failed%'
ORDER BY finished_at DESC;
