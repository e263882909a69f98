"""trainer/threads.py: the thread count chosen from the usable cores, the other processes' load and the work."""

from __future__ import annotations

import os

import pytest
import torch

from trainer import threads
from trainer.config import resolve
from trainer.threads import SMALL_STEP, Snapshot, busy_between, choose, step_work

LARGE = 10 * SMALL_STEP


@pytest.fixture
def torch_threads():
    """Whatever a test sets, the session keeps its number of torch threads."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("cores", "busy", "work", "expected"),
    [
        (2, 0.0, LARGE, 2),  # idle: every core
        (2, 0.0, None, 2),  # the work not known: the cores decide
        (2, 0.2, LARGE, 2),  # a core 80 % idle is free
        (2, 0.3, LARGE, 1),  # one 70 % idle is not: a neighbour's quarter core costs a thread
        (2, 1.0, LARGE, 1),  # one busy neighbour
        (2, 2.0, LARGE, 1),  # every core busy: one thread still
        (2, 5.0, LARGE, 1),
        (8, 2.5, LARGE, 5),
        (16, 0.0, LARGE, 16),
        (2, None, LARGE, 2),  # the load not known (no /proc/stat): taken as idle
        (2, 0.0, SMALL_STEP / 2, 1),  # a small step: one thread on idle cores too
        (16, 0.0, SMALL_STEP / 2, 1),
        (1, 0.0, LARGE, 1),
    ],
)
def test_the_free_cores_and_the_work_choose(cores, busy, work, expected) -> None:
    choice = choose(cores, busy, work)
    assert choice.threads == expected
    assert f"torch threads: {expected} ({cores} usable core" in choice.describe()


def test_the_log_line_says_why() -> None:
    assert choose(2, 1.04, 0.1e6).describe() == (
        "torch threads: 1 (2 usable cores, 1.0 kept busy by other processes, a small training step "
        "(0.1 M dense multiply-adds); --threads N to override)"
    )
    assert "small" not in choose(2, None, None).describe() and "busy" not in choose(2, None, None).describe()


def test_usable_cores_are_the_affinity_capped_by_the_cgroup_quota(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    v2 = tmp_path / "v2" / "cpu.max"
    v1 = tmp_path / "v1" / "cpu.cfs_quota_us"
    monkeypatch.setattr(threads, "CGROUP_QUOTAS", (v2, v1))
    assert threads.usable_cores() == 4  # no cgroup files
    v2.parent.mkdir()
    v2.write_text("max 100000\n")
    assert threads.usable_cores() == 4
    v2.write_text("150000 100000\n")
    assert threads.usable_cores() == 2  # 1.5 cores' worth: two threads may share it
    v2.write_text("800000 100000\n")
    assert threads.usable_cores() == 4
    v2.unlink()
    v1.parent.mkdir()
    v1.write_text("50000\n")
    (v1.parent / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.usable_cores() == 1
    v1.write_text("-1\n")
    assert threads.usable_cores() == 4


def test_cpu_ticks_read_each_core_busy_and_total(monkeypatch, tmp_path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  300 0 100 900 50 0 10 0 0 0\n"
        "cpu0 200 0 50 400 25 0 5 20 0 0\n"  # steal (20) counts as busy
        "cpu1 100 0 50 500 25 0 5\n"  # an older kernel's shorter line
        "intr 1 2 3\nctxt 7\n"
    )
    monkeypatch.setattr(threads, "PROC_STAT", stat)
    assert threads.cpu_ticks() == {0: (275, 700), 1: (155, 680)}
    monkeypatch.setattr(threads, "PROC_STAT", tmp_path / "absent")
    assert threads.cpu_ticks() == {}


def snap(cores: dict[int, tuple[int, int]], own: float, wall: float) -> Snapshot:
    return Snapshot(cores, own, wall)


def test_busy_is_the_cores_busy_share_less_this_process() -> None:
    start = snap({0: (0, 0), 1: (0, 0), 2: (0, 0)}, own=0.0, wall=0.0)
    # over 1 s: core 0 fully busy, core 1 half, core 2 (not ours) fully
    end = snap({0: (100, 100), 1: (50, 100), 2: (100, 100)}, own=0.0, wall=1.0)
    assert busy_between(start, end, {0, 1}) == pytest.approx(1.5)
    # this process ran 0.5 s of CPU in that second: half a core of that was ours
    assert busy_between(start, end._replace(own_seconds=0.5), {0, 1}) == pytest.approx(1.0)
    assert busy_between(start, end._replace(own_seconds=3.0), {0, 1}) == 0.0  # never below 0
    assert busy_between(snap({}, 0.0, 0.0), snap({}, 0.0, 1.0), {0, 1}) is None  # no /proc/stat


def test_busy_elsewhere_measures_since_the_mark(monkeypatch) -> None:
    samples = iter(
        [
            snap({0: (0, 0), 1: (0, 0)}, 0.0, 0.0),
            snap({0: (100, 100), 1: (10, 100)}, 0.2, 1.0),  # 1.1 cores busy, 0.2 of them this process's
            snap({0: (100, 200), 1: (10, 200)}, 0.2, 2.0),  # then idle
        ]
    )
    monkeypatch.setattr(threads, "snapshot", lambda: next(samples))
    monkeypatch.setattr(threads.time, "monotonic", lambda: 5.0)  # windows long enough: no sleep
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    threads.mark()
    assert threads.busy_elsewhere() == pytest.approx(0.9)
    assert threads.busy_elsewhere() == pytest.approx(0.0)  # from the previous measurement on


def test_step_work_counts_the_dense_products_of_a_step() -> None:
    assert step_work(resolve({})) == 256 * (20 * 10 + 10 * 20)  # the seed autoencoder: 0.1 M
    assert step_work(resolve({"hidden": (500, 500), "batch_size": 100})) == 100 * 500 * 500
    assert step_work(resolve({"model": "notebook"})) == 20 * 10 + 10 * 20  # one user a step
    assert step_work(resolve({"model": "i-autorec"})) == 0  # one hidden layer: sparse products only
    assert step_work(resolve({"model": "mf"})) == 0  # a dot product per rating
    assert step_work(resolve({"model": "deep-ae"})) > SMALL_STEP  # both gained from a second thread
    assert step_work(resolve({"model": "kernel-ae"})) > SMALL_STEP
    assert step_work(resolve({"model": "ease"})) is None  # fitted in closed form: no steps


def test_configure_sets_torch_once_asked(monkeypatch, torch_threads) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.configure(3) is None
    assert torch.get_num_threads() == 3
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 1.0)
    choice = threads.configure(0, LARGE)
    assert choice is not None and choice.threads == 3 and torch.get_num_threads() == 3
    assert threads.configure(0, 1e6).threads == 1 and torch.get_num_threads() == 1  # type: ignore[union-attr]
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the environment's number is an explicit one
    assert threads.configure(0, LARGE) is None and torch.get_num_threads() == 2


def test_prepare_makes_waiting_threads_sleep_unless_told_otherwise(monkeypatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "")  # so that the test's own setting is undone after it
    monkeypatch.delenv("OMP_WAIT_POLICY")
    threads.prepare()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.prepare()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
