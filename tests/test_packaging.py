"""A plain install works: the wheel holds every SQL file the runner needs, and the installed commands work
from any folder, finding the SQL through importlib.resources rather than a path into the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"  # what the build reads, copied: the build leaves nothing in the checkout
    for name in ("etl", "trainer", "warehouse", "sql"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, source / name)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(source),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("movielens_ae-*.whl")
    return built


@pytest.mark.slow  # pip builds the wheel in a child process
def test_the_wheel_holds_every_sql_file(wheel) -> None:
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".sql")}
    in_checkout = {path.relative_to(ROOT).as_posix() for path in (ROOT / "sql").rglob("*.sql")}
    assert in_checkout and shipped == in_checkout
    packages = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist() if name.endswith("__init__.py")}
    assert packages == {"etl", "trainer", "warehouse", "sql"}


@pytest.mark.slow
def test_the_installed_commands_work_from_an_empty_folder(wheel, tmp_path, make_movielens_1m) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(
        subprocess.run(
            [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # The dependencies come from this environment's site-packages as a plain path (its .pth files, the
    # checkout's editable install among them, are not processed); the project itself only from the wheel.
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--no-deps",
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    data = make_movielens_1m(tmp_path / "ml-small")
    empty = tmp_path / "empty"
    empty.mkdir()

    # Without PYTHONPATH: a checkout used from it, uninstalled, must not stand in for the installed copy.
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}

    def command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(venv / "bin" / args[0]), *args[1:]], cwd=empty, capture_output=True, text=True, env=environment
        )

    where = command("python", "-c", "import warehouse.sql as s, etl; print(s.SQL_DIR, etl.__file__)").stdout
    assert str(ROOT) not in where and str(venv) in where  # the installed copy, not the checkout
    for args in [
        ("etl", "build", "--input", str(data), "--warehouse", "w.duckdb"),
        ("etl", "export", "--output", "features", "--warehouse", "w.duckdb"),
        # tiny data: the run is served whatever its audit finds, so that recommendations answer below
        ("trainer", "run", "--warehouse", "w.duckdb", "--epochs", "200", "--publish-anyway"),
        (
            "trainer",
            "run",
            "--features",
            "features",
            "--warehouse",
            "absent.duckdb",
            "--epochs",
            "2",
            "--runs-dir",
            "staged",
        ),
    ]:
        done = command(*args)
        assert done.returncode == 0, (args, done.stderr)
        assert args[:2] != ("trainer", "run") or "now serves" in done.stderr or "staged" in done.stderr, done.stderr
        if "--publish-anyway" in args:
            trained = done.stdout.strip()  # its run id, alone on standard output
    (staged,) = (empty / "staged").iterdir()
    assert command("trainer", "publish", str(staged), "--warehouse", "w.duckdb").returncode in (0, 3)
    # on tiny data its lists need not beat the most popular movies': served by hand
    assert command("trainer", "promote", trained, "--warehouse", "w.duckdb").returncode == 0
    with duckdb.connect(str(empty / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM recommendations").fetchall()[0][0] > 0
        assert con.execute("SELECT count(*) FROM runs").fetchall()[0][0] == 2
        (run_id,) = con.execute("SELECT run_id FROM latest_run").fetchall()[0]
    assert command("trainer", "report", run_id, "--warehouse", "w.duckdb").returncode == 0
    assert (empty / "reports" / f"learning-curve-{run_id}.png").exists()
    done = command("trainer", "score", run_id, "--warehouse", "w.duckdb", "--users", "1,2")
    assert done.returncode == 0 and "2 users scored" in done.stderr, done.stderr
    shared = ROOT.parent / "shared" / "data" / "ml-100k"
    if shared.is_dir():  # the bench builds its own warehouses, with the installed ETL
        done = command(
            "trainer",
            "bench",
            "--data-dir",
            str(shared.parent),
            "--datasets",
            "ml-100k",
            "--models",
            "global-mean",
            "--warehouse",
            "bench.duckdb",
            "--markdown",
            "bench.md",
        )
        assert done.returncode == 0, done.stderr
        assert "global-mean" in (empty / "bench.md").read_text()
