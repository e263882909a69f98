"""How many CPU threads torch's arithmetic gets: `--threads N`, or with `--threads 0` (the default) a number chosen
from the machine and the work, once per process, by the command line (trainer/cli.py).

Why not torch's own default, one thread per core: torch's threads (OpenMP's) split every operation between them
and wait for each other at its end. A core that another process holds makes every operation wait for the
slowest share: on this project's 2-core machine, with one other busy process, `trainer run --epochs 50` on
ml-1m trained in 46 s on torch's default of 2 threads against 4.2 s on 1 (docs/benchmarks.md#threads). And
most training steps here are small sparse products (gathers and scatters over a batch's ratings): a second
thread costs more in hand-offs than it saves, even on idle cores (the default model on ml-1m: 2x slower). So:

- the cores this process may use: its CPU affinity (`os.sched_getaffinity`: taskset, cpusets), capped by a
  container's CPU quota (cgroup `cpu.max`);
- less the cores other processes keep busy, measured from the kernel's per-core counters (/proc/stat) over
  a window that ends now and starts when the command started (`mark`, called by the entry point before the
  imports) or at the previous choice, this process's own CPU time taken out; at least 0.1 s, slept if the
  process is younger. The one-minute load average would lag a neighbour that started seconds ago by a
  minute, and count this project's own previous run as one;
- a core is free when the others leave it at least 75 % idle: a neighbour that holds a quarter of a core
  already costs a thread more than it gains, so the rule errs towards fewer threads (at worst, on idle
  cores, a large step runs on one thread less than it could);
- one thread when a training step is small (`step_work`, its dense multiply-adds, below `SMALL_STEP`: measured
  in docs/benchmarks.md#threads), whatever the machine. The default autoencoder's step is 0.1 M; deep-ae's
  and kernel-ae's, whose dense layers did gain from a second thread, are hundreds of millions.

OMP_NUM_THREADS, when set, is taken as `--threads` (0 still chooses where it is not).

The process keeps the number it chose: a neighbour that starts later is not seen. OpenMP's idle threads
sleep instead of spinning while they wait for work (OMP_WAIT_POLICY=PASSIVE, set by `prepare` in the entry
point before torch loads; an explicit setting is kept), so that a thread count that turns out too high
costs less (the figures are in docs/benchmarks.md#threads).
"""

from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from trainer.config import TrainConfig

FREE_CORE = 0.75  # a core counts as free when other processes leave at least this share of it idle
SMALL_STEP = 30e6  # dense multiply-adds per optimiser step below which a second thread did not pay (measured)
MIN_WINDOW = 0.1  # seconds of /proc/stat counters the load is measured over, at least
PROC_STAT = Path("/proc/stat")
CGROUP_QUOTAS = (Path("/sys/fs/cgroup/cpu.max"), Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"))


class Snapshot(NamedTuple):
    """The machine's per-core counters, this process's CPU time, and the clock, at one moment."""

    cores: dict[int, tuple[int, int]]  # core -> (busy, total) clock ticks since boot
    own_seconds: float  # this process's CPU time (user and system), all its threads
    wall: float


_started: Snapshot | None = None


def prepare() -> None:
    """For the entry point, before torch is imported: OpenMP's waiting threads sleep rather than spin, and
    the load measurement's window starts."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    mark()


def mark() -> None:
    """Start the window over which `busy_elsewhere` measures the other processes' load."""
    global _started
    _started = snapshot()


def cpu_ticks() -> dict[int, tuple[int, int]]:
    """Each core's (busy, total) clock ticks since boot, from /proc/stat; empty where there is none. Busy is
    everything but idle and waiting for I/O: a hypervisor's steal counts as busy."""
    ticks = {}
    try:
        lines = PROC_STAT.read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = (int(f) for f in (fields + ["0"] * 8)[:8])
        total = user + nice + system + idle + iowait + irq + softirq + steal  # guest time is inside user's
        ticks[int(name[3:])] = (total - idle - iowait, total)
    return ticks


def snapshot() -> Snapshot:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return Snapshot(cpu_ticks(), own.ru_utime + own.ru_stime, time.monotonic())


def usable_cores() -> int:
    """The cores this process may run on: its affinity, capped by its container's CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cgroup_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else max(1, cores)


def cgroup_quota() -> float | None:
    """The container's CPU quota in cores (cgroup v2's cpu.max, or v1's CFS quota); None when unlimited."""
    for path in CGROUP_QUOTAS:
        try:
            text = path.read_text().split()
            if path.name == "cpu.max":
                quota, period = text[0], text[1]
            else:
                quota, period = text[0], path.with_name("cpu.cfs_period_us").read_text().split()[0]
            if quota not in ("max", "-1") and float(period) > 0:
                return float(quota) / float(period)
            return None
        except (OSError, IndexError, ValueError):
            continue
    return None


def busy_elsewhere() -> float | None:
    """How many of this process's cores other processes kept busy since `mark` or the last call (or over the
    last MIN_WINDOW seconds); None where the kernel does not say (no /proc/stat)."""
    global _started
    start = _started or snapshot()
    if time.monotonic() - start.wall < MIN_WINDOW:
        time.sleep(MIN_WINDOW - (time.monotonic() - start.wall))
    _started = end = snapshot()
    allowed = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set(end.cores)
    return busy_between(start, end, allowed)


def busy_between(start: Snapshot, end: Snapshot, allowed: set[int]) -> float | None:
    """The ``allowed`` cores' busy share between the two snapshots, summed, less this process's own CPU time."""
    cores = allowed & start.cores.keys() & end.cores.keys()
    if not cores:
        return None
    busy = 0.0
    for core in cores:
        ticks = end.cores[core][1] - start.cores[core][1]
        if ticks > 0:
            busy += (end.cores[core][0] - start.cores[core][0]) / ticks
    own = (end.own_seconds - start.own_seconds) / max(end.wall - start.wall, 1e-9)
    return max(0.0, busy - own)


def step_work(config: TrainConfig) -> float | None:
    """The dense multiply-adds of one optimiser step of ``config``'s model, forward: a batch of rows through the
    products between hidden layers (an autoencoder's layers to and from the ratings are sparse products, and a
    factorisation's one dot product per rating: gathers and scatters, which a second thread did not speed up).
    None for a model fitted outside the training loop (closed form, sampling)."""
    from trainer.models.registry import REGISTRY  # imports no torch

    spec = REGISTRY.get(config.model)
    if spec is None or spec.fit:
        return None
    if spec.builder.startswith("trainer.models.factorisation:"):
        return 0.0
    widths = config.hidden
    return float(config.batch_size * sum(a * b for a, b in zip(widths, widths[1:])))


@dataclass(frozen=True)
class Choice:
    """The thread count chosen, and what it was chosen from (for the log line)."""

    threads: int
    cores: int  # usable by this process
    busy: float | None  # of those, kept busy by other processes; None: not measured
    work: float | None  # multiply-adds per training step; None: not a stepped model, or not known

    def describe(self) -> str:
        why = [f"{self.cores} usable core{'s' if self.cores != 1 else ''}"]
        if self.busy is not None:
            why.append(f"{self.busy:.1f} kept busy by other processes")
        if self.work is not None and self.work < SMALL_STEP:
            why.append(f"a small training step ({self.work / 1e6:.1f} M dense multiply-adds)")
        return f"torch threads: {self.threads} ({', '.join(why)}; --threads N to override)"


def choose(cores: int, busy: float | None, work: float | None) -> Choice:
    """The thread count for a process that may use ``cores`` cores, of which other processes keep ``busy`` busy
    (None: not known, taken as idle), about to do ``work`` multiply-adds a training step (None: not known, or
    no steps): the free cores, one at least, and one for small steps."""
    free = cores - (busy or 0.0)
    threads = max(1, min(cores, math.floor(free + (1 - FREE_CORE))))
    if work is not None and work < SMALL_STEP:
        threads = 1
    return Choice(threads, cores, busy, work)


def configure(requested: int, work: float | None = None) -> Choice | None:
    """Set torch's intra-op threads for this process: ``requested``, or when 0 the `choose`n number (returned,
    for the log), unless OMP_NUM_THREADS names one. Process-wide: the command line calls it for each command
    (`trainer bench` before each run), library functions never."""
    import torch

    named = os.environ.get("OMP_NUM_THREADS", "")
    if requested == 0 and named.isdigit() and int(named) > 0:
        requested = int(named)
    choice = choose(usable_cores(), busy_elsewhere(), work) if requested == 0 else None
    torch.set_num_threads(choice.threads if choice else requested)
    return choice
