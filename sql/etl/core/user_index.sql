-- user_index: the trainer's dense 0-based user coordinates, in user_id order, so the same input
-- always gives the same indexes. grain: one row per user who rated; key: user_id (and user_idx).
-- depends_on: ratings
-- test: unique(user_id)
-- test: unique(user_idx)
-- test: not_null(user_id, user_idx)
-- test: relationships(user_id, users.user_id)
CREATE OR REPLACE TABLE user_index AS
SELECT user_id, (row_number() OVER (ORDER BY user_id) - 1)::INTEGER AS user_idx
FROM (SELECT DISTINCT user_id FROM ratings)
ORDER BY user_idx;
