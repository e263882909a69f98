-- splits: the catalogue of splits the trainer can be pointed at (trainer run --split NAME).
-- grain: one row per split; key: split.
CREATE OR REPLACE TABLE splits AS
SELECT
    split,
    CASE
        WHEN split = 'random' THEN format('seeded random {}% test (seed {})',
                                          round(getvariable('test_fraction') * 100, 1), getvariable('split_seed'))
        WHEN split = 'temporal' THEN format('each user''s latest {}% of ratings are test',
                                            round(getvariable('test_fraction') * 100, 1))
        ELSE format('ml-100k official fold: {}.base / {}.test', split, split)
    END AS description,
    count(*) FILTER (WHERE part = 'train')      AS n_train,
    count(*) FILTER (WHERE part = 'validation') AS n_validation,
    count(*) FILTER (WHERE part = 'test')       AS n_test
FROM split_ratings
GROUP BY split
ORDER BY split;
