-- recommendations: the latest run's top-N movies for each user, among movies the user never rated.
-- grain: one row per (user, rank).
CREATE OR REPLACE VIEW recommendations AS
SELECT p.user_id, p.rank, p.movie_id, m.title, m.year, m.genres, p.predicted_rating
FROM predictions AS p
JOIN latest_run AS r USING (run_id)
LEFT JOIN movies AS m USING (movie_id)
WHERE p.kind = 'top_n';
