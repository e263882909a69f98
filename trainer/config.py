"""The one configuration of a training run: every default in one dataclass, presets by model name.

A run's configuration is resolved in this order, each layer overriding the one before:
dataclass defaults < the model's preset < a TOML config file < command-line flags.
The resolved configuration is stored in every checkpoint and in the run's row of the `runs` table.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from trainer.errors import TrainerError


@dataclass(frozen=True)
class TrainConfig:
    # what to train on
    warehouse: str = "warehouse.duckdb"
    # read the matrices from this folder of Parquet files (written by `etl export`) instead of the
    # warehouse; results still go into the warehouse when there is one, else stay staged in the run folder
    features: str | None = None
    split: str = "random"
    # hold the split's validation slice out of training, to report and select on; off trains on the
    # whole training side (train + validation), e.g. all of ml-100k's u1.base
    validation: bool = True
    # the model (see trainer/models.py): the seed design is n_movies -> 20 -> 10 -> 20 -> n_movies,
    # sigmoid hidden layers; for "mf", hidden = (number of factors,)
    model: str = "autoencoder"
    hidden: tuple[int, ...] = (20, 10, 20)
    activation: str = "sigmoid"  # of the autoencoders' hidden layers
    dropout: float = 0.0  # on the autoencoders' code (the middle hidden layer), while training
    # DeepRecommender's dense re-feeding: after each step, the (dense) reconstruction is trained on
    # again as an example of its own, every entry a target
    refeed: bool = False
    # optimisation. The notebook's RMSprop(lr=0.01, weight_decay=0.5) only survived because it never
    # zeroed its gradients; with correct batched gradients weight decay 0.5 collapses every output to
    # the mean. Tuned on the validation slices of ml-100k u1 and ml-1m random, with patience and
    # lr_drops below: see README "Tuning the seed model".
    optimizer: str = "rmsprop"
    learning_rate: float = 0.01
    weight_decay: float = 1e-5
    epochs: int = 200
    batch_size: int = 256  # rows (users, or movies for item-based models) per step
    # L2 penalty on the model's weights (models.py says which), as the lambda of a sum-of-squared-errors
    # objective, sum (r - r_hat)^2 + l2/2 * sum ||W||^2, I-AutoRec's units. The loop averages the error
    # over the batch's ratings, so it adds l2/2 * ||W||^2 / (number of training ratings): the same
    # minimiser whatever the batch size. Unlike weight_decay, biases can be left out.
    l2: float = 0.0
    # model selection on the validation slice (never the test part): stop when validation RMSE has not
    # improved for `patience` epochs (0: never stop early), and end with the weights of the epoch that
    # scored best on validation (select_best) rather than the last epoch's
    patience: int = 20
    select_best: bool = True
    # before stopping, divide the learning rate by 10 this many times, each when validation RMSE has
    # not improved for `patience` epochs (a fine-tuning phase at a lower rate)
    lr_drops: int = 1
    shuffle: bool = True
    # with shuffle, a cached matrix's rows are dealt into batches once per run and each epoch takes those
    # batches in a new order (a batch's sparse structure and its transpose are then built once); False
    # deals the rows anew every epoch, at the cost of a sort per batch and epoch: I-AutoRec tests 0.005
    # better so on ml-1m (README "Accuracy"), the seed model the same on u1
    fixed_batches: bool = True
    seed: int = 0
    # loss: "observed" is the mean squared error over observed ratings; "all_movies" is the notebook's
    # MSELoss over every movie with unobserved outputs zeroed (the same minimiser, another scale)
    loss: str = "observed"
    # predictions
    clip: bool = True  # clip predictions to the data set's rating scale
    cold_start_fallback: bool = True  # users/movies with no training rating get bias means
    top_n: int = 20
    full_matrix: bool = False  # also write every (user, movie) prediction, where that fits
    # the notebook's quirks, reproduced by the "notebook" preset only
    accumulate_gradients: bool = False  # never call optimizer.zero_grad()
    drop_first_rating: bool = False  # pandas read_csv without header=None ate each file's first line
    # machinery
    device: str = "auto"
    # CPU threads for torch's arithmetic; 0 keeps torch's default (one per core). On a machine whose cores
    # other work is also using, 1 can be several times faster: torch's threads wait on each other for a
    # core (measured up to 10x on this project's shared 2-core machine, README "Benchmarks").
    threads: int = 0
    cache_budget_mb: int = 2048  # cache the training matrix on the device when it fits this
    eval_every: int = 5  # epochs between validation scores (the learning curve); each costs a forward pass
    # a checkpoint after the first epoch that ends this many seconds of training after the last one, and
    # after the last epoch (0: after every epoch). By the clock, not by epochs: a u1 epoch of the seed
    # model takes 7 ms (a checkpoint took about as long), an epoch at ml-32m's size many minutes.
    checkpoint_seconds: float = 60.0
    runs_dir: str = "runs"
    lock_wait_seconds: float = 30.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Overrides per model name. "notebook" reproduces the original notebook exactly: one user per
# optimiser step in user order, RMSprop(lr=0.01, weight_decay=0.5), gradients never zeroed, MSELoss
# over all movies, unclipped predictions, trained on the whole training side.
PRESETS: dict[str, dict[str, Any]] = {
    "autoencoder": {},
    "notebook": {
        "validation": False,
        "learning_rate": 0.01,
        "weight_decay": 0.5,
        "batch_size": 1,
        "shuffle": False,
        "loss": "all_movies",
        "clip": False,
        "cold_start_fallback": False,
        "accumulate_gradients": True,
        "drop_first_rating": True,
    },
    # I-AutoRec: movie rows, n_users -> 500 sigmoid -> n_users identity, L2 on the weights. Adam
    # instead of the paper's L-BFGS/Rprop, then one tenth of the rate once validation stalls; settings
    # chosen on ml-1m random's validation slice (README "Accuracy"; ml-100k takes l2 100, see bench.py).
    "i-autorec": {
        "hidden": (500,),
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
        "l2": 300.0,
        "batch_size": 256,
        "epochs": 200,
        "eval_every": 1,
        "patience": 6,
        "lr_drops": 1,
        "fixed_batches": False,
    },
    # DeepRecommender's design (user rows): n-512-512-1024-512-512-n, SELU, dropout 0.8 on the code,
    # dense re-feeding. Adam instead of its SGD with momentum (this trainer's SGD has no momentum).
    "deep-ae": {
        "hidden": (512, 512, 1024, 512, 512), "activation": "selu", "dropout": 0.8, "refeed": True,
        "optimizer": "adam", "learning_rate": 1e-3, "weight_decay": 0.0, "l2": 0.0, "batch_size": 128,
        "epochs": 100, "eval_every": 1, "patience": 10, "lr_drops": 0, "fixed_batches": False,
    },
    # Baselines. The global mean starts at its own value (the training mean): one epoch of SGD leaves it.
    "global-mean": {"optimizer": "sgd", "learning_rate": 0.1, "weight_decay": 0.0, "epochs": 1, "eval_every": 1},
    "biases": {
        "optimizer": "adam", "learning_rate": 0.05, "weight_decay": 0.0, "l2": 5.0, "batch_size": 100_000,
        "epochs": 200, "eval_every": 1, "patience": 10, "lr_drops": 0,
    },
    "mf": {
        "hidden": (50,), "optimizer": "adam", "learning_rate": 0.03, "weight_decay": 0.0, "l2": 30.0,
        "batch_size": 100_000, "epochs": 300, "eval_every": 1, "patience": 10, "lr_drops": 0,
    },
}

CHOICES = {
    "optimizer": ("rmsprop", "adam", "sgd"),
    "loss": ("observed", "all_movies"),
    "activation": ("sigmoid", "selu"),
    "device": ("auto", "cpu", "cuda"),
}


def resolve(overrides: dict[str, Any], config_file: Path | None = None) -> TrainConfig:
    """Build the run's configuration from preset, config file and flags (``overrides``, None = not given)."""
    from_file = _read_config_file(config_file) if config_file else {}
    flags = {key: value for key, value in overrides.items() if value is not None}
    model = flags.get("model", from_file.get("model", TrainConfig.model))
    if model not in PRESETS:
        raise TrainerError(f"unknown model {model!r}: choose one of {', '.join(PRESETS)}")
    config = replace(TrainConfig(), **{**PRESETS[model], **from_file, **flags, "model": model})
    return validate(config)


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """A configuration saved by to_dict() (in a checkpoint), back as a TrainConfig."""
    known = {f.name for f in fields(TrainConfig)}
    values = {key: tuple(value) if key == "hidden" else value for key, value in values.items() if key in known}
    return validate(TrainConfig(**values))


def validate(config: TrainConfig) -> TrainConfig:
    for name, allowed in CHOICES.items():
        if getattr(config, name) not in allowed:
            raise TrainerError(f"{name} must be one of {', '.join(allowed)}, not {getattr(config, name)!r}")
    positive = ("epochs", "batch_size", "learning_rate", "eval_every", "cache_budget_mb")
    for name in positive:
        if getattr(config, name) <= 0:
            raise TrainerError(f"{name} must be positive, not {getattr(config, name)}")
    if min(config.weight_decay, config.l2, config.patience, config.lr_drops, config.top_n,
           config.lock_wait_seconds, config.threads, config.checkpoint_seconds) < 0:
        raise TrainerError("weight_decay, l2, patience, lr_drops, top_n, lock_wait_seconds, threads and "
                           "checkpoint_seconds cannot be negative")
    if not 0 <= config.dropout < 1:
        raise TrainerError(f"dropout must be at least 0 and below 1, not {config.dropout}")
    if not config.hidden or any(width <= 0 for width in config.hidden):
        raise TrainerError(f"hidden must list positive layer widths, not {config.hidden}")
    return config


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        values = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise TrainerError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as error:
        raise TrainerError(f"{path}: not valid TOML: {error}") from None
    known = {f.name: f for f in fields(TrainConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise TrainerError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if "hidden" in values:
        values["hidden"] = tuple(values["hidden"])
    return values
