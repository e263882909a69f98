-- How good a run's recommendation lists are, recomputed from its held-out lists (predictions of kind
-- 'test_top_n') and the split's test ratings: it agrees with ranking_metrics (docs/ranking.md).
-- Relevant: a test rating of 4 stars or more; users: those with one. Parameter: $run_id.
-- duckdb -readonly warehouse.duckdb -c "SET VARIABLE run_id = (SELECT run_id FROM latest_run)" -c ".read sql/examples/ranking_quality.sql"
WITH run AS (SELECT run_id, split FROM runs WHERE run_id = getvariable('run_id')),
relevant AS (
    SELECT s.user_id, s.movie_id FROM split_ratings AS s JOIN run USING (split)
    WHERE s.part = 'test' AND s.rating >= 4
),
users AS (SELECT user_id, count(*) AS n_relevant FROM relevant GROUP BY user_id),
lists AS (
    SELECT p.user_id, p.movie_id, p.rank, r.movie_id IS NOT NULL AS hit
    FROM predictions AS p JOIN run USING (run_id) LEFT JOIN relevant AS r USING (user_id, movie_id)
    WHERE p.kind = 'test_top_n'
),
per_user AS (
    SELECT
        u.user_id, u.n_relevant,
        count(*) FILTER (WHERE l.hit AND l.rank <= 10) AS hits_10,
        count(*) FILTER (WHERE l.hit AND l.rank <= 20) AS hits_20,
        coalesce(sum(1 / log2(l.rank + 1)) FILTER (WHERE l.hit AND l.rank <= 10), 0) AS dcg_10,
        coalesce(sum(1 / log2(l.rank + 1)) FILTER (WHERE l.hit AND l.rank <= 20), 0) AS dcg_20,
        coalesce(max(1 / l.rank) FILTER (WHERE l.hit AND l.rank <= 10), 0) AS reciprocal_rank
    FROM users AS u LEFT JOIN lists AS l USING (user_id)
    GROUP BY ALL
),
ideal AS (  -- the best DCG a list of k can have for n relevant movies: min(n, k) hits at the top
    SELECT i AS n, sum(1 / log2(i + 1)) OVER (ORDER BY i) AS dcg FROM range(1, 101) AS t(i)
),
popularity AS (  -- each movie's percentile by its ratings in train and validation (0 for none)
    SELECT m.movie_id, 100 * percent_rank() OVER (ORDER BY count(s.movie_id)) AS percentile
    FROM movie_index AS m
    LEFT JOIN (SELECT s.movie_id FROM split_ratings AS s JOIN run USING (split) WHERE s.part <> 'test') AS s
        USING (movie_id)
    GROUP BY m.movie_id
),
top10 AS (SELECT movie_id FROM lists WHERE rank <= 10)
SELECT
    avg(hits_10 / 10) AS "precision@10",
    avg(hits_10 / least(n_relevant, 10)) AS "recall@10",
    avg(dcg_10 / i10.dcg) AS "ndcg@10",
    avg(hits_20 / 20) AS "precision@20",
    avg(hits_20 / least(n_relevant, 20)) AS "recall@20",
    avg(dcg_20 / i20.dcg) AS "ndcg@20",
    avg(reciprocal_rank) AS "mrr@10",
    (SELECT count(DISTINCT movie_id) FROM top10) AS "coverage@10",
    (SELECT avg(percentile) FROM top10 JOIN popularity USING (movie_id)) AS "popularity@10",
    count(*) AS users
FROM per_user
JOIN ideal AS i10 ON i10.n = least(n_relevant, 10)
JOIN ideal AS i20 ON i20.n = least(n_relevant, 20);
