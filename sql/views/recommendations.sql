-- recommendations: each user's top-N movies, among movies the user had not rated, from the run that
-- scored the user last (latest_scoring: the newest training run, or a newer `trainer score` run).
-- grain: one row per (user, rank).
CREATE OR REPLACE VIEW recommendations AS
SELECT p.user_id, p.rank, p.movie_id, m.title, m.year, m.genres, p.predicted_rating, s.run_id, s.scored_at
FROM predictions AS p
JOIN latest_scoring AS s USING (run_id, user_id)
LEFT JOIN movies AS m USING (movie_id)
WHERE p.kind = 'top_n';
