-- latest_predictions: the latest run's predictions of held-out ratings, with titles.
-- grain: one row per held-out (user, movie).
CREATE OR REPLACE VIEW latest_predictions AS
SELECT
    p.user_id, p.movie_id, m.title, m.year, m.genres,
    p.predicted_rating, p.actual_rating, p.predicted_rating - p.actual_rating AS error, p.cold_start
FROM predictions AS p
JOIN latest_run AS r USING (run_id)
LEFT JOIN movies AS m USING (movie_id)
WHERE p.kind = 'test';
