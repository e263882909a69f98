-- splits: the catalogue of splits the trainer can be pointed at (trainer run --split NAME).
-- grain: one row per split; key: split. Counted in one pass over rating_splits, a column per split (five
-- times faster than grouping its long form, split_ratings); a split the data set lacks counts nothing.
-- depends_on: rating_splits
-- test: unique(split)
-- test: not_null(split)
-- test: accepted_values(split, 'random', 'temporal', 'u1', 'u2', 'u3', 'u4', 'u5')
CREATE OR REPLACE TEMP MACRO part_counts(split, part) AS
    {'split': split, 'n_train': count_if(part = 'train')::BIGINT,
     'n_validation': count_if(part = 'validation')::BIGINT,
     'n_test': count_if(part = 'test')::BIGINT};

CREATE OR REPLACE TABLE splits AS
WITH counts AS (
    SELECT unnest([
        part_counts('random', random), part_counts('temporal', temporal), part_counts('u1', u1),
        part_counts('u2', u2), part_counts('u3', u3), part_counts('u4', u4), part_counts('u5', u5)
    ], recursive := true)
    FROM rating_splits
)
SELECT
    split,
    CASE
        WHEN split = 'random' THEN format('seeded random {}% test (seed {})',
                                          round(getvariable('test_fraction') * 100, 1), getvariable('split_seed'))
        WHEN split = 'temporal' THEN format('each user''s latest {}% of ratings are test',
                                            round(getvariable('test_fraction') * 100, 1))
        ELSE format('ml-100k official fold: {}.base / {}.test', split, split)
    END AS description,
    -- the settings that drew this split's parts: a run remembers them (runs.split_drawn_with), so that a rebuild
    -- drawing them anew (another --split-seed or fraction) is not taken for the split a run chose its settings on
    CASE
        WHEN split IN ('random', 'temporal') THEN format('split seed {}, test fraction {}, validation fraction {}',
                                                         getvariable('split_seed'), getvariable('test_fraction'),
                                                         getvariable('validation_fraction'))
        ELSE format('split seed {}, validation fraction {}', getvariable('split_seed'),
                    getvariable('validation_fraction'))
    END AS drawn_with,
    n_train,
    n_validation,
    n_test
FROM counts
WHERE n_train + n_validation + n_test > 0
ORDER BY split;
