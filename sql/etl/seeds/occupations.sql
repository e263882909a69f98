-- occupations: the ml-1m README's occupation codes. grain: one row per code; key: occupation_code.
-- depends_on:
-- test: unique(occupation_code)
-- test: not_null(occupation_code, occupation)
CREATE OR REPLACE TEMP TABLE occupations AS
SELECT * FROM (VALUES
    (0, 'other'), (1, 'academic/educator'), (2, 'artist'), (3, 'clerical/admin'),
    (4, 'college/grad student'), (5, 'customer service'), (6, 'doctor/health care'),
    (7, 'executive/managerial'), (8, 'farmer'), (9, 'homemaker'), (10, 'K-12 student'),
    (11, 'lawyer'), (12, 'programmer'), (13, 'retired'), (14, 'sales/marketing'),
    (15, 'scientist'), (16, 'self-employed'), (17, 'technician/engineer'),
    (18, 'tradesman/craftsman'), (19, 'unemployed'), (20, 'writer')
) AS t(occupation_code, occupation);
