-- ranking_metrics: how good each run's recommendation lists are (trainer/ranking.py, docs/ranking.md).
-- grain: one row per (run, part, metric); key: (run_id, part, metric).
--   part    'validation' (settings and epochs are chosen on it) or 'test' (the figures; read once)
--   metric  precision@10, recall@10, ndcg@10, precision@20, recall@20, ndcg@20, mrr@10 (means over the users
--           with a held-out rating of 4 stars or more), coverage@10 (distinct movies in their top 10s),
--           popularity@10 (the mean popularity percentile of those movies), users (how many were evaluated)
-- sql/examples/ranking_quality.sql recomputes them from the run's predictions of kind 'test_top_n'.
CREATE TABLE IF NOT EXISTS ranking_metrics (
    run_id  VARCHAR,
    part    VARCHAR,
    metric  VARCHAR,
    value   DOUBLE
);
