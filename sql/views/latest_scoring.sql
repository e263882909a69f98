-- latest_scoring: which run scored each user last, and when: the run serving recommendations (served_runs), or a
-- newer `trainer score` run of its model for the users that run rescored. recommendations shows that run's lists.
-- grain: one row per user; key: user_id.
CREATE OR REPLACE VIEW latest_scoring AS
WITH served AS (SELECT run_id FROM served_runs WHERE role = 'recommendations'),
scorings AS (
    SELECT p.user_id, r.run_id, coalesce(r.kind, 'train') AS kind, r.parent_run_id, r.finished_at
    FROM predictions AS p
    JOIN runs AS r USING (run_id)
    -- rank 1: one row per (run, user) that has recommendations
    WHERE p.kind = 'top_n' AND p.rank = 1 AND coalesce(r.promoted, true)
      AND (r.run_id IN (SELECT run_id FROM served)
           OR coalesce(r.kind, 'train') = 'score' AND r.parent_run_id IN (SELECT run_id FROM served))
)
SELECT user_id, run_id, kind, parent_run_id, finished_at AS scored_at
FROM scorings
QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY finished_at DESC, run_id DESC) = 1;
