-- run_metrics: every run's headline figures, newest first. grain: one row per run.
CREATE OR REPLACE VIEW run_metrics AS
SELECT
    run_id, finished_at, model, split, dataset_name, device, epochs, epochs_run, best_epoch,
    round(test_rmse, 4) AS test_rmse, round(test_mae, 4) AS test_mae,
    round(test_user_rmse, 4) AS test_user_rmse, round(validation_rmse, 4) AS validation_rmse,
    n_test, n_cold_start, round(train_seconds, 2) AS train_seconds, round(wall_seconds, 2) AS wall_seconds
FROM runs
ORDER BY finished_at DESC;
