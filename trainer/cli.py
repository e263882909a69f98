"""`trainer`: the command line. Commands parse and check their options, then call trainer.train."""

from __future__ import annotations

import inspect
import os
import shlex
import sys
import warnings
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, get_args

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from trainer.config import MAX_THREADS, Device, MachineSettings, TrainConfig, named, problem, resolve, settings
from trainer.errors import Finished, Interrupted, TrainerError, UnknownSplit
from trainer.models.registry import REGISTRY
from trainer.protocols import BENCH_MODELS, PROTOCOLS
from trainer.settings import Setting, described
from trainer.threads import prepare
from warehouse import results
from warehouse.errors import WarehouseError
from warehouse.sql import EXAMPLES_DIR
from warehouse.version import print_version

if TYPE_CHECKING:
    from trainer.train import RunSummary

# The commands in the order of the README's table, for `trainer --help`; a command not named here comes after them.
COMMAND_ORDER = ("run", "score", "blend", "refit", "promote", "publish", "bench", "report", "examples")


def _reflowed(text: str | None) -> str | None:
    """A docstring's paragraphs, each on one line: rich's help keeps a docstring's line breaks, which break
    lines again mid-sentence in a terminal of another width."""
    if not text:
        return text
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in inspect.cleandoc(text).split("\n\n"))


def _flags_shown_bare(params: list[Any]) -> None:
    """A flag (--help, --publish-anyway, --clip/--no-clip) takes no value: no <bool> beside it, which Typer shows
    for every flag whose metavar is not set."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""


class _Context(typer.Context):
    @property
    def command_path(self) -> str:
        """`typer trainer run` for typer's own CLI, which would say `typer [PATH_OR_MODULE] run`."""
        parent = self.parent
        module = parent.params.get("path_or_module") if parent is not None else None
        if parent is not None and module and parent.parent is None:
            return f"{parent.info_name} {module} {self.info_name}"
        return super().command_path


class _BareFlags:
    """A command or group whose flags (its own, and --help) show no <bool> beside them."""

    params: list[Any]

    def __init__(self, *args: Any, **attrs: Any) -> None:
        super().__init__(*args, **attrs)
        _flags_shown_bare(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        _flags_shown_bare([option])
        return option


class _Command(_BareFlags, TyperCommand):
    """Every trainer command: help reflowed to the terminal, usage naming positionals as their help does (RUN_ID,
    not {run_id}), no <bool> beside a flag, and a mistyped choice said without pydantic's "Value error, "."""

    context_class = _Context

    def __init__(self, name: str | None, **attrs: Any) -> None:
        attrs["help"] = _reflowed(attrs.get("help"))
        super().__init__(name, **attrs)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.display_name_raw + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def invoke(self, ctx: Any) -> Any:
        """Every command's process-wide settings, and its one handler of the library's errors (a refusal, a mistake
        in a file, a lock held): one line on stderr and exit code 1, no traceback."""
        _process_wide()
        try:
            return super().invoke(ctx)
        except WarehouseError as error:
            _fail(error)

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except typer.BadParameter as error:  # Typer checks a Literal choice with pydantic, whose message says so
            error.message = error.message.removeprefix("Value error, ")
            raise


def _process_wide() -> None:
    """What a command sets for its whole process, here and never in the library (a caller's process is its own):
    OpenMP's waiting threads sleep rather than spin, and the load measurement starts (threads.prepare, before torch
    is imported); torch's beta warning on sparse CSR tensors is silenced (the products are tested against dense
    ones: test_sparse.py); tqdm draws no bars, which myFM (bayes-fm) would draw into the line per sweep."""
    prepare()
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
    os.environ.setdefault("TQDM_DISABLE", "1")


class _Group(_BareFlags, TyperGroup):
    """`trainer` itself: its commands listed in the README's order, its flags without <bool>."""

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: index for index, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))


app = typer.Typer(
    cls=_Group,
    help="Train autoencoders on the warehouse's rating matrices and write predictions back for analysts.",
    no_args_is_help=True,
    add_completion=False,
)
DEFAULTS = TrainConfig()
NOT_SERVED = 3  # the exit code of a run that finished, was recorded, and serves nothing (docs/reliability.md)
# Options shared by the commands that publish into the warehouse or run a model outside `trainer run`: one definition
# each.
LockWait = Annotated[float, typer.Option(min=0, help="Seconds to wait for another writer of the warehouse.")]
Threads = Annotated[
    int, typer.Option(min=0, max=MAX_THREADS, help="CPU threads for torch's arithmetic; 0: chosen from the free cores.")
]
DeviceOption = Annotated[
    Device, typer.Option(help="Where the model runs: auto (a CUDA GPU when there is one, else the CPU), cpu or cuda.")
]
RunsDir = Annotated[
    Path, typer.Option(help="Where the command's run keeps its staged results, in a folder named after it.")
]
PublishAnyway = Annotated[
    bool, typer.Option("--publish-anyway", help="Serve the results even if they fail the audit; recorded in runs.")
]


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=print_version("trainer"), is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Train autoencoders on the warehouse's rating matrices and write predictions back for analysts."""


def _fail(error: Exception) -> None:
    typer.echo(f"trainer: error: {error}", err=True)
    raise typer.Exit(1)


# `trainer run --help`'s panels: each TrainConfig setting with an option, by panel, in the order shown. A setting
# named nowhere lands in "Options" (tests/trainer/test_cli.py checks that none does).
RUN_PANELS = {
    "Data": ("warehouse", "features", "split", "validation"),
    "Model": (
        "model",
        "hidden",
        "activation",
        "dropout",
        "input_dropout",
        "movie_features",
        "ease_input",
        "ease_session_gap",
        "vae_input",
        "kl_cap",
        "kl_anneal_epochs",
        "refeed",
        "dot_scale",
        "global_kernel_start",
        "init_from",
    ),
    "Optimisation": (
        "optimizer",
        "learning_rate",
        "lbfgs_iterations",
        "weight_decay",
        "l2",
        "kernel_l2",
        "epochs",
        "batch_size",
        "shuffle",
        "fixed_batches",
        "loss",
        "seed",
    ),
    "Selection on the validation slice": ("eval_every", "patience", "lr_drops", "select_best"),
    "Predictions and publishing": (
        "clip",
        "cold_start_fallback",
        "top_n",
        "full_matrix",
        "publish",
        "publish_anyway",
        "lock_wait_seconds",
    ),
    "Machine": ("device", "threads", "cache_budget_mb", "dense_cache_mb", "checkpoint_seconds", "runs_dir"),
}
_PANEL_OF = {name: panel for panel, names in RUN_PANELS.items() for name in names}
_PLACE = {name: (panel, place) for panel, names in enumerate(RUN_PANELS.values()) for place, name in enumerate(names)}
_PATHS = ("warehouse", "features", "runs_dir")  # str settings that name a file or folder: shown as <path>
# Choices too many for the types column: their help lists them, with what each is.
_METAVARS = {"model": "<name>", "optimizer": "<name>", "loss": "<kind>", "hidden": "<widths>"}
# --model's help points to the list of models that ends `trainer run --help`, one a line, at the terminal's width.
_MODEL_HELP = described(TrainConfig)["model"].help + " The models are listed below."
_MODELS_EPILOG = "Models (--model):\n" + "\n".join(
    f"{name:<12} {escape(model.summary)}" for name, model in REGISTRY.items()
)


def _option(name: str, spec: Setting) -> inspect.Parameter:
    """One `trainer run` option from a setting (trainer/config.py). It shows the field's default, but a value left
    at it reaches the command as None (_checker), so that the model's preset and a config file apply."""
    allowed, default = spec.choices, spec.default
    cli_type: Any = Literal[allowed] if allowed else (str if name == "hidden" else _plain(spec.kind))
    if name in _PATHS:
        cli_type = Path
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    option = typer.Option(
        *spec.flags,
        help=_MODEL_HELP if name == "model" else spec.help,
        envvar=spec.envvar,
        callback=_checker(name),
        show_default=shown is not None,
        metavar=_METAVARS.get(name),
        rich_help_panel=_PANEL_OF.get(name),
    )
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=shown, annotation=Annotated[Optional[cli_type], option]
    )


def _plain(kind: Any) -> Any:
    """The type a field's option parses: str for `str | None`."""
    args = [arg for arg in get_args(kind) if arg is not type(None)]
    return args[0] if args else kind


def _checker(name: str) -> Callable[[Any, Any, Any], Any]:
    """A callback refusing a value the setting does not allow with a usage error (exit 2) naming the option;
    a value nobody gave (the option's default) becomes None."""

    def check(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        source = ctx.get_parameter_source(param.name or name)
        if value is None or source is None or source.name == "DEFAULT":
            return None
        if isinstance(value, Path):
            value = str(value)  # TrainConfig keeps paths as given, as strings
        if name == "hidden":
            value = _widths(value)
        reason = problem(name, value)
        if reason:
            raise typer.BadParameter(reason)
        return value

    return check


def run_command(ctx: typer.Context, *, config_file: Optional[Path], resume: Optional[Path], **given: Any) -> None:
    """Train a model on one split of the warehouse, score it on the held-out ratings, audit the results, and
    write runs, per-epoch metrics and predictions into the warehouse."""
    from trainer.train import run as train_run  # torch is imported only by the commands that train

    try:
        config = resolve(given, config_file)
        _threads(config.machine.threads, config)
        if resume is not None and not resume.is_dir():
            raise TrainerError(f"{resume}: no such run folder to resume")
        with _EpochReporter(config.epochs) as report:
            summary = train_run(
                config, resume_dir=resume, on_epoch=report, log=report.log, named=named(given, config_file)
            )
    except Finished as done:  # --resume of a run published already: nothing to do
        _log(f"trainer: {done}")
        return
    except UnknownSplit as error:
        if given.get("split") is None or resume is not None:  # from a config file or the checkpoint: not a usage error
            _fail(error)
        raise typer.BadParameter(str(error), ctx=ctx, param_hint="'--split'") from None
    except Interrupted as stop:
        _interrupted(stop)
    if summary.metrics:  # empty on a torchrun rank other than 0, which reports for all
        _report(summary)


def _report(summary: RunSummary) -> None:
    """What a training run (or a refit) did, on standard error; its id on standard output; its exit code."""
    m, published = summary.metrics, summary.published
    if published is None:
        outcome = f"Results are staged in {summary.run_dir} (trainer publish writes them)."
    else:
        outcome = _outcome(published)
    rated = (
        f"test RMSE {m['rmse']:.4f}, MAE {m['mae']:.4f}, mean per-user RMSE {m['user_rmse']:.4f} on {m['n']:,} "
        f"ratings ({m['n_cold_start']:,} cold start); "
        if m["rmse"] is not None
        else "a model that ranks only; "
    )
    _log(
        f"run {summary.run_id}: {rated}trained in {summary.train_seconds:.2f} s, {summary.wall_seconds:.2f} s in "
        "all. " + _ranking_line(summary.ranking) + outcome
    )
    typer.echo(summary.run_id)  # alone on standard output, for scripts: trainer refit $(trainer run …)
    _exit_unless_served(published)


def _ranking_line(ranking: dict[str, dict[str, float]]) -> str:
    """The held-out ranking's headline figures (trainer/ranking.py), as a sentence; empty when there are none."""
    test = ranking.get("test")
    if not test:
        return ""
    return (
        f"Its top 10s: nDCG@10 {test['ndcg@10']:.4f}, recall@10 {test['recall@10']:.4f} over "
        f"{int(test['users']):,} test users, {int(test['coverage@10']):,} distinct movies. "
    )


run_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        inspect.Parameter(
            "config_file",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                Optional[Path],
                typer.Option(
                    "--config",
                    show_default=False,
                    help=(
                        "A TOML file of settings, named as the options but with underscores (lock_wait_seconds for "
                        "--lock-wait); options given on the command line override it."
                    ),
                ),
            ],
        ),
        inspect.Parameter(
            "resume",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                Optional[Path],
                typer.Option(
                    show_default=False,
                    help=(
                        "Continue the interrupted run in this folder (e.g. runs/20261128-101500-ab12) from its "
                        "last checkpoint, with the settings and warehouse it started with (only --warehouse, "
                        "--device, --threads and --lock-wait apply). A run that finished is not run again."
                    ),
                ),
            ],
        ),
        *sorted(
            (_option(name, spec) for name, spec in settings().items() if not spec.internal),
            key=lambda option: _PLACE.get(option.name, (-1, 0)),
        ),
    ]
)
app.command("run", cls=_Command, epilog=_MODELS_EPILOG)(run_command)
# `typer trainer run ...` (typer's own `run`, on the app it finds in the trainer package) and `trainer run ...`
# are the same command: this one-command app is what trainer/__init__.py exposes to typer.
run_app = typer.Typer(add_completion=False)
run_app.command("run", cls=_Command, epilog=_MODELS_EPILOG)(run_command)


def _interrupted(stop: Interrupted) -> None:
    """Ctrl-C during training: where the run's last checkpoint is and the command that continues from it."""
    from trainer.checkpoint import FILE_NAME

    if stop.checkpoint_epoch is None:
        _log(
            f"trainer: interrupted before the run's first checkpoint (one is written every --checkpoint-seconds "
            f"of training): nothing to resume in {stop.run_dir}; start the run again."
        )
    else:
        _log(
            f"trainer: interrupted. The last checkpoint, after epoch {stop.checkpoint_epoch}, is "
            f"{stop.run_dir / FILE_NAME}. Continue the run from it with:\n"
            f"  trainer run --resume {shlex.quote(str(stop.run_dir))}"
        )
    raise typer.Exit(130)  # as for any Ctrl-C: 128 + SIGINT


@app.command("bench", cls=_Command)
def bench_command(
    data_dir: Annotated[
        Path,
        typer.Option(
            help="The folder holding the MovieLens data sets, one sub-folder per data set (ml-100k, ml-1m), "
            "as unpacked from GroupLens."
        ),
    ] = Path("data"),
    models: Annotated[
        str, typer.Option(help="Comma-separated models to run, each with its preset settings.")
    ] = ",".join(BENCH_MODELS),
    datasets: Annotated[
        str,
        typer.Option(
            help="Comma-separated data sets, each run with its protocol: "
            + "; ".join(f"{k}: {p.description}, {len(p.seeds)} seed(s)" for k, p in PROTOCOLS.items())
            + "."
        ),
    ] = ",".join(PROTOCOLS),
    seeds: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            help="Run only the first N seeds of each protocol (default: all of them), e.g. 1 for a quick look.",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            help="Train no model for more than this many epochs (default: each preset's own number), for a "
            "quick smoke run; such figures are not the benchmark's.",
            show_default=False,
        ),
    ] = None,
    work_dir: Annotated[
        Path,
        typer.Option(help="Where the bench builds one warehouse per data set and seed, and keeps the runs' folders."),
    ] = Path("bench-runs"),
    warehouse: Annotated[
        Path,
        typer.Option(
            envvar="WAREHOUSE",
            help="The warehouse the results table (bench_results, and the view bench_summary) is written into.",
        ),
    ] = Path(DEFAULTS.warehouse),
    markdown: Annotated[
        Optional[Path],
        typer.Option(
            help="Where to write the results as a Markdown table. Default: bench-results.md in --warehouse's folder "
            "(the repository's docs/bench-results.md is written with --markdown docs/bench-results.md).",
            show_default=False,
        ),
    ] = None,
    with_blend: Annotated[
        bool,
        typer.Option(
            "--blend",
            help="Also blend the models of each seed (trainer blend: weights fitted on their validation "
            "predictions) and report the blend as model 'blend'.",
        ),
    ] = False,
    refit: Annotated[
        bool,
        typer.Option(
            "--refit",
            help="Also refit each model (trainer refit: trained again on train + validation for the epochs it "
            "chose), reported as model '<model> refit'; with --blend, the blend takes the refits ('blend refit').",
        ),
    ] = False,
) -> None:
    """Run the published protocols end to end (ml-100k u1; ml-1m random 90/10 over 5 seeds) for each model,
    and write the results table into the warehouse and as Markdown."""
    from trainer.bench import bench  # imports torch

    markdown = markdown or warehouse.parent / "bench-results.md"
    bench(
        data_dir,
        work_dir,
        warehouse,
        markdown,
        models=_names(models),
        datasets=_names(datasets),
        n_seeds=seeds,
        max_epochs=epochs,
        with_blend=with_blend,
        refit=refit,
        log=_log,
        before_run=lambda config: _threads(0, config, say=False),  # each row records its threads
    )
    _log(f"results: {markdown} and SELECT * FROM bench_summary in {warehouse}")
    typer.echo(markdown.read_text())


@app.command("report", cls=_Command)
def report_command(
    run_id: Annotated[
        str,
        typer.Argument(
            metavar="RUN_ID",
            help="The run whose learning curve to draw (SELECT run_id FROM run_metrics lists them).",
            show_default=False,
        ),
    ],
    warehouse: Annotated[Path, typer.Option(envvar="WAREHOUSE", help="The warehouse holding the run.")] = Path(
        DEFAULTS.warehouse
    ),
    bench_warehouse: Annotated[
        Optional[Path],
        typer.Option(
            help="The warehouse holding bench_results, for the model comparison chart. Default: the run's warehouse.",
            show_default=False,
        ),
    ] = None,
    out_dir: Annotated[Path, typer.Option(help="Where to write the PNG files.")] = Path("reports"),
) -> None:
    """Draw a run's learning curve (train and validation RMSE per epoch) and the latest bench's model
    comparison, as PNG files."""
    from trainer.report import report  # matplotlib is imported only by this command

    written = report(run_id, warehouse, out_dir, bench_warehouse)
    for path in written:
        _log(f"wrote {path}")
    if len(written) == 1:
        _log("no bench results in that warehouse yet (trainer bench writes them): no model comparison chart")


@app.command(cls=_Command)
def publish(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR",
            help="The run folder whose staged results to write (printed by the run that could not write them).",
            show_default=False,
        ),
    ],
    warehouse: Annotated[Path, typer.Option(envvar="WAREHOUSE", help="The warehouse to write them into.")] = Path(
        DEFAULTS.warehouse
    ),
    lock_wait: LockWait = DEFAULTS.machine.lock_wait_seconds,
    publish_anyway: Annotated[
        bool,
        typer.Option(
            "--publish-anyway",
            help="Serve the run's results even if they fail the audit; the override is recorded in runs. Without "
            "it, as the run was started (trainer run --publish-anyway).",
        ),
    ] = False,
) -> None:
    """Write a finished run's staged results into the warehouse, audited (after a run that could not write them)."""
    published = results.publish(run_dir, warehouse, lock_wait, publish_anyway or None)
    _log(f"run {published.run_id}: results written to {warehouse}. {_outcome(published)}")
    _exit_unless_served(published)


class Role(StrEnum):
    """The analysts' roles a run can serve (warehouse/serving.py)."""

    recommendations = "recommendations"
    predictions = "predictions"


@app.command("promote", cls=_Command)
def promote(
    run_id: Annotated[
        str,
        typer.Argument(
            metavar="RUN_ID",
            help="The run to serve: a training run or a blend that passed its audit, on the data in the warehouse "
            "now (SELECT run_id, model, serves FROM run_metrics lists them).",
            show_default=False,
        ),
    ],
    roles: Annotated[
        Optional[list[Role]],
        typer.Option(
            "--as",
            help="The role to give it: 'recommendations' (the recommendations view) or 'predictions' "
            "(latest_predictions and latest_run); repeat for both. Default: every role it can play.",
            metavar="ROLE",
            show_default=False,
        ),
    ] = None,
    warehouse: Annotated[Path, typer.Option(envvar="WAREHOUSE", help="The warehouse the run is in.")] = Path(
        DEFAULTS.warehouse
    ),
    lock_wait: LockWait = DEFAULTS.machine.lock_wait_seconds,
) -> None:
    """Serve a run by hand: one that did not beat the run serving a role, or an earlier run to go back to."""
    if roles:
        verdicts = results.promote(run_id, warehouse, tuple(dict.fromkeys(role.value for role in roles)), lock_wait)
    else:
        verdicts = results.promote_wherever_it_can(run_id, warehouse, lock_wait)
    served = " and ".join(verdict.role for verdict in verdicts)
    _log(f"run {run_id} now serves {served}. SELECT * FROM served_runs;")


@app.command("examples", cls=_Command)
def examples_command(
    name: Annotated[
        Optional[str],
        typer.Argument(
            metavar="NAME",
            help="An example's name (e.g. user_top10): print its SQL. Without it, list the examples.",
            show_default=False,
        ),
    ] = None,
    path: Annotated[
        bool, typer.Option("--path", help="Print the example's file path instead, for the DuckDB CLI's .read.")
    ] = False,
) -> None:
    """The analysts' example queries, shipped with the package: list them, print one, or give its path
    (duckdb -readonly warehouse.duckdb -c ".read $(trainer examples user_top10 --path)")."""
    found = {file.stem: file for file in sorted(EXAMPLES_DIR.glob("*.sql"))}
    if name is None:
        for stem, file in found.items():
            first = file.read_text().splitlines()[0].removeprefix("-- ")
            typer.echo(f"{stem:<24} {first}")
        return
    if name.removesuffix(".sql") not in found:
        raise typer.BadParameter(f"no example {name!r}: choose one of {', '.join(found)}", param_hint="'NAME'")
    file = found[name.removesuffix(".sql")]
    typer.echo(str(file) if path else file.read_text().rstrip("\n"))


def _exit_unless_served(published: results.Published | None) -> None:
    """A run that finished but serves nothing (its audit failed, or it did not beat the runs serving) exits with
    NOT_SERVED, so that a scheduler can tell it from a failure (1) and from a run analysts now see (0)."""
    # Under torchrun a process's non-zero exit fails the whole job: there the log alone says it serves nothing.
    if published is not None and not published.serves and "TORCHELASTIC_RUN_ID" not in os.environ:
        raise typer.Exit(NOT_SERVED)


@app.command("score", cls=_Command)
def score_command(
    run_id: Annotated[
        str,
        typer.Argument(
            metavar="RUN_ID",
            help="The training run whose model scores (SELECT run_id, kind FROM run_metrics lists them).",
            show_default=False,
        ),
    ],
    warehouse: Annotated[
        Path, typer.Option(envvar="WAREHOUSE", help="The warehouse holding the run and the current ratings.")
    ] = Path(DEFAULTS.warehouse),
    users: Annotated[
        Optional[str],
        typer.Option(
            help="Which users to score: comma-separated user ids (e.g. 12,40,6041), or a SQL query over the "
            'warehouse returning one column of user ids (e.g. "SELECT user_id FROM users WHERE age < 25"). '
            "Default: every user with a rating.",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        Optional[datetime],
        typer.Option(
            help="Only users with a rating at or after this time (e.g. 2003-02-01 or 2003-02-01T12:00:00): those "
            "whose ratings may have changed since the last scoring. Combines with --users.",
            show_default=False,
        ),
    ] = None,
    top_n: Annotated[
        Optional[int],
        typer.Option(
            min=1, help="Recommendations per user. Default: as many as the training run wrote.", show_default=False
        ),
    ] = None,
    runs_dir: RunsDir = Path(DEFAULTS.machine.runs_dir),
    device: DeviceOption = "auto",
    threads: Threads = 0,
    lock_wait: LockWait = DEFAULTS.machine.lock_wait_seconds,
    publish_anyway: PublishAnyway = False,
) -> None:
    """Score users with a trained run's model, from the ratings in the warehouse now, without retraining.

    New ratings since the run trained change the predictions, and the movies just rated leave the
    recommendations. The models that take a user's ratings as their input (the default autoencoder, notebook,
    deep-ae, popular and ease) also score users the run never saw, from their ratings alone; the other models
    score the users they know and report the rest. The results are published as a run of kind 'score'
    (runs.parent_run_id names the training run), and recommendations show each user's newest scoring.
    """
    from trainer.score import ScoreOptions, score  # torch is imported only by the commands that need it

    machine = _machine(device, threads, runs_dir, lock_wait, publish_anyway)
    options = ScoreOptions(run_id, warehouse, users, since, top_n, machine)
    used = _threads(threads, say=False)  # said in the summary: an error stays one line
    summary = score(options, log=_log)
    skipped = f", {summary.n_skipped_users:,} skipped" if summary.n_skipped_users else ""
    unseen = (
        (f"; {summary.n_unseen_ratings:,} ratings of {summary.n_unseen_movies:,} movies the model never saw left out")
        if summary.n_unseen_ratings
        else ""
    )
    _log(
        f"scoring run {summary.run_id} of run {summary.parent_run_id}: {summary.n_scored_users:,} users scored"
        f"{skipped}{unseen}; scored in {summary.score_seconds:.2f} s on {_count(used)}, published in "
        f"{summary.publish_seconds:.2f} s. " + _outcome(summary.published)
    )
    _exit_unless_served(summary.published)


@app.command("refit", cls=_Command)
def refit_command(
    run_id: Annotated[
        str,
        typer.Argument(
            metavar="RUN_ID",
            help="The training run to refit, trained with a validation slice (SELECT run_id, model, best_epoch FROM "
            "run_metrics lists them).",
            show_default=False,
        ),
    ],
    warehouse: Annotated[
        Path, typer.Option(envvar="WAREHOUSE", help="The warehouse holding the run, built from the same files.")
    ] = Path(DEFAULTS.warehouse),
    runs_dir: RunsDir = Path(DEFAULTS.machine.runs_dir),
    device: DeviceOption = "auto",
    threads: Threads = 0,
    lock_wait: LockWait = DEFAULTS.machine.lock_wait_seconds,
    publish_anyway: PublishAnyway = False,
    init_from: Annotated[
        Optional[str],
        typer.Option(
            help="For a run that fine-tunes another (glocal-k, started with --init-from): the refit of that other "
            "run, which the refit fine-tunes instead.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train a run's model again from the start on the training side and the validation slice together, for
    the number of epochs the run chose on validation, with its settings and learning-rate drops; score it on
    the test part and publish it as a run of its own (runs.parent_run_id names the run it refits).

    The refit learns from the ratings validation held back, and chooses nothing itself. A blend that names
    it fits its weight on the refitted run's validation predictions and applies it to the refit's test
    predictions."""
    from trainer.refit import RefitOptions, refit_config  # torch is imported only by the commands that train
    from trainer.train import run as train_run

    options = RefitOptions(run_id, warehouse, _machine(device, threads, runs_dir, lock_wait, publish_anyway), init_from)
    try:
        config = refit_config(options)
        _threads(threads, config)
        drops = ""
        if config.lr_drop_epochs:
            drops = f", the learning rate dropping after epoch {', '.join(map(str, config.lr_drop_epochs))}"
        _log(
            f"refitting run {run_id} ({config.model}) on {config.split}'s training side and validation slice: "
            f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}{drops}"
        )
        with _EpochReporter(config.epochs) as report:
            summary = train_run(config, on_epoch=report, log=report.log)
    except Interrupted as stop:  # a refit is a run of its own, resumed as any
        _interrupted(stop)
    _report(summary)


@app.command("blend", cls=_Command)
def blend_command(
    run_ids: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN_ID",
            help="Two or more training runs on the same split of the same data (SELECT run_id, model, split FROM "
            "run_metrics lists them): different models, seeds or settings.",
            show_default=False,
        ),
    ],
    warehouse: Annotated[
        Path, typer.Option(envvar="WAREHOUSE", help="The warehouse holding the runs and their predictions.")
    ] = Path(DEFAULTS.warehouse),
    ridge: Annotated[
        Optional[float],
        typer.Option(
            min=0,
            help="The penalty that pulls the weights towards an equal average of the runs, in the units of a mean "
            "squared error. Default: chosen by cross-validation on the validation slice.",
            show_default=False,
        ),
    ] = None,
    activity: Annotated[
        Optional[bool],
        typer.Option(
            "--activity/--no-activity",
            help="Let each run's weight vary with the user's and the movie's number of training ratings. Default: "
            "whichever cross-validation on the validation slice prefers.",
            show_default=False,
        ),
    ] = None,
    top_n: Annotated[
        int, typer.Option(min=0, help="Recommendations per user, by the blended scores; 0 writes none.")
    ] = DEFAULTS.top_n,
    runs_dir: RunsDir = Path(DEFAULTS.machine.runs_dir),
    device: DeviceOption = "auto",
    threads: Threads = 0,
    lock_wait: LockWait = DEFAULTS.machine.lock_wait_seconds,
    publish_anyway: PublishAnyway = False,
) -> None:
    """Blend training runs: fit a weight per run on their validation predictions, apply the weights to their
    test predictions, and publish the blend as a run of its own (kind 'blend', members and weights in
    runs.members), with a top-N from the runs' models' blended scores. Nothing is retrained, and the test part
    is read only once the weights are fixed."""
    from trainer.blend import BlendOptions, blend  # torch is imported only by the commands that need it

    machine = _machine(device, threads, runs_dir, lock_wait, publish_anyway)
    options = BlendOptions(tuple(run_ids), warehouse, ridge, activity, top_n, machine)
    used = _threads(threads, say=False)  # said in the summary: an error stays one line
    summary = blend(options, log=_log)
    m = summary.metrics
    members = ", ".join(f"{rmse:.4f}" for rmse in summary.member_test_rmse.values())
    _log(
        f"blend {summary.run_id}: test RMSE {m['rmse']:.4f} (members: {members}), MAE {m['mae']:.4f} on "
        f"{m['n']:,} ratings; validation RMSE {summary.validation_rmse:.4f}; {summary.wall_seconds:.2f} s on "
        f"{_count(used)}. " + _ranking_line(summary.ranking) + _outcome(summary.published)
    )
    _exit_unless_served(summary.published)


def _machine(device: Device, threads: int, runs_dir: Path, lock_wait: float, publish_anyway: bool) -> MachineSettings:
    """The machine settings score, refit and blend take from their shared options."""
    return MachineSettings(
        device=device,
        threads=threads,
        runs_dir=str(runs_dir),
        lock_wait_seconds=lock_wait,
        publish_anyway=publish_anyway,
    )


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _widths(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(width) for width in text.split(","))
    except ValueError:
        raise typer.BadParameter(
            f"--hidden takes comma-separated whole numbers, like 500 or 20,10,20, not {text!r}"
        ) from None


def _outcome(published: results.Published, views: str = "recommendations and latest_scoring") -> str:
    """What analysts see of a published run now: the roles it took (a training run or a blend) or, for a scoring
    run, its users' lists in ``views``; and if nothing, why, with the command that serves it anyway."""
    if not published.promoted:
        return (
            f"Not served: the audit failed ({published.audit_reason}). The run is recorded in runs "
            "(SELECT * FROM run_metrics); analysts keep what they had."
        )
    anyway = "" if published.audit_passed else f" It was published despite its audit ({published.audit_reason})."
    said = [anyway.strip()] if anyway else []
    if published.kind == "score":  # a scoring refreshes its run's lists: they show if that run serves them
        (verdict,) = published.roles
        shown = f"Analysts now see it in {views}, for the users it scored" if verdict.serves else "Not shown"
        return " ".join([*said, f"{shown}: {verdict.reason}."])
    for verdict in published.roles:
        view = "recommendations" if verdict.role == "recommendations" else "latest_predictions and latest_run"
        if verdict.serves:
            said.append(f"It now serves {verdict.role} ({view}): {verdict.reason}.")
        else:
            said.append(f"It does not serve {verdict.role}: {verdict.reason}.")
    promotable = [verdict.role for verdict in published.roles if verdict.promotable]
    if promotable:
        said.append(f"To serve it anyway: trainer promote {published.run_id} --as {' --as '.join(promotable)}")
    return " ".join(said)


def _log(message: str) -> None:
    typer.echo(message, err=True)


def _threads(requested: int, config: TrainConfig | None = None, *, say: bool = True) -> int:
    """Set this process's torch threads for the command (trainer/threads.py), before any library function runs:
    --threads N, or with 0 the number chosen from the free cores and ``config``'s training step (with ``say``,
    said at once, and why). Returns the number."""
    import torch

    from trainer.threads import configure, step_work

    choice = configure(requested, step_work(config) if config else None)
    if choice and say:
        _log(choice.describe())
    return torch.get_num_threads()


def _count(threads: int) -> str:
    return f"{threads} CPU thread{'s' if threads != 1 else ''}"


class _EpochReporter:
    """A progress bar with the losses on a terminal; one plain line per epoch otherwise (logs, CI).

    While the bar is live, every message goes through its console (`log`), which prints it above the bar: a
    message written to the terminal past rich would land on the bar's own line."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.reported = 0  # epochs reported so far
        self.progress: Progress | None = None
        if sys.stderr.isatty():
            self.progress = Progress(
                TextColumn("epoch"),
                MofNCompleteColumn(),
                BarColumn(),
                TextColumn("{task.fields[losses]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),  # with the log lines, not on stdout
                transient=False,
            )
            self.task = self.progress.add_task("train", total=epochs, losses="")

    def __enter__(self) -> _EpochReporter:
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress:
            if not self.reported:  # stopped before its first epoch (an error): no empty bar above the message
                self.progress.live.transient = True
            self.progress.stop()

    def log(self, message: str) -> None:
        if self.progress and self.progress.live.is_started:
            self.progress.console.print(message, markup=False, highlight=False, soft_wrap=True)
        else:
            _log(message)

    def __call__(self, metrics: dict[str, Any]) -> None:
        self.reported += 1
        shown = {
            "train RMSE": metrics["train_rmse"],
            "validation RMSE": metrics["validation_rmse"],
            "validation nDCG@10": metrics.get("ndcg@10"),
        }  # (a ranking model's curve has no RMSE)
        losses = "  ".join(f"{name} {value:.4f}" for name, value in shown.items() if value is not None)
        if self.progress:
            self.progress.update(self.task, completed=metrics["epoch"], losses=losses)
        else:
            _log(f"epoch {metrics['epoch']}/{self.epochs}  {losses}  ({metrics['seconds']:.3f} s)")


def entry_point() -> None:
    """The installed `trainer` command (and `python -m trainer`): the app, then an immediate exit.

    Python's teardown of a process that has imported torch is a noticeable share of a whole ml-100k run
    (docs/benchmarks.md), and only frees memory the OS takes back anyway. Every command has
    closed what it wrote (warehouse, checkpoints, staged results) before it returns. os._exit also skips
    atexit handlers, so a profiler should run the app itself through typer's runner:
    python -m cProfile -o run.prof -m typer trainer run --warehouse ...
    """

    try:
        app(prog_name="trainer")
    except SystemExit as done:
        code = done.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
