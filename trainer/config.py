"""The one configuration of a training run: every setting defined once, in one dataclass; presets by model.

Each field of `TrainConfig` carries its default, its type (a `Literal` where it is a choice), its bounds
and its help (a `Setting` in the field's metadata). `trainer run`'s options are generated from these
fields (trainer/cli.py), and the same bounds check a config file and a resumed checkpoint.

A run's configuration is resolved in this order, each layer overriding the one before:
dataclass defaults < the model's preset < a TOML config file < command-line flags.
The resolved configuration is stored in every checkpoint and in the run's row of the `runs` table.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

from trainer.errors import TrainerError
from trainer.models.registry import REGISTRY


@dataclass(frozen=True)
class Setting:
    """What the CLI and the checks need to know of one field of TrainConfig."""

    help: str
    flags: tuple[str, ...] = ()  # the option's names; default --field-name (--x/--no-x for a bool)
    envvar: str | None = None
    choices: tuple[str, ...] = ()  # for a str field whose choices are not a Literal type (the presets)
    minimum: float | None = None  # value >= minimum
    above: float | None = None  # value > above
    below: float | None = None  # value < below
    maximum: float | None = None  # value <= maximum (each value, for a tuple of them)
    too_big: str = ""  # what a value past maximum would do, said with the refusal
    internal: str = ""  # why the field has no option (set by presets only); empty: it has one


# The largest whole numbers a setting may take: a run's figures are written into INTEGER (32-bit) and BIGINT (64-bit)
# columns, and a value past them would train for nothing, then fail to publish.
INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1
MAX_THREADS = 1024  # CPU threads: more than any machine this runs on has cores
# A hidden layer's width: its first layer holds (movies or users) x width weights; 2**24 of them on ml-100k's 1,682
# movies would already be 113 GB. run() also checks the whole model against the machine's memory.
MAX_WIDTH = 2**24 - 1


def setting(default: Any, help: str = "", **spec: Any) -> Any:
    """A TrainConfig field: its default, and its Setting in the metadata."""
    return field(default=default, metadata={"setting": Setting(help, **spec)})


Optimizer = Literal["rmsprop", "adam", "sgd", "lbfgs", "gibbs"]
Loss = Literal["observed", "all_movies"]
Activation = Literal["sigmoid", "selu"]
Device = Literal["auto", "cpu", "cuda"]
GlobalKernelStart = Literal["identity", "paper"]
RowInput = Literal["binary", "stars"]


@dataclass(frozen=True)
class TrainConfig:
    # what to train on
    warehouse: str = setting(
        "warehouse.duckdb",
        "The DuckDB warehouse built by `make etl`; it is only read until the results are written.",
        envvar="WAREHOUSE",
    )
    features: str | None = setting(
        None,
        "Read the rating matrices from this folder of Parquet files, written by `etl export`, instead of the "
        "warehouse (the results are still written into --warehouse when it exists, else kept in the run folder).",
    )
    split: str = setting(
        "random",
        "The split to train and test on, by name, as listed in the warehouse's `splits` table (random, "
        "temporal, and u1..u5 for ml-100k).",
    )
    validation: bool = setting(
        True,
        "Hold the split's validation slice out of training, to score every --eval-every epochs and select "
        "the best epoch on (--validation), or train on the whole training side (--no-validation).",
    )
    # the model (see trainer/models/)
    model: str = setting(
        "autoencoder",
        "The model, with the settings its preset carries (docs/training.md); options override them.",
        choices=(),
    )
    hidden: tuple[int, ...] = setting(
        (20, 10, 20),
        "Hidden layer widths, comma-separated (e.g. 500 or 20,10,20); for mf, the number of factors.",
        minimum=1,
        maximum=MAX_WIDTH,
        too_big="a layer that wide would not fit in memory",
    )
    activation: Activation = setting("sigmoid", "The autoencoders' hidden activation.")
    dropout: float = setting(
        0.0, "Dropout on the autoencoders' code (the middle hidden layer) while training.", minimum=0, below=1
    )
    input_dropout: float = setting(
        0.0,
        "i-autorec and kernel-ae: while training, zero each observed input rating with this probability (a "
        "denoising autoencoder); the loss still scores every observed rating, and nothing is dropped when scoring.",
        minimum=0,
        below=1,
    )
    kl_cap: float = setting(
        0.2,
        "mult-vae only: the most weight β its KL term takes, reached after --kl-anneal-epochs (Liang et al.'s cap).",
        minimum=0,
    )
    kl_anneal_epochs: int = setting(
        50, "mult-vae only: the epochs over which β rises linearly from 0 to --kl-cap.", minimum=1, maximum=INT32_MAX
    )
    movie_features: bool = setting(
        False,
        "bayes-fm (whose preset turns it on): add each movie's release year (in ten bins) and genres, from the "
        "movies table, to its features (--no-movie-features: the ids and who rated what only).",
    )
    ease_input: RowInput = setting(
        "binary",
        "ease (whose preset takes 'stars'): what its rows hold, 1 for each rated movie ('binary') or the stars.",
    )
    vae_input: RowInput = setting(
        "binary",
        "mult-vae and mult-dae (whose presets take 'stars'): what a user's row holds, 1 for each rated movie "
        "('binary', Liang et al.'s) or the stars, which then also weigh each rated movie in the likelihood.",
    )
    refeed: bool = setting(
        False,
        "DeepRecommender's dense re-feeding: after each step, train again on the (dense) reconstruction "
        "as an example of its own.",
    )
    # optimisation. The notebook's RMSprop(lr=0.01, weight_decay=0.5) only survived because it never zeroed its
    # gradients; with correct batched gradients weight decay 0.5 collapses every output to the mean. Tuned on
    # the validation slices of ml-100k u1 and ml-1m random, with patience and lr_drops (docs/training.md).
    optimizer: Optimizer = setting(
        "rmsprop",
        "The optimiser: rmsprop, adam, sgd, lbfgs (L-BFGS with a strong-Wolfe line search, --lbfgs-iterations per "
        "batch: with a --batch-size of every row, the papers' full-batch training) or gibbs (bayes-fm only, which "
        "takes no other: it samples instead of stepping, one Gibbs sweep an epoch).",
    )
    learning_rate: float = setting(
        0.01, "The optimiser's learning rate (for lbfgs, each line search's first trial step).", above=0
    )
    lbfgs_iterations: int = setting(
        20, "lbfgs only: L-BFGS iterations per batch (per epoch with one batch).", minimum=1, maximum=INT32_MAX
    )
    weight_decay: float = setting(0.00001, "L2 weight decay, applied by the optimiser to every parameter.", minimum=0)
    epochs: int = setting(200, "The most passes over the training rows.", minimum=1, maximum=INT32_MAX)
    batch_size: int = setting(
        256, "Rows per optimiser step: users, or movies for i-autorec.", minimum=1, maximum=INT32_MAX
    )
    # The loop averages the error over the batch's ratings, so it adds l2/2 * ||W||^2 / (number of training
    # ratings): the same minimiser whatever the batch size. Unlike weight_decay, biases can be left out.
    l2: float = setting(
        0.0,
        "L2 penalty on the model's weights, as the lambda of a sum-of-squared-errors objective (I-AutoRec's "
        "units), whatever the batch size.",
        minimum=0,
    )
    kernel_l2: float = setting(
        0.0,
        "kernel-ae only: the L2 penalty on its layers' kernel values K, in --l2's units (Sparse FC's "
        "lambda_s, doubled: the objective here is a sum of squared errors, not half of one).",
        minimum=0,
    )
    dot_scale: float = setting(
        1.0, "glocal-k only: the scale of its global convolution kernel (GLocal-K's dot_scale).", above=0
    )
    global_kernel_start: GlobalKernelStart = setting(
        "identity",
        "glocal-k only: 'identity' adds the identity to the global kernel and starts its learned part at 0, so "
        "the fine-tuning starts from the pre-trained model's predictions; 'paper' draws it as GLocal-K's code "
        "does, with no identity.",
    )
    init_from: str | None = setting(
        None,
        "Start from the weights another run of this warehouse selected (its run id), for every weight the two "
        "models share: glocal-k fine-tunes a kernel-ae run so. The new run records it as its parent.",
    )
    refit_of: str | None = setting(
        None,
        internal="set by `trainer refit`: the run whose selected number of epochs this run trains for, on the "
        "training side with its validation slice, with that run's settings",
    )
    lr_drop_epochs: tuple[int, ...] = setting(
        (),
        internal="set by `trainer refit`: the epochs after which the refitted run dropped its learning rate "
        "(with no validation slice, nothing else drops it)",
    )
    # model selection on the validation slice (never the test part)
    patience: int = setting(
        20,
        "Stop when validation RMSE has not improved for this many epochs (0: train every epoch).",
        minimum=0,
        maximum=INT32_MAX,
    )
    select_best: bool = setting(
        True,
        "Score the test set with the weights of the epoch that did best on the validation slice "
        "(--select-best), or with the last epoch's (--last-epoch).",
        flags=("--select-best/--last-epoch",),
    )
    lr_drops: int = setting(
        1,
        "Before stopping early, divide the learning rate by 10 this many times, each time validation RMSE has "
        "not improved for --patience epochs.",
        minimum=0,
        maximum=INT32_MAX,
    )
    shuffle: bool = setting(True, "Take the rows in a new random order every epoch (--no-shuffle: in user order).")
    fixed_batches: bool = setting(
        True,
        "With a cached matrix, deal the rows into batches once per run and take those batches in a new order "
        "each epoch (--fixed-batches; a batch's sparse structure is built once), or deal them anew every epoch "
        "(--no-fixed-batches).",
    )
    seed: int = setting(
        0,
        "Seeds the weights and the order of rows: the same seed on the same data gives the same run on a CPU.",
        minimum=-INT64_MAX - 1,
        maximum=INT64_MAX,
    )
    loss: Loss = setting(
        "observed",
        "'observed': the mean squared error over the observed ratings; 'all_movies': the notebook's "
        "MSELoss over every movie, unobserved outputs zeroed (the same minimiser, another scale).",
    )
    # predictions
    clip: bool = setting(True, "Clip predictions to the data set's rating scale.")
    cold_start_fallback: bool = setting(
        True, "Predict a test rating whose user or movie has no training rating by the damped user and movie biases."
    )
    top_n: int = setting(
        20, "How many recommendations to write per user, among movies they never rated.", minimum=0, maximum=INT32_MAX
    )
    full_matrix: bool = setting(
        False,
        "Also write a prediction for every (user, movie) pair; refused when that would exceed 50 million rows.",
    )
    publish: bool = setting(
        True,
        "Write the results into the warehouse when the run ends (--publish), or only stage them in the run's folder "
        "(--no-publish: nothing analysts see changes; `trainer publish RUN_DIR` writes them later).",
    )
    publish_anyway: bool = setting(
        False,
        "Let the run be served even if it fails the audit (non-finite or out-of-scale predictions, users left "
        "without recommendations, a validation RMSE worse than predicting the training mean, lists that rank worse "
        "than the most popular movies); the override is recorded in runs. It still takes a role only by doing at "
        "least as well on validation as the run serving it; `trainer promote` serves it regardless.",
    )
    # the notebook's quirks, reproduced by the "notebook" preset only
    accumulate_gradients: bool = setting(False, internal="the notebook preset's quirk: never zero the gradients")
    drop_first_rating: bool = setting(
        False, internal="the notebook preset's quirk: pandas read_csv without header=None ate each file's first line"
    )
    # machinery
    device: Device = setting("auto", "Where to train: auto (a CUDA GPU when there is one, else the CPU), cpu or cuda.")
    threads: int = setting(
        0,
        "CPU threads for torch's arithmetic; 0 chooses: the cores other processes leave free, and 1 for a small "
        "training step (trainer/threads.py). runs.config records the number used.",
        minimum=0,
        maximum=MAX_THREADS,
    )
    cache_budget_mb: int = setting(
        2048,
        "Keep the training matrix in memory (on the GPU when training there) when it fits in this many MB; "
        "otherwise stream it from DuckDB every epoch.",
        above=0,
        maximum=INT32_MAX,
    )
    dense_cache_mb: int = setting(
        2048,
        "On the dense path (the notebook preset's loss, re-feeding, autoencoders on a GPU), also keep a dense "
        "users x movies copy of a cached training matrix on the device when it fits in this many MB; otherwise "
        "each batch's dense rows are built from the sparse matrix.",
        minimum=0,
        maximum=INT32_MAX,
    )
    eval_every: int = setting(
        5,
        "Epochs between validation scores (the learning curve; chances to select an epoch).",
        minimum=1,
        maximum=INT32_MAX,
    )
    # By the clock, not by epochs: a small data set's epoch takes milliseconds, an epoch at ml-32m's size minutes.
    checkpoint_seconds: float = setting(
        60.0,
        "Write a checkpoint (for --resume) once this many seconds of training have passed since the last "
        "one, and after the last epoch; 0 writes one after every epoch.",
        minimum=0,
    )
    runs_dir: str = setting(
        "runs", "Where each run keeps its checkpoint and staged results, in a folder named after the run."
    )
    lock_wait_seconds: float = setting(
        30.0,
        "Seconds to wait for another writer of the warehouse before giving up (the results are kept and can "
        "be written later with `trainer publish`).",
        flags=("--lock-wait",),
        minimum=0,
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def scores_validation_at(self, epoch: int) -> bool:
        """Whether the validation slice is scored (and an epoch can be selected) after ``epoch``."""
        return self.validation and (epoch % self.eval_every == 0 or epoch == self.epochs)


def settings() -> dict[str, tuple[Setting, Any, Any]]:
    """Each field's Setting, type and default, by name; the model's choices are the presets."""
    types = get_type_hints(TrainConfig)
    found = {}
    for f in fields(TrainConfig):
        spec: Setting = f.metadata["setting"]
        if f.name == "model":
            summaries = "; ".join(f"'{name}': {model.summary}" for name, model in REGISTRY.items())
            spec = replace(spec, choices=tuple(REGISTRY), help=f"{spec.help} {summaries}.")
        found[f.name] = (spec, types[f.name], f.default)
    return found


def choices(kind: Any, spec: Setting) -> tuple[str, ...]:
    """A setting's allowed values: its Literal type's, or the Setting's own; () when any value goes."""
    return spec.choices or (get_args(kind) if getattr(kind, "__origin__", None) is Literal else ())


def problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not allowed for the setting ``name`` (None when it is)."""
    spec, kind, _ = settings()[name]
    allowed = choices(kind, spec)
    if allowed and value not in allowed:
        return f"must be one of {', '.join(allowed)}, not {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, not {value}"
    bounds = [
        (spec.minimum, lambda v, b: v >= b, "at least"),
        (spec.above, lambda v, b: v > b, "above"),
        (spec.below, lambda v, b: v < b, "below"),
        (spec.maximum, lambda v, b: v <= b, "at most"),
    ]
    each = " each" if isinstance(value, tuple) else ""  # hidden's widths: every one of them
    for one in value if isinstance(value, tuple) else (value,):
        for bound, holds, words in bounds:
            if bound is not None and not holds(one, bound):
                why = f" ({spec.too_big})" if words == "at most" and spec.too_big else ""
                shown = f"{bound:g}" if isinstance(bound, float) else str(bound)
                return f"must be {words} {shown}{each}{why}, not {one}"
    return None


def resolve(overrides: dict[str, Any], config_file: Path | None = None) -> TrainConfig:
    """Build the run's configuration from preset, config file and flags (``overrides``, None = not given)."""
    from_file = _read_config_file(config_file) if config_file else {}
    flags = {key: value for key, value in overrides.items() if value is not None}
    model = flags.get("model", from_file.get("model", TrainConfig.model))
    if model not in REGISTRY:
        raise TrainerError(f"unknown model {model!r}: choose one of {', '.join(REGISTRY)}")
    given = {**from_file, **flags}
    read_by_others = _not_read_by(model, given)
    if read_by_others:
        raise TrainerError(read_by_others)
    config = replace(TrainConfig(), **{**REGISTRY[model].preset, **given, "model": model})
    return validate(config)


def named(overrides: dict[str, Any], config_file: Path | None = None) -> frozenset[str]:
    """The settings the user gave (a flag, its environment variable or the config file; None in ``overrides``: not
    given): a resumed run keeps its own for all but a few of them (trainer/train.py)."""
    from_file = _read_config_file(config_file) if config_file else {}
    return frozenset(from_file) | {key for key, value in overrides.items() if value is not None}


def _not_read_by(model: str, given: dict[str, Any]) -> str | None:
    """Why settings given for ``model`` are refused: a model's own setting (ModelSpec.own_settings) set to another
    value than its default for a model that does not read it would be silently ignored. None when none is."""
    owners: dict[str, list[str]] = {}
    for spec in REGISTRY.values():
        for name in spec.own_settings:
            owners.setdefault(name, []).append(spec.name)
    defaults = TrainConfig().to_dict()  # a default value changes nothing: a saved configuration passes as it is
    ignored = [name for name, value in given.items()
               if name in owners and model not in owners[name] and value not in (None, defaults[name])]  # fmt: skip
    if not ignored:
        return None
    return "; ".join(f"--{name.replace('_', '-')} is read by {', '.join(owners[name])} only, not by {model}"
                     for name in ignored)  # fmt: skip


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """A configuration saved by to_dict() (in a checkpoint), back as a TrainConfig."""
    known = {f.name for f in fields(TrainConfig)}
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items() if key in known}
    return validate(TrainConfig(**values))


def validate(config: TrainConfig) -> TrainConfig:
    for name in settings():
        reason = problem(name, getattr(config, name))
        if reason:
            raise TrainerError(f"{name} {reason}")
    if not config.hidden or any(width <= 0 for width in config.hidden):
        raise TrainerError(f"hidden must list positive layer widths, not {config.hidden}")
    if reason := REGISTRY[config.model].check(config):
        raise TrainerError(reason)
    return config


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainerError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise TrainerError(f"{path}: a folder, not a config file (--config takes a TOML file)") from None
    except UnicodeDecodeError as error:  # TOML is UTF-8
        raise TrainerError(f"{path}: not a TOML file: byte {error.start} is not UTF-8 text") from None
    except OSError as error:  # unreadable: permissions, a device
        raise TrainerError(f"{path}: cannot read the config file: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise TrainerError(f"{path}: not valid TOML: {error}") from None
    known = {f.name: f for f in fields(TrainConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise TrainerError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    kinds = {name: kind for name, (_, kind, _) in settings().items()}
    for name, value in values.items():
        if not _is_a(value, kinds[name]):
            raise TrainerError(f"{path}: {name} = {value!r} is not {_described(kinds[name])}")
    return {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}


def _is_a(value: Any, kind: Any) -> bool:
    """Whether a TOML value has a setting's type (a whole number passes for a float; a list for a tuple)."""
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if getattr(kind, "__origin__", None) is tuple:
        return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    return isinstance(value, str)  # str, str | None, and the Literal choices (checked by validate)


def _described(kind: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number"}
    return names.get(kind, "a list of whole numbers" if getattr(kind, "__origin__", None) is tuple else "a string")
