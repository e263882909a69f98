"""The warehouse layer that `etl` and `trainer` share: connecting, the errors, where the SQL lives, the
results schema and views, and writing a new version of the warehouse file beside it and swapping it in."""
