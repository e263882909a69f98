-- dataset_lineage: the data this warehouse's runs may be served from: the fingerprint of the files loaded now,
-- and those of earlier builds whose movies are all still here under the same titles (new ratings, users or
-- movies appended), which warehouse/carry_over.py adds. A run trained on other data (another data set, or
-- movies renumbered or retitled) is kept in runs but served no more (the served_runs view).
-- grain: one row per fingerprint; key: fingerprint.
-- depends_on: dataset
-- test: unique(fingerprint)
-- test: not_null(fingerprint)
CREATE OR REPLACE TABLE dataset_lineage AS
SELECT fingerprint FROM dataset;
