-- Movies the latest run rates far above their average rating (on held-out ratings, movies with at
-- least $min_ratings of them, 10 unless set): where the model's taste and the crowd's disagree most.
SELECT
    p.title,
    count(*)                                   AS held_out_ratings,
    round(avg(p.predicted_rating), 2)          AS predicted,
    round(avg(r.average), 2)                   AS average_rating,
    round(avg(p.predicted_rating) - avg(r.average), 2) AS above_average
FROM latest_predictions AS p
JOIN (SELECT movie_id, avg(rating) AS average FROM ratings GROUP BY movie_id) AS r USING (movie_id)
GROUP BY p.title
HAVING count(*) >= coalesce(getvariable('min_ratings'), 10)
ORDER BY above_average DESC
LIMIT 20;
