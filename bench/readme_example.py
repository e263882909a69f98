"""Run the README's console session on ml-1m and write what each command printed (`make readme-example`).

The README's console blocks are copied from this transcript (docs/readme-example.txt), and
tests/test_readme.py fails when a line they show is not in it: what the README shows is what happens.
The session runs in the repository (the commands are the README's), with its warehouse, its copy of ml-1m
(ml-1m-today) and its runs in a scratch folder, so a user's own warehouse is never touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRANSCRIPT = ROOT / "docs" / "readme-example.txt"
DUCKDB_CLI = "duckdb-cli==1.5.6"  # the DuckDB 1.x CLI from PyPI, which the README tells analysts to install

# user 1 rates two of the films recommended to them, a new user 6041 rates three (appended to ml-1m-today)
NEW_RATINGS = (
    "1::{0}::2::1100000000\n1::{1}::5::1100000060\n6041::260::5::1100000120\n6041::2571::5::1100000180\n"
    "6041::1::4::1100000240\n"
)
NEW_USER = "6041::F::25::4::02139\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ml-1m", help="ml-1m's files")
    parser.add_argument("--out", type=Path, default=TRANSCRIPT, help="where to write the transcript")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="readme-run-"))
    env = {**os.environ, "WAREHOUSE": str(scratch / "warehouse.duckdb"), "COLUMNS": "120"}
    cli = _duckdb_cli(scratch)
    lines: list[str] = []

    def shell(command: str, shown: str | None = None) -> str:
        """Run a README command in the repository; record it (as ``shown``) and what it printed."""
        done = subprocess.run(command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True)
        output = done.stdout + done.stderr
        lines.extend([f"$ {shown or command}", *output.rstrip("\n").splitlines()])
        if done.returncode:
            lines.append(f"[exit {done.returncode}]")
        print(lines[-1], file=sys.stderr)
        return done.stdout

    warehouse = env["WAREHOUSE"]
    shell(f"make etl MOVIELENS_DIR={os.path.relpath(args.data, ROOT)}")
    shell("make train")
    shell(".venv/bin/trainer run --epochs 3")  # a quick smoke run: recorded, not served (exit 3)
    query = f'{cli} -readonly {warehouse} -c "SET VARIABLE user_id = 1" -c ".read sql/examples/user_top10.sql"'
    shell(query, query.replace(str(cli), "duckdb").replace(warehouse, "warehouse.duckdb"))
    top = [
        row.split(",")[0]
        for row in shell(
            f'{cli} -readonly -csv -noheader {warehouse} -c "SELECT movie_id '
            'FROM recommendations WHERE user_id = 1 ORDER BY rank LIMIT 2"',
            "(the movie ids of user 1's first two)",
        ).split()
    ]
    today = scratch / "ml-1m-today"
    shutil.copytree(args.data, today)
    with (today / "ratings.dat").open("a") as ratings:
        ratings.write(NEW_RATINGS.format(*top))
    with (today / "users.dat").open("a") as users:
        users.write(NEW_USER)
    lines.append(
        f"(appended to ml-1m-today: user 1 rates movies {top[0]} (2 stars) and {top[1]} (5 stars); "
        "user 6041 rates 260, 2571 and 1)"
    )
    shell(f"make etl MOVIELENS_DIR={today}", "make etl MOVIELENS_DIR=ml-1m-today")
    served = shell(
        f'{cli} -readonly -csv -noheader {warehouse} -c "SELECT run_id FROM served_runs WHERE role = '
        "'recommendations'\"",
        "(the run serving recommendations)",
    ).strip()
    shell(f".venv/bin/trainer score {served} --since 2004-01-01")
    changed = f'{cli} -readonly {warehouse} -line -c ".read sql/examples/changed_recommendations.sql"'
    shell(changed, changed.replace(str(cli), "duckdb").replace(warehouse, "warehouse.duckdb"))
    args.out.write_text("\n".join(line.replace(str(scratch), "/tmp/readme-run") for line in lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


def _duckdb_cli(scratch: Path) -> Path:
    """The DuckDB 1.x CLI, installed from PyPI into a virtual environment of its own."""
    venv = scratch / "duckdb-cli"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", DUCKDB_CLI], check=True)
    return venv / "bin" / "duckdb"


if __name__ == "__main__":
    main()
