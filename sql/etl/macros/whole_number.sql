-- whole_number(text): the text when it is a whole number written in digits only, else NULL.
-- Staging casts ids, ages, codes and timestamps through it. DuckDB's own cast from text to INTEGER is lenient:
-- it rounds '1.7' to 2 and reads '1e3', '0x10', '1_000' and ' 3 '. An id written so is a bad value to report,
-- not a number to guess at (found by tests/etl/test_fuzz.py).
-- depends_on:
CREATE OR REPLACE TEMP MACRO whole_number(text) AS CASE WHEN regexp_full_match(text, '[0-9]+') THEN text END;
