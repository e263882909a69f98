-- users: one row per user; key: user_id. Where the data set has no users file (ml-10m, ml-latest,
-- ml-20m and later) the users are those who rated, with NULL demographics.
-- depends_on: int_users_checked, ratings
-- test: unique(user_id)
-- test: not_null(user_id)
-- test: accepted_values(gender, 'M', 'F')
CREATE OR REPLACE TABLE users AS
SELECT user_id, gender, age, occupation, zip_code
FROM int_users_checked
WHERE reject_reason IS NULL AND getvariable('has_users_file')
UNION ALL
SELECT DISTINCT user_id, NULL::VARCHAR, NULL::INTEGER, NULL::VARCHAR, NULL::VARCHAR
FROM ratings
WHERE NOT getvariable('has_users_file')
ORDER BY user_id;
