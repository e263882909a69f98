-- bench_summary: each (bench, model, data set): mean and sample standard deviation over seeds, of the test
-- RMSE and MAE (rating models) and of the top 10s' nDCG (with their recall and coverage).
CREATE OR REPLACE VIEW bench_summary AS
SELECT
    bench_id, model, dataset, protocol, count(*) AS n_seeds,
    avg(test_rmse) AS rmse, stddev_samp(test_rmse) AS rmse_std,
    avg(test_mae) AS mae, stddev_samp(test_mae) AS mae_std,
    avg(test_ndcg_10) AS ndcg_10, stddev_samp(test_ndcg_10) AS ndcg_10_std, avg(test_recall_10) AS recall_10,
    avg(test_coverage_10) AS coverage_10,
    avg(train_seconds) AS train_seconds, any_value(device) AS device, max(finished_at) AS finished_at
FROM bench_results
GROUP BY ALL
ORDER BY dataset, rmse NULLS LAST, ndcg_10 DESC;
