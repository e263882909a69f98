-- The latest run's error on held-out ratings, by how many ratings the user has in all.
WITH activity AS (
    SELECT user_id, count(*) AS n_ratings FROM ratings GROUP BY user_id
)
SELECT
    CASE WHEN n_ratings < 50 THEN '1: under 50'
         WHEN n_ratings < 200 THEN '2: 50-199'
         WHEN n_ratings < 500 THEN '3: 200-499'
         ELSE '4: 500 or more' END          AS ratings_per_user,
    count(DISTINCT user_id)                  AS users,
    count(*)                                 AS held_out_ratings,
    round(sqrt(avg(error * error)), 4)       AS rmse
FROM latest_predictions JOIN activity USING (user_id)
GROUP BY ratings_per_user
ORDER BY ratings_per_user;
