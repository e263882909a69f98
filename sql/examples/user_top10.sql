-- A user's ten best recommendations from the latest run, with titles. Parameter: $user_id.
-- duckdb -readonly warehouse.duckdb -c "SET VARIABLE user_id = 1" -c ".read sql/examples/user_top10.sql"
SELECT rank, title, year, array_to_string(genres, ', ') AS genres, round(predicted_rating, 2) AS predicted
FROM recommendations
WHERE user_id = getvariable('user_id') AND rank <= 10
ORDER BY rank;
