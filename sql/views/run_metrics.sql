-- run_metrics: every run's headline figures and audit, newest first (scoring runs: what they scored and
-- skipped, with their training run as parent). grain: one row per run.
-- audit: 'passed', 'failed' (kept out of the serving views), 'failed, published anyway', or NULL for runs
-- written before audits existed. passed: it may be served; serves: the roles it serves now.
CREATE OR REPLACE VIEW run_metrics AS
SELECT
    run_id, coalesce(kind, 'train') AS kind, parent_run_id, finished_at, model, split, dataset_name, device,
    epochs, epochs_run, best_epoch,
    round(test_rmse, 4) AS test_rmse, round(test_mae, 4) AS test_mae,
    round(test_user_rmse, 4) AS test_user_rmse, round(validation_rmse, 4) AS validation_rmse,
    round(baseline_rmse, 4) AS baseline_rmse,
    -- the held-out ranking (ranking_metrics): the top 10s' nDCG and recall on test, nDCG on validation
    round(test_ndcg_10, 4) AS test_ndcg_10, round(test_recall_10, 4) AS test_recall_10,
    test_coverage_10, round(validation_ndcg_10, 4) AS validation_ndcg_10,
    CASE WHEN audit_passed THEN 'passed' WHEN promoted THEN 'failed, published anyway'
         WHEN NOT audit_passed THEN 'failed' END AS audit,
    audit_reason, coalesce(promoted, true) AS passed,
    -- the roles it serves now (served_runs): 'recommendations', 'predictions', both, or NULL
    (SELECT string_agg(role, ', ' ORDER BY role) FROM served_runs AS s WHERE s.run_id = runs.run_id) AS serves,
    n_test, n_cold_start, n_scored_users, n_skipped_users,
    round(train_seconds, 2) AS train_seconds, round(wall_seconds, 2) AS wall_seconds
FROM runs
LEFT JOIN (
    PIVOT (SELECT run_id, part || '_' || replace(metric, '@', '_') AS name, value FROM ranking_metrics
           WHERE metric IN ('ndcg@10', 'recall@10', 'coverage@10'))
    ON name IN ('test_ndcg_10', 'test_recall_10', 'test_coverage_10', 'validation_ndcg_10')
    USING any_value(value) GROUP BY run_id
) USING (run_id)
ORDER BY finished_at DESC;
