-- A user's ten best recommendations from the run serving them, with titles: the score that ranks them, and the
-- predicted rating where that run predicts ratings (a model built for ranking, such as ease, predicts none).
-- Parameter: $user_id.
-- duckdb -readonly warehouse.duckdb -c "SET VARIABLE user_id = 1" -c ".read sql/examples/user_top10.sql"
SELECT rank, title, year, array_to_string(genres, ', ') AS genres, round(score, 3) AS score,
       round(predicted_rating, 2) AS predicted
FROM recommendations
WHERE user_id = getvariable('user_id') AND rank <= 10
ORDER BY rank;
