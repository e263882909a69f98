-- bench_summary: each (bench, model, data set): mean and sample standard deviation over seeds.
CREATE OR REPLACE VIEW bench_summary AS
SELECT
    bench_id, model, dataset, protocol, count(*) AS n_seeds,
    avg(test_rmse) AS rmse, stddev_samp(test_rmse) AS rmse_std,
    avg(test_mae) AS mae, stddev_samp(test_mae) AS mae_std,
    avg(train_seconds) AS train_seconds, any_value(device) AS device, max(finished_at) AS finished_at
FROM bench_results
GROUP BY ALL
ORDER BY dataset, rmse;
