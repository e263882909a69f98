-- rejected_rows: input lines set aside, with why. grain: one row per rejected line; key: (file, line_no).
-- Empty unless the ETL ran with --max-bad-rows above 0: by default the first one stops the load.
-- depends_on: int_movies_checked, int_users_checked, int_ratings_checked
-- test: unique(file, line_no)
-- test: not_null(file, line_no, reason)
CREATE OR REPLACE TABLE rejected_rows AS
SELECT getvariable('movies_file') AS file, line_no, raw_line, reject_reason AS reason
FROM int_movies_checked WHERE reject_reason IS NOT NULL
UNION ALL
SELECT getvariable('users_file'), line_no, raw_line, reject_reason
FROM int_users_checked WHERE reject_reason IS NOT NULL
UNION ALL
SELECT getvariable('ratings_file'), line_no, raw_line, reject_reason
FROM int_ratings_checked WHERE reject_reason IS NOT NULL
ORDER BY file, line_no;
