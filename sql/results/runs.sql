-- runs: one row per run that wrote its results; key: run_id. Written by `trainer run` (or `trainer publish`)
-- together with the run's epoch_metrics, predictions and run_index, or by `trainer score`, into a new version
-- of the warehouse that is swapped in whole (warehouse/swap.py): readers see all of a run or none of it.
CREATE TABLE IF NOT EXISTS runs (
    run_id               VARCHAR PRIMARY KEY,
    started_at           TIMESTAMP,
    finished_at          TIMESTAMP,
    model                VARCHAR,
    split                VARCHAR,
    seed                 BIGINT,
    dataset_name         VARCHAR,
    dataset_fingerprint  VARCHAR,   -- dataset.fingerprint of the warehouse it trained on
    device               VARCHAR,
    epochs               INTEGER,   -- the most the run could train (config.epochs)
    train_seconds        DOUBLE,    -- the training loop alone
    wall_seconds         DOUBLE,    -- the whole run: reading, training, evaluating, predicting
    validation_rmse      DOUBLE,    -- the scored epoch's (see best_epoch); NULL when trained with --no-validation
    test_rmse            DOUBLE,    -- global RMSE over every held-out test rating
    test_mae             DOUBLE,
    test_user_rmse       DOUBLE,    -- the original notebook's metric: mean over users of per-user RMSE
    n_test               BIGINT,
    n_cold_start         BIGINT,    -- test ratings whose user or movie had no training rating
    n_parameters         BIGINT,
    torch_version        VARCHAR,
    run_dir              VARCHAR,   -- where its checkpoint and staged results are
    config               VARCHAR    -- JSON: the full resolved TrainConfig
);
-- Added with model selection; ALTER keeps warehouses that hold earlier runs writable.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS epochs_run INTEGER;   -- epochs trained (fewer when stopped early)
ALTER TABLE runs ADD COLUMN IF NOT EXISTS best_epoch INTEGER;   -- the epoch whose weights were tested, chosen on validation
-- The audit before publishing (warehouse/results.py): the runs whose audit failed stay out of the serving
-- views unless published anyway. audit_rmse is the run's RMSE on audit_slice ('validation', or 'train' for
-- a run without a validation slice), baseline_rmse that of predicting the training ratings' mean there.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS audit_slice VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS audit_rmse DOUBLE;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS baseline_rmse DOUBLE;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS audit_passed BOOLEAN;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS audit_reason VARCHAR;  -- why it failed; NULL when it passed
ALTER TABLE runs ADD COLUMN IF NOT EXISTS promoted BOOLEAN;      -- served: passed, or published anyway (NULL: before audits)
-- Scoring (`trainer score`): a run of kind 'score' predicts with the weights of its parent, a training run,
-- from the ratings in the warehouse when it ran; it trains nothing and has no test figures.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS kind VARCHAR;            -- 'train', 'score' or 'blend' (NULL: a training run)
ALTER TABLE runs ADD COLUMN IF NOT EXISTS parent_run_id VARCHAR;   -- score: the training run whose model it used
ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_scored_users BIGINT;   -- score: users it predicted for
ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_skipped_users BIGINT;  -- score: users asked for that the model cannot score
ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_unseen_movies BIGINT;  -- score: movies rated by those users that the model never saw
ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_unseen_ratings BIGINT; -- score: their ratings, left out of the model's inputs
-- Blends (`trainer blend`): a run of kind 'blend' combines training runs' predictions with weights fitted on
-- their validation predictions; members holds them as JSON: {"runs": [...], "weights": [...], "intercept": b}.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS members VARCHAR;
-- The SHA-256 of the training run's checkpoint (run_dir/checkpoint.pt) when it finished: whatever loads the run's
-- model (trainer score, blend, refit, --init-from) refuses a checkpoint that is not this one. NULL: a run published
-- before it was recorded, or a scoring run or blend, which have none.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS checkpoint_sha256 VARCHAR;
-- A model that only ranks (ease, mult-vae, popular) predicts no ratings: its top-N rows show the ratings predicted by
-- the run that served predictions when its lists were made (served_runs), named here. NULL: no such run then, a model
-- that predicts ratings itself, or a run published before it was recorded.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS ratings_from_run VARCHAR;
-- The settings that drew the run's split (splits.drawn_with) when it trained: a rebuild with another --split-seed or
-- fraction draws other parts under the same split name. A refit, a blend and the serving roles compare runs only on
-- the same draw. NULL: a run published before it was recorded (or trained from Parquet features without it).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS split_drawn_with VARCHAR;
