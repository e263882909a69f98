-- int_users_checked: each staged user line with the reason it is rejected (NULL when it is good).
-- grain: one row per staged line, header excluded; key: line_no.
-- depends_on: stg_users
CREATE OR REPLACE TEMP TABLE int_users_checked AS
WITH staged AS (
    SELECT
        *,
        line_no = 1 AND user_id IS NULL AND regexp_matches(user_id_text, '^[A-Za-z_ ]+$') AS is_header
    FROM stg_users
),
row_checks AS (
    SELECT
        *,
        CASE
            WHEN NOT well_formed THEN shape_error
            WHEN user_id IS NULL OR user_id <= 0
                THEN format('user id ''{}'' is not a whole number from 1 to 2147483647', user_id_text)
            WHEN gender NOT IN ('M', 'F') THEN format('gender ''{}'' is not M or F', gender)
            WHEN age IS NULL OR age < 0 OR age > 150 THEN format('age is not a whole number from 0 to 150')
            WHEN occupation IS NULL THEN format('occupation ''{}'' is not a known code', occupation_text)
        END AS row_reason
    FROM staged
    WHERE NOT is_header
)
SELECT
    line_no,
    raw_line,
    user_id,
    gender,
    age,
    occupation,
    zip_code,
    coalesce(
        row_reason,
        CASE WHEN row_number() OVER (PARTITION BY user_id, row_reason IS NULL ORDER BY line_no) > 1
             THEN format('duplicate user id {} (first on line {})', user_id,
                         min(line_no) OVER (PARTITION BY user_id, row_reason IS NULL))
        END
    ) AS reject_reason
FROM row_checks;
