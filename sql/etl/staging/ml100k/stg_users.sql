-- stg_users (ml-100k layout): u.user, "user id|age|gender|occupation|zip code"; age in years.
-- grain: one row per non-blank line; key: line_no.
-- depends_on: read_lines, whole_number
CREATE OR REPLACE TEMP VIEW stg_users AS
WITH lines AS (
    SELECT line_no, line AS raw_line, string_split(line, '|') AS fields
    FROM read_lines(getvariable('users_path'), getvariable('users_newline'), getvariable('users_encoding'))
)
SELECT
    line_no,
    raw_line,
    len(fields) = 5                     AS well_formed,
    format('expected 5 fields separated by ''|'', found {}', len(fields)) AS shape_error,
    fields[1]                           AS user_id_text,
    TRY_CAST(whole_number(fields[1]) AS INTEGER)      AS user_id,
    fields[3]                           AS gender,
    TRY_CAST(whole_number(fields[2]) AS INTEGER)      AS age,
    fields[4]                           AS occupation,
    fields[4]                           AS occupation_text,
    fields[5]                           AS zip_code
FROM lines;
