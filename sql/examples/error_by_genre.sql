-- The latest run's error on held-out ratings, by genre (a movie counts once in each of its genres).
SELECT
    genre,
    count(*)                                   AS held_out_ratings,
    round(sqrt(avg(error * error)), 4)         AS rmse,
    round(avg(abs(error)), 4)                  AS mae
FROM latest_predictions, unnest(genres) AS g(genre)
GROUP BY genre
ORDER BY rmse DESC;
