-- stg_users (layouts without a users file: ml-10m, ml-latest, ml-20m/25m/32m): empty, same columns,
-- so the models downstream are the same for every layout.
-- depends_on:
CREATE OR REPLACE TEMP TABLE stg_users (
    line_no BIGINT, raw_line VARCHAR, well_formed BOOLEAN, shape_error VARCHAR,
    user_id_text VARCHAR, user_id INTEGER, gender VARCHAR, age INTEGER, occupation VARCHAR, occupation_text VARCHAR, zip_code VARCHAR
);
