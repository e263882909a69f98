-- recommendations: each user's top-N movies, among movies the user had not rated, from the run serving
-- recommendations (served_runs), or from a newer `trainer score` run of its model for the users it rescored
-- (latest_scoring). score ranks the list; predicted_rating is the star rating the run predicts, or, for a model built
-- for ranking (ease, mult-vae), which predicts none, the rating predicted by the run that served predictions when
-- the list was made (runs.ratings_from_run; NULL when none did). grain: one row per (user, rank).
CREATE OR REPLACE VIEW recommendations AS
SELECT p.user_id, p.rank, p.movie_id, m.title, m.year, m.genres, p.predicted_rating, p.score, s.run_id, s.scored_at
FROM predictions AS p
JOIN latest_scoring AS s USING (run_id, user_id)
LEFT JOIN movies AS m USING (movie_id)
WHERE p.kind = 'top_n';
