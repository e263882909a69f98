-- latest_scoring: which run scored each user last, and when: the newest served run (a training run, or a
-- `trainer score` run of some users) that wrote recommendations for the user. recommendations shows that
-- run's. grain: one row per user; key: user_id.
CREATE OR REPLACE VIEW latest_scoring AS
WITH scorings AS (
    SELECT p.user_id, r.run_id, coalesce(r.kind, 'train') AS kind, r.parent_run_id, r.finished_at
    FROM predictions AS p
    JOIN runs AS r USING (run_id)
    -- rank 1: one row per (run, user) that has recommendations
    WHERE p.kind = 'top_n' AND p.rank = 1 AND coalesce(r.promoted, true)
)
SELECT user_id, run_id, kind, parent_run_id, finished_at AS scored_at
FROM scorings
QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY finished_at DESC, run_id DESC) = 1;
