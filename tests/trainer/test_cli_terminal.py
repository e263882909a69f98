"""`trainer run` in a terminal and under Ctrl-C, in real child processes: what a user sees, not what CliRunner
captures (CliRunner's output is no terminal, so it never shows the progress bar)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import torch

from trainer import checkpoint

# The child: `trainer` itself (trainer.cli.entry_point), with Python's own Ctrl-C handler even where this test
# runs with SIGINT ignored (a background job), as in a user's terminal.
TRAINER = [
    sys.executable,
    "-c",
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from trainer.cli import entry_point; entry_point()",
]
BAR = "━"  # rich's bar

pytestmark = pytest.mark.slow  # every test trains in a child process


def _env(**extra: str) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else ""), **extra}


def screen(output: str) -> list[str]:
    """The lines a terminal shows after ``output``: enough of a VT100 for rich's live display (carriage return,
    line feed, cursor up and down, erase line, colours and cursor visibility ignored)."""
    lines: list[list[str]] = [[]]
    row = col = 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b.|.|\n", output, flags=re.DOTALL):
        if token.startswith("\x1b["):
            number = int(re.sub(r"\D", "", token[2:-1]) or "1") if token[-1] in "ABG" else 0
            if token[-1] == "A":
                row = max(row - number, 0)
            elif token[-1] == "B":
                row += number
            elif token[-1] == "G":
                col = number - 1
            elif token[-1] == "K":  # 2K: the whole line; K, 0K: from the cursor on
                lines[row][:] = [] if token[2:-1] == "2" else lines[row][:col]
        elif token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
        elif not token.startswith("\x1b"):
            line = lines[row]
            line.extend(" " * (col - len(line)))
            line[col : col + 1] = [token]
            col += 1
        while len(lines) <= row:
            lines.append([])
    return ["".join(line).rstrip() for line in lines]


def run_in_terminal(args: list[str], timeout: float = 120.0) -> tuple[int, str]:
    """Run ``trainer args`` with a pseudo-terminal (120 columns) as its stdin, stdout and stderr; its exit code and
    everything it wrote."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    child = subprocess.Popen(
        [*TRAINER, *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=_env(TERM="xterm-256color", COLUMNS="120"),
        close_fds=True,
    )
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if not ready:
                if child.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every copy of the terminal closed, the child is done
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(controller)
        if child.poll() is None and time.monotonic() >= deadline:
            child.kill()
    return child.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def test_log_lines_never_share_the_progress_bars_line(warehouse, tmp_path) -> None:
    # (--publish-anyway: a run on the tiny data may fail its audit; what matters here is the screen, not the verdict)
    code, output = run_in_terminal(
        [
            "run",
            "--warehouse",
            str(warehouse),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--epochs",
            "30",
            "--eval-every",
            "1",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--publish-anyway",
        ]
    )
    shown = screen(output)
    assert code == 0, "\n".join(shown)
    assert BAR in output, "no progress bar: the child did not see a terminal"
    # Logged while the bar is live: the data set's line before the first epoch, the selection after the last.
    logged = ["split random:", "selected epoch", "test RMSE"]
    for phrase in logged:
        holding = [line for line in shown if phrase in line]
        assert holding, (phrase, "\n".join(shown))
        assert not any(BAR in line or "/30" in line for line in holding), "\n".join(shown)
    bars = [line for line in shown if BAR in line]
    assert len(bars) == 1 and bars[0].startswith("epoch 30/30"), "\n".join(shown)


def interrupted_run(warehouse: Path, runs: Path, after: str, *args: str) -> tuple[int, str]:
    """`trainer run` in a child, sent SIGINT once it has printed the line starting with ``after``; its exit code and
    stderr."""
    child = subprocess.Popen(
        [
            *TRAINER,
            "run",
            "--warehouse",
            str(warehouse),
            "--runs-dir",
            str(runs),
            "--epochs",
            "5000",
            "--patience",
            "0",
            "--device",
            "cpu",
            "--threads",
            "1",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert child.stderr is not None
    seen = []
    for line in child.stderr:  # not a terminal: one plain line per epoch
        seen.append(line)
        if line.startswith(after):
            child.send_signal(signal.SIGINT)
            break
    _, rest = child.communicate(timeout=120)
    return child.returncode, "".join(seen) + rest


def test_ctrl_c_says_where_the_checkpoint_is_and_how_to_resume(warehouse, tmp_path) -> None:
    # A checkpoint after every epoch: once epoch 2 is reported, epoch 1's is on disk (2's may be, or be half written)
    code, said = interrupted_run(warehouse, tmp_path / "runs", "epoch 2/", "--checkpoint-seconds", "0")
    assert code == 130, said
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert f"trainer run --resume {run_dir}\n" in said, said
    assert "Traceback" not in said and "KeyboardInterrupt" not in said, said
    epoch = int(re.search(r"The last checkpoint, after epoch (\d+), is (\S+)\.", said)[1])  # type: ignore[index]
    assert f"is {run_dir / checkpoint.FILE_NAME}." in said
    assert checkpoint.load(run_dir, torch.device("cpu"))["epoch"] == epoch >= 1


def test_ctrl_c_before_the_first_checkpoint_says_there_is_nothing_to_resume(warehouse, tmp_path) -> None:
    code, said = interrupted_run(warehouse, tmp_path / "runs", "epoch 1/", "--checkpoint-seconds", "3600")
    assert code == 130, said
    assert "before the run's first checkpoint" in said and "--resume" not in said, said
    assert "Traceback" not in said, said
