"""`etl`: the command line. It parses and checks options, then calls etl.build and etl.download."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from etl.build import EtlOptions, build_warehouse
from etl.datasets import KNOWN_DATASETS, SyntheticLayout
from etl.export import export_features
from warehouse.errors import WarehouseError
from warehouse.swap import DEFAULT_STORAGE_VERSION, StorageVersion
from warehouse.version import print_version

app = typer.Typer(
    help="Load MovieLens files into the DuckDB warehouse: validate, split, and build the rating matrices.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=print_version("etl"), is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Load MovieLens files into the DuckDB warehouse: validate, split, and build the rating matrices."""


def _local_folder_hint(ctx: typer.Context, input_dir: Path) -> str:
    """How to rerun with a local MovieLens folder: the same make goals when make ran `etl` (the Makefile exports
    MAKECMDGOALS), else the command that was run."""
    example = f"/path/to/{input_dir.name if input_dir.name in KNOWN_DATASETS else 'ml-1m'}"
    if "MAKELEVEL" in os.environ:
        return " ".join(["make", *os.environ.get("MAKECMDGOALS", "").split(), f"MOVIELENS_DIR={example}"])
    return f"{ctx.command_path} --input {example}"


def _fraction(value: float) -> float:
    if not 0.0 < value < 1.0:
        raise typer.BadParameter("must be between 0 and 1 (exclusive).")
    return value


@app.command()
def build(
    ctx: typer.Context,
    input_dir: Annotated[
        Path,
        typer.Option(
            "--input",
            envvar="MOVIELENS_DIR",
            file_okay=False,
            help=(
                "The folder holding the MovieLens files (any layout: ml-100k, ml-1m, ml-10m, ml-latest, "
                f"ml-20m/25m/32m). If it does not exist and is named after an official data set "
                f"({', '.join(KNOWN_DATASETS)}), the official zip is downloaded, checked against its pinned "
                "SHA-256 and published MD5 (ml-latest, which changes over time: the MD5 only) and unpacked there."
            ),
        ),
    ] = Path("data/ml-1m"),
    warehouse: Annotated[
        Path,
        typer.Option(envvar="WAREHOUSE", dir_okay=False, help="The DuckDB file to create or replace."),
    ] = Path("warehouse.duckdb"),
    max_bad_rows: Annotated[
        int,
        typer.Option(
            min=0,
            help=(
                "How many bad input rows may be set aside (in the table rejected_rows) while the rest "
                "loads. The default, 0, stops at the first bad row and leaves the warehouse untouched."
            ),
        ),
    ] = 0,
    seed: Annotated[int, typer.Option(help="The seed of the random split and of every validation slice.")] = 42,
    test_fraction: Annotated[
        float,
        typer.Option(
            callback=_fraction, help="The share of ratings held out for testing by the random and temporal splits."
        ),
    ] = 0.1,
    validation_fraction: Annotated[
        float,
        typer.Option(
            callback=_fraction, help="The share of each split's training ratings set aside for model selection."
        ),
    ] = 0.05,
    lock_wait: Annotated[
        float,
        typer.Option(min=0, help="Seconds to wait for another process to release the warehouse before giving up."),
    ] = 30.0,
    memory_limit_mb: Annotated[
        int,
        typer.Option(
            min=64,
            help=(
                "The most memory, in MB, DuckDB may hold while building; past it, it spills to a folder "
                "beside the warehouse (process peak runs a few hundred MB above). Raise it on a big machine."
            ),
        ),
    ] = 3072,
    storage_version: Annotated[
        StorageVersion,
        typer.Option(
            help=(
                "The file format. v1.2.0 is read by DuckDB 1.2 and later, so DuckDB 1.x tools (the duckdb-cli "
                "on PyPI, DBeaver, R, JDBC) open the warehouse as well as DuckDB 2; latest is DuckDB 2's newest "
                "format, which only DuckDB 2 reads. Later writers (trainer runs) keep the file's format."
            )
        ),
    ] = DEFAULT_STORAGE_VERSION,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
) -> None:
    """Build the warehouse from a folder of MovieLens files (downloading an official data set if missing)."""

    def log(message: str) -> None:
        if not quiet:
            typer.echo(message, err=True)

    options = EtlOptions(
        max_bad_rows=max_bad_rows,
        split_seed=seed,
        test_fraction=test_fraction,
        validation_fraction=validation_fraction,
        lock_wait_seconds=lock_wait,
        memory_limit_mb=memory_limit_mb,
        storage_version=storage_version,
    )
    try:
        if input_dir.is_dir():
            folder = input_dir
        else:
            from etl.download import ensure_dataset  # the network code, only when there is something to fetch

            folder = ensure_dataset(input_dir, hint=_local_folder_hint(ctx, input_dir), log=log)
        report = build_warehouse(folder, warehouse, options, log=log)
    except WarehouseError as error:
        typer.echo(f"etl: error: {error}", err=True)
        raise typer.Exit(1) from error
    counts = report.row_counts
    log(
        f"{report.warehouse}: {counts['ratings']:,} ratings, {counts['users']:,} users, "
        f"{counts['movies']:,} movies, {report.rejected:,} rejected rows, in {report.seconds:.2f} s"
    )


@app.command()
def generate(
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            help="The folder to write the MovieLens files into (created if missing; files of the same names are "
            "replaced).",
        ),
    ],
    ratings: Annotated[
        int, typer.Option(min=1, help="How many ratings to write (e.g. 32000000 for an ml-32m-sized set).")
    ],
    users: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            help="How many users (each rates 20 or more movies). Default: one per 160 ratings, as in ml-32m.",
            show_default=False,
        ),
    ] = None,
    movies: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            help="How many movies in the catalogue. Default: 1.1 x ratings^0.65, which gives about ml-100k's "
            "catalogue at 100,000 ratings and ml-32m's at 32 M.",
            show_default=False,
        ),
    ] = None,
    layout: Annotated[
        SyntheticLayout,
        typer.Option(
            help="The file layout. csv writes ratings.csv and movies.csv in half stars (ml-32m); dat writes "
            "ratings.dat, movies.dat and users.dat in whole stars, latin-1 (ml-1m)."
        ),
    ] = "csv",
    seed: Annotated[
        int, typer.Option(help="The seed: the same options and seed always write byte-identical files.")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
) -> None:
    """Write synthetic MovieLens files of any size with the real data's shape, for scale tests."""

    def log(message: str) -> None:
        if not quiet:
            typer.echo(message, err=True)

    from etl.generate import GenerateOptions  # numpy and polars: 0.2 s to import
    from etl.generate import generate as generate_files

    try:
        report = generate_files(GenerateOptions(ratings, users, movies, layout, seed), output, log=log)
    except WarehouseError as error:
        typer.echo(f"etl: error: {error}", err=True)
        raise typer.Exit(1) from error
    log(
        f"{report.folder}: {report.n_ratings:,} ratings, {report.n_users:,} users, {report.n_movies:,} movies; "
        + ", ".join(f"{name} ({size:,} bytes)" for name, size in report.files.items())
    )


@app.command()
def export(
    output: Annotated[
        Path,
        typer.Option(
            "--output", help="The folder to write the Parquet files into; replaced whole once every file is written."
        ),
    ],
    warehouse: Annotated[
        Path, typer.Option(envvar="WAREHOUSE", help="The DuckDB warehouse built by `etl build`; it is only read.")
    ] = Path("warehouse.duckdb"),
    lock_wait: Annotated[
        float,
        typer.Option(min=0, help="Seconds to wait for another process to release the warehouse before giving up."),
    ] = 30.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
) -> None:
    """Write the feature tables as Parquet, for other engines and for `trainer run --features`.

    The user and movie matrices, splits, indexes, dataset and movies; the per-split tables hive-partitioned by
    split."""
    try:
        rows = export_features(warehouse, output, lock_wait)
    except WarehouseError as error:
        typer.echo(f"etl: error: {error}", err=True)
        raise typer.Exit(1) from error
    if not quiet:
        typer.echo(f"{output}: " + ", ".join(f"{table} ({n:,} rows)" for table, n in rows.items()), err=True)
