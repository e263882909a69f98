"""What the README shows is what happens: every line its console blocks show as printed is in the transcript of
the same session (docs/readme-example.txt, written by `make readme-example`)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def console_output(readme: str) -> list[str]:
    """The lines the README's console blocks show as printed: not the commands, not the elisions (…)."""
    blocks = re.findall(r"```console\n(.*?)```", readme, flags=re.DOTALL)
    shown = [line.rstrip() for block in blocks for line in block.splitlines()]
    return [line for line in shown if line and not line.startswith("$ ") and "…" not in line]


def test_every_printed_line_the_readme_shows_is_in_the_transcript() -> None:
    shown = console_output((ROOT / "README.md").read_text())
    transcript = {line.rstrip() for line in (ROOT / "docs" / "readme-example.txt").read_text().splitlines()}
    assert shown, "the README shows no console output"
    missing = [line for line in shown if line not in transcript]
    assert not missing, f"README lines that the last `make readme-example` did not print: {missing[:5]}"


def test_every_command_the_readme_shows_was_run() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```console\n(.*?)```", readme, flags=re.DOTALL)
    commands = [line for block in blocks for line in block.splitlines() if line.startswith("$ ")]
    transcript = (ROOT / "docs" / "readme-example.txt").read_text().splitlines()
    setup = ("$ pip install", "$ cp -r", "$ printf")  # the user's own steps, done by the script itself
    missing = [c for c in commands if c not in transcript and not c.startswith(setup)]
    assert not missing, f"README commands the transcript does not run: {missing}"
