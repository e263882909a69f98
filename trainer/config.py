"""The one configuration of a training run: the run's settings, its model's own (trainer/models/settings.py) and the
machine's, each group a pydantic model; presets by model.

Each field carries its default, its type (a `Literal` where it is a choice), its bounds and its help
(trainer/settings.py). `trainer run`'s options are generated from the fields of all three groups (trainer/cli.py),
and pydantic checks a flag, a config file and a resumed checkpoint against the same bounds.

A run's configuration is resolved in this order, each layer overriding the one before:
the fields' defaults < the model's preset < a TOML config file < command-line flags.
The resolved configuration is stored, as one flat table of settings, in every checkpoint and in the run's row of
the `runs` table; a configuration saved by an earlier version loads the same way.
"""

from __future__ import annotations

import tomllib
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, Field, ValidationError, model_validator

from trainer.errors import TrainerError
from trainer.models.registry import REGISTRY, ModelSpec
from trainer.models.settings import ModelSettings
from trainer.settings import (
    INT32_MAX,
    INT64_MAX,
    Setting,
    Settings,
    described,
    refusal,
    setting,
    type_name,
    why_not,
    wrong_type,
)
from warehouse.connect import DEFAULT_LOCK_WAIT_SECONDS

MAX_THREADS = 1024  # CPU threads: more than any machine this runs on has cores
# A hidden layer's width: its first layer holds (movies or users) x width weights; 2**24 of them on ml-100k's 1,682
# movies would already be 113 GB. run() also checks the whole model against the machine's memory.
MAX_WIDTH = 2**24 - 1
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
# A file or folder, kept as the text given (runs.config records it so); a Path is taken as its text.
PathText = Annotated[str, BeforeValidator(lambda value: str(value) if isinstance(value, PurePath) else value)]

Optimizer = Literal["rmsprop", "adam", "sgd", "lbfgs", "gibbs"]
Loss = Literal["observed", "all_movies"]
Device = Literal["auto", "cpu", "cuda"]
DEFAULT_MODEL = "autoencoder"
Own = TypeVar("Own", bound=ModelSettings)


class MachineSettings(Settings):
    """Where and how a command runs, apart from what it computes: shared by `trainer run`, score, blend and refit.
    A resumed run takes the device, threads and lock wait given now, not those it started with."""

    device: Device = setting("auto", "Where to train: auto (a CUDA GPU when there is one, else the CPU), cpu or cuda.")
    threads: int = setting(
        0,
        "CPU threads for torch's arithmetic; 0 chooses: the cores other processes leave free, and 1 for a small "
        "training step (trainer/threads.py). runs.config records the number used.",
        ge=0,
        le=MAX_THREADS,
    )
    cache_budget_mb: float = setting(
        2048.0,
        "Keep the training matrix in memory (on the GPU when training there) when it fits in this many MB; "
        "otherwise stream it from DuckDB every epoch.",
        gt=0,
        le=INT32_MAX,
    )
    dense_cache_mb: int = setting(
        2048,
        "On the dense path (the notebook preset's loss, re-feeding, autoencoders on a GPU), also keep a dense "
        "users x movies copy of a cached training matrix on the device when it fits in this many MB; otherwise "
        "each batch's dense rows are built from the sparse matrix.",
        ge=0,
        le=INT32_MAX,
    )
    # By the clock, not by epochs: a small data set's epoch takes milliseconds, an epoch at ml-32m's size minutes.
    checkpoint_seconds: float = setting(
        60.0,
        "Write a checkpoint (for --resume) once this many seconds of training have passed since the last "
        "one, and after the last epoch; 0 writes one after every epoch.",
        ge=0,
    )
    runs_dir: PathText = setting(
        "runs", "Where each run keeps its checkpoint and staged results, in a folder named after the run."
    )
    lock_wait_seconds: float = setting(
        DEFAULT_LOCK_WAIT_SECONDS,
        "Seconds to wait for another writer of the warehouse before giving up (the results are kept and can "
        "be written later with `trainer publish`).",
        flags=("--lock-wait",),
        ge=0,
    )
    publish_anyway: bool = setting(
        False,
        "Let the run be served even if it fails the audit (non-finite or out-of-scale predictions, users left "
        "without recommendations, a validation RMSE worse than predicting the training mean, lists that rank worse "
        "than the most popular movies); the override is recorded in runs. It still takes a role only by doing at "
        "least as well on validation as the run serving it; `trainer promote` serves it regardless.",
    )


class TrainConfig(Settings):
    """A training run: what it trains on, its model, optimisation, selection and predictions; its model's own
    settings (``own``, of the class the model's registry entry names) and the machine's (``machine``)."""

    # what to train on
    warehouse: PathText = setting(
        "warehouse.duckdb",
        "The DuckDB warehouse built by `make etl`; it is only read until the results are written.",
        envvar="WAREHOUSE",
    )
    features: PathText | None = setting(
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
        DEFAULT_MODEL,
        "The model, with the settings its preset carries (docs/training.md); options override them.",
    )
    hidden: tuple[Width, ...] = setting(
        (20, 10, 20),
        "Hidden layer widths, comma-separated (e.g. 500 or 20,10,20); for mf, the number of factors.",
        too_big="a layer that wide would not fit in memory",
        min_length=1,
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
        0.01, "The optimiser's learning rate (for lbfgs, each line search's first trial step).", gt=0
    )
    lbfgs_iterations: int = setting(
        20, "lbfgs only: L-BFGS iterations per batch (per epoch with one batch).", ge=1, le=INT32_MAX
    )
    weight_decay: float = setting(0.00001, "L2 weight decay, applied by the optimiser to every parameter.", ge=0)
    epochs: int = setting(200, "The most passes over the training rows.", ge=1, le=INT32_MAX)
    batch_size: int = setting(256, "Rows per optimiser step: users, or movies for i-autorec.", ge=1, le=INT32_MAX)
    # The loop averages the error over the batch's ratings, so it adds l2/2 * ||W||^2 / (number of training
    # ratings): the same minimiser whatever the batch size. Unlike weight_decay, biases can be left out.
    l2: float = setting(
        0.0,
        "L2 penalty on the model's weights, as the lambda of a sum-of-squared-errors objective (I-AutoRec's "
        "units), whatever the batch size.",
        ge=0,
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
        ge=0,
        le=INT32_MAX,
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
        ge=0,
        le=INT32_MAX,
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
        ge=-INT64_MAX - 1,
        le=INT64_MAX,
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
        20, "How many recommendations to write per user, among movies they never rated.", ge=0, le=INT32_MAX
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
    # the notebook's quirks, reproduced by the "notebook" preset only
    accumulate_gradients: bool = setting(False, internal="the notebook preset's quirk: never zero the gradients")
    drop_first_rating: bool = setting(
        False, internal="the notebook preset's quirk: pandas read_csv without header=None ate each file's first line"
    )
    eval_every: int = setting(
        5,
        "Epochs between validation scores (the learning curve; chances to select an epoch).",
        ge=1,
        le=INT32_MAX,
    )
    own: ModelSettings = Field(default_factory=lambda: REGISTRY[DEFAULT_MODEL].settings())
    machine: MachineSettings = Field(default_factory=MachineSettings)

    @model_validator(mode="after")
    def _own_settings_are_the_models(self) -> TrainConfig:
        spec = _spec(self.model)
        if type(self.own) is not spec.settings:
            mine, given = spec.settings.__name__, type(self.own).__name__
            raise ValueError(f"{self.model}'s own settings are a {mine}, not a {given}")
        return self

    def own_as(self, kind: type[Own]) -> Own:
        """The model's own settings, typed as ``kind``: its registry entry's class, or a class it derives from."""
        if not isinstance(self.own, kind):
            raise TypeError(f"{self.model}'s settings are a {type(self.own).__name__}, not a {kind.__name__}")
        return self.own

    def to_dict(self) -> dict[str, Any]:
        """The settings as one flat table (the form checkpoints and runs.config keep): names are unique across
        the three groups (tests/trainer/test_config.py)."""
        shared = {name: getattr(self, name) for name in _RUN_FIELDS}
        return {**shared, **self.own.model_dump(), **self.machine.model_dump()}

    def replaced(self, **changes: Any) -> TrainConfig:
        """This configuration with some settings changed, by name, whichever group holds them; checked again."""
        return from_dict({**self.to_dict(), **changes})

    def scores_validation_at(self, epoch: int) -> bool:
        """Whether the validation slice is scored (and an epoch can be selected) after ``epoch``."""
        return self.validation and (epoch % self.eval_every == 0 or epoch == self.epochs)


_RUN_FIELDS = tuple(name for name in TrainConfig.model_fields if name not in ("own", "machine"))


def settings() -> dict[str, Setting]:
    """Every setting a run takes, by name: the run's, each model's own (one entry for a setting several models
    share) and the machine's. The model's choices are the registry's names."""
    found = {name: one for name, one in described(TrainConfig).items() if name in _RUN_FIELDS}
    summaries = "; ".join(f"'{name}': {model.summary}" for name, model in REGISTRY.items())
    model = found["model"]
    found["model"] = Setting(f"{model.help} {summaries}.", Literal[tuple(REGISTRY)], model.default)
    for spec in REGISTRY.values():
        found.update({name: one for name, one in described(spec.settings).items() if name not in found})
    return {**found, **described(MachineSettings)}


def owner(name: str, model: str) -> type[Settings] | None:
    """The group that holds setting ``name`` for a run of ``model``: the run's, the model's own or the machine's;
    None when neither holds it (another model's setting, or no setting at all)."""
    if name in _RUN_FIELDS:
        return TrainConfig
    for group in (REGISTRY[model].settings, MachineSettings):
        if name in group.model_fields:
            return group
    return None


def problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not allowed for the setting ``name`` (None when it is): a flag's check, before the model
    is known. A setting several models share has one definition (trainer/models/settings.py)."""
    if name == "model":
        return None if value in REGISTRY else f"must be one of {', '.join(REGISTRY)}, not {value!r}"
    return why_not(_group_of(name), name, value)


def _group_of(name: str) -> type[Settings]:
    """A group that defines setting ``name``."""
    groups: list[type[Settings]] = [TrainConfig, MachineSettings, *(spec.settings for spec in REGISTRY.values())]
    return next(group for group in groups if name in group.model_fields)


def resolve(overrides: dict[str, Any], config_file: Path | None = None) -> TrainConfig:
    """Build the run's configuration from preset, config file and flags (``overrides``, None = not given)."""
    from_file = _read_config_file(config_file) if config_file else {}
    flags = {key: value for key, value in overrides.items() if value is not None}
    model = flags.get("model", from_file.get("model", DEFAULT_MODEL))
    spec = _spec(model)
    given = {**from_file, **flags}
    read_by_others = _not_read_by(model, given)
    if read_by_others:
        raise TrainerError(read_by_others)
    return from_dict({**spec.preset, **given, "model": model})


def named(overrides: dict[str, Any], config_file: Path | None = None) -> frozenset[str]:
    """The settings the user gave (a flag, its environment variable or the config file; None in ``overrides``: not
    given): a resumed run keeps its own for all but a few of them (trainer/train.py)."""
    from_file = _read_config_file(config_file) if config_file else {}
    return frozenset(from_file) | {key for key, value in overrides.items() if value is not None}


def _not_read_by(model: str, given: dict[str, Any]) -> str | None:
    """Why settings given for ``model`` are refused: another model's own setting set to another value than its
    default would be silently ignored. None when none is."""
    owners: dict[str, list[str]] = {}
    for spec in REGISTRY.values():
        for name in spec.settings.model_fields:
            owners.setdefault(name, []).append(spec.name)
    # a default changes nothing: a configuration saved with every model's settings passes as it is
    defaults = {name: one.default for name, one in settings().items()}
    ignored = [
        name
        for name, value in given.items()
        if name in owners and model not in owners[name] and value not in (None, defaults[name])
    ]
    if not ignored:
        return None
    return "; ".join(
        f"--{name.replace('_', '-')} is read by {', '.join(owners[name])} only, not by {model}" for name in ignored
    )


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """A checked configuration from one flat table of settings (a resolved one, or one saved by to_dict()): each
    setting goes to the group that holds it for the model; another model's settings are left out (a configuration
    saved by an earlier version holds every model's, at their defaults)."""
    model = values.get("model", DEFAULT_MODEL)
    spec = _spec(model)
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
    parts: dict[type[Settings], dict[str, Any]] = {TrainConfig: {}, spec.settings: {}, MachineSettings: {}}
    for name, value in values.items():
        group = owner(name, model)
        if group is not None:
            parts[group][name] = value
    own = _checked(spec.settings, parts[spec.settings])
    machine = _checked(MachineSettings, parts[MachineSettings])
    config = _checked(TrainConfig, {**parts[TrainConfig], "own": own, "machine": machine})
    if reason := spec.check(config):
        raise TrainerError(reason)
    return config


def _spec(model: str) -> ModelSpec:
    if model not in REGISTRY:
        raise TrainerError(f"unknown model {model!r}: choose one of {', '.join(REGISTRY)}")
    return REGISTRY[model]


def _checked(group: type[Settings], values: dict[str, Any]) -> Any:
    """``group`` built from ``values``, or the first refusal as "name must be ..., not ..."."""
    try:
        return group(**values)
    except ValidationError as error:
        first = error.errors()[0]
        if not first["loc"]:  # the model check above
            raise TrainerError(first["msg"].removeprefix("Value error, ")) from None
        name = str(first["loc"][0])
        raise TrainerError(f"{name} {refusal(group, name, first)}") from None


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
    known = settings()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise TrainerError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
    for name, value in values.items():
        if name != "model" and wrong_type(_group_of(name), name, value):
            raise TrainerError(f"{path}: {name} = {_shown(value)} is not {type_name(known[name].kind)}")
    return values


def _shown(value: Any) -> str:
    """A TOML value as the file wrote it: a list, not the tuple it was read into."""
    return repr(list(value)) if isinstance(value, tuple) else repr(value)
