"""ETL: loads MovieLens files into a DuckDB warehouse with the SQL models in ``sql/``."""
