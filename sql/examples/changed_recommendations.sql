-- Users whose recommendations changed at their latest scoring: each user's newest list from the run serving
-- recommendations or a `trainer score` run of it, against the one before it, with the movies that came into the
-- list and those that left it. A new user, scored for the first time by
-- `trainer score`, has no previous run; users a training run scored first are not listed. Newest first.
-- duckdb -readonly warehouse.duckdb -c ".read sql/examples/changed_recommendations.sql"
WITH served AS (SELECT run_id FROM served_runs WHERE role = 'recommendations'),
scorings AS (
    SELECT p.user_id, p.run_id, any_value(r.finished_at) AS scored_at, any_value(coalesce(r.kind, 'train')) AS kind,
           list(p.movie_id ORDER BY p.rank) AS movies
    FROM predictions AS p
    JOIN runs AS r USING (run_id)
    WHERE p.kind = 'top_n' AND coalesce(r.promoted, true)
      AND (r.run_id IN (SELECT run_id FROM served) OR r.kind = 'score' AND r.parent_run_id IN (SELECT run_id FROM served))
    GROUP BY p.user_id, p.run_id
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY scored_at DESC, run_id DESC) AS recency
    FROM scorings
)
SELECT
    now.user_id,
    now.run_id AS run_id,
    now.scored_at,
    before.run_id AS previous_run_id,
    list_filter(now.movies, lambda m: NOT coalesce(list_contains(before.movies, m), false)) AS movies_in,
    coalesce(list_filter(before.movies, lambda m: NOT list_contains(now.movies, m)), []) AS movies_out
FROM ranked AS now
LEFT JOIN ranked AS before ON before.user_id = now.user_id AND before.recency = 2
WHERE now.recency = 1 AND CASE WHEN before.movies IS NULL THEN now.kind = 'score' ELSE now.movies <> before.movies END
ORDER BY now.scored_at DESC, now.user_id
LIMIT 20;
