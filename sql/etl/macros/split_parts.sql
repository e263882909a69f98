-- Macros shared by the split and matrix models.
-- depends_on:

-- rating_part: the part of a split a rating is in. An ENUM reads as text ('test') and is stored in a byte:
-- writing rating_splits' part columns as text took 15 % longer on ml-1m. (IF NOT EXISTS: the macro files run
-- again on each connection that builds a matrix.)
CREATE TYPE IF NOT EXISTS rating_part AS ENUM ('train', 'validation', 'test');

-- part_of(is_test, user_id, movie_id, split): the part a rating takes in a split. Test when the split says
-- so; otherwise validation with probability validation_fraction, by a seeded hash of (user, movie, split),
-- so the slice is reproducible and differs between splits; otherwise train.
CREATE OR REPLACE TEMP MACRO part_of(is_test, user_id, movie_id, split) AS
    CASE
        WHEN is_test THEN 'test'
        WHEN hash(user_id, movie_id, split, getvariable('split_seed')) % 1000000
             < getvariable('validation_fraction') * 1000000 THEN 'validation'
        ELSE 'train'
    END::rating_part;

-- A matrix cell packed into one BIGINT, so that each matrix row is built by sorting one list of plain
-- integers instead of six lists each ordered by index (2x faster on ml-1m, the slowest step of the ETL):
--   bits 24..62  the column index (movie_idx in a user row, user_idx in a movie row)
--   bits 16..23  the rating in half stars (every MovieLens scale moves in steps of 0.5 or 1)
--   bits  0..13  two bits per split, in split_slot order: 0 train, 1 validation, 2 test, 3 not in the split
-- Sorting the integers sorts by column index, which is what a CSR row needs.
CREATE OR REPLACE TEMP MACRO split_slot(split) AS
    list_position(['random', 'temporal', 'u1', 'u2', 'u3', 'u4', 'u5'], split) - 1;

CREATE OR REPLACE TEMP MACRO part_code(part) AS coalesce(enum_code(part), 3)::BIGINT;

CREATE OR REPLACE TEMP MACRO pack_cell(column_idx, rating, random, temporal, u1, u2, u3, u4, u5) AS
    (column_idx::BIGINT << 24) | ((rating * 2)::BIGINT << 16)
    | part_code(random) | (part_code(temporal) << 2)
    | (part_code(u1) << 4) | (part_code(u2) << 6) | (part_code(u3) << 8) | (part_code(u4) << 10) | (part_code(u5) << 12);

CREATE OR REPLACE TEMP MACRO cell_column(cell) AS (cell >> 24)::INTEGER;

CREATE OR REPLACE TEMP MACRO cell_rating(cell) AS (((cell >> 16) & 255) / 2)::FLOAT;

CREATE OR REPLACE TEMP MACRO cell_part(cell, slot) AS (cell >> (2 * slot)) & 3;
