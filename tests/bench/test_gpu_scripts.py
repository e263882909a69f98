"""The GPU check's own scripts, on the CPU and in seconds: bench/gpu_bundle_check.py against made-up
bundles, and bench/gpu_check.sh's bookkeeping (every step runs, the summary names what failed)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
CHECK_SH = ROOT / "bench" / "gpu_check.sh"

spec = importlib.util.spec_from_file_location("gpu_bundle_check", ROOT / "bench" / "gpu_bundle_check.py")
bundle_check = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = bundle_check  # dataclasses look their module up there
spec.loader.exec_module(bundle_check)

needs_bash = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and coreutils' timeout"
)


def wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = (), tags: str = "py3-none-any") -> Path:
    """A wheel file with just enough in it: its METADATA's name, version and Requires-Dist lines."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-{tags}.whl"
    metadata = (
        "\n".join(
            [
                "Metadata-Version: 2.1",
                f"Name: {name}",
                f"Version: {version}",
                *(f"Requires-Dist: {line}" for line in requires),
            ]
        )
        + "\n"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}-{version}.dist-info/METADATA", metadata)
    return path


@pytest.fixture
def lists(tmp_path: Path) -> tuple[Path, Path]:
    """constraints.txt with four pins; an image list holding one of them at an unknown version."""
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# pins\nalpha==1.0\nBeta_Pkg==2.0\ngamma==3.0\npolars==2.1.0\n")
    image = tmp_path / "image.txt"
    image.write_text("# the image\nalpha\n")
    return constraints, image


def check(lists: tuple[Path, Path], bundle: Path, *extra: str) -> int:
    constraints, image = lists
    return bundle_check.main(
        [
            "--constraints",
            str(constraints),
            "--image",
            str(image),
            "--bundle",
            str(bundle),
            "--python-version",
            "3.12",
            *extra,
        ]
    )


def test_a_complete_bundle_passes(lists, tmp_path, capsys) -> None:
    bundle = tmp_path / "bundle"
    wheel(
        bundle / "whl",
        "beta_pkg",
        "2.0",
        ("gamma>=3", 'colorama; platform_system == "Windows"', "pytest; extra == 'dev'"),
    )
    wheel(bundle / "whl", "gamma", "3.0", tags="cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64")
    assert check(lists, bundle) == 0
    report = capsys.readouterr().out
    assert "alpha==1.0" in report and "image" in report
    assert "Beta_Pkg==2.0" in report and "bundled" in report
    assert "polars==2.1.0" in report and "left out" in report  # deliberately not carried: no error
    assert report.rstrip().endswith("ok")


def test_a_missing_pin_fails(lists, tmp_path, capsys) -> None:
    bundle = tmp_path / "bundle"
    wheel(bundle / "whl", "beta_pkg", "2.0")
    assert check(lists, bundle) == 1
    report = capsys.readouterr().out
    assert "ERROR: gamma==3.0: neither in the image list nor bundled" in report
    assert "MISSING" in report


def test_wrong_duplicate_uninstallable_and_unmet_wheels_fail(lists, tmp_path) -> None:
    bundle = tmp_path / "bundle"
    wheel(bundle / "whl", "beta_pkg", "2.1", ("delta>=1",))  # another version; needs what nothing holds
    wheel(bundle / "whl", "gamma", "3.0", tags="cp311-cp311-manylinux_2_17_x86_64")  # the wrong Python
    wheel(bundle / "whl", "gamma", "2.9")  # a second gamma
    constraints, image = lists
    report = bundle_check.check_bundle(constraints, image, bundle, "3.12", max_mb=60)
    text = "\n".join(report.errors)
    assert "version 2.1, but Beta_Pkg==2.0 is pinned" in text
    assert "needs delta>=1, which neither the image list nor the bundle holds" in text
    assert "CPython 3.12 on Linux x86-64 cannot install it" in text
    assert "gamma: 2 wheels" in text


def test_a_version_range_on_an_image_package_is_unverified(lists, tmp_path) -> None:
    """The image's version of alpha is not known, so `alpha>=1.5` cannot be checked: only --strict fails."""
    bundle = tmp_path / "bundle"
    wheel(bundle / "whl", "beta_pkg", "2.0", ("alpha>=1.5",))
    wheel(bundle / "whl", "gamma", "3.0")
    assert check(lists, bundle) == 0
    assert check(lists, bundle, "--strict") == 1
    constraints, image = lists
    image.write_text("alpha==1.2\n")  # a known version that is too old: bundle it
    report = bundle_check.check_bundle(constraints, image, bundle, "3.12", max_mb=60)
    assert any("needs alpha>=1.5; the image has 1.2" in error for error in report.errors)


def test_a_bundle_over_the_size_limit_fails(lists, tmp_path) -> None:
    bundle = tmp_path / "bundle"
    wheel(bundle / "whl", "beta_pkg", "2.0")
    wheel(bundle / "whl", "gamma", "3.0")
    (bundle / "data.tar.gz").write_bytes(b"\0" * 2**20)
    constraints, image = lists
    report = bundle_check.check_bundle(constraints, image, bundle, "3.12", max_mb=0.5)
    assert any("over the 0.5 MiB" in error for error in report.errors)


def test_the_real_lists_bundle_what_the_image_lacks() -> None:
    """constraints.txt less the image list less polars: typing_extensions included (pydantic needs >= 4.16)."""
    pins = bundle_check.read_pins(ROOT / "constraints.txt")
    image = bundle_check.read_image(ROOT / "bench" / "gpu_image_packages.txt")
    assert set(image) <= {pin.key for pin in pins}, "the image list names a package constraints.txt does not pin"
    bundled = {pin.key for pin in bundle_check.bundle_pins(pins, image)}
    assert {
        "duckdb",
        "duckdb-engine",
        "sqlalchemy",
        "greenlet",
        "typer",
        "pydantic",
        "pydantic-core",
        "typing-extensions",
        "annotated-types",
        "typing-inspection",
        "shellingham",
        "annotated-doc",
    } <= bundled
    assert not bundled & {"torch", "numpy", "pyarrow", "polars", "polars-runtime-32"}
    assert bundled | set(image) | set(bundle_check.LEFT_OUT) == {pin.key for pin in pins}


def run_check(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GPU_CHECK_", "OUT", "DEVICE"))}
    env.update({"OUT": str(tmp_path / "out"), "DEVICE": "cpu", "PYTHON": sys.executable, **settings})
    return subprocess.run(["bash", str(CHECK_SH)], capture_output=True, text=True, env=env, timeout=60)


def summary_rows(out: Path) -> dict[str, list[str]]:
    rows = {}
    for line in (out / "summary.txt").read_text().splitlines():
        fields = line.split()
        if len(fields) == 4:
            rows[fields[0]] = fields[1:]
    return rows


@needs_bash
def test_a_failed_step_does_not_stop_the_check(tmp_path) -> None:
    done = run_check(tmp_path, GPU_CHECK_DRY="1", GPU_CHECK_FAIL_STEP="train-cached")
    assert done.returncode == 1, done.stdout + done.stderr
    out = tmp_path / "out"
    rows = summary_rows(out)
    assert rows["train-cached"][:2] == ["FAIL", "1"]
    later_steps = (
        "train-streamed",
        "train-i-autorec",
        "train-kernel-ae",
        "train-glocal-k",
        "train-bench",
        "run-metrics",
        "epochs",
    )
    for later in later_steps:
        assert rows[later][:2] == ["pass", "0"], later
    summary = (out / "summary.txt").read_text()
    assert "failed: train-cached\n" in summary
    assert f"passed: setup env tests etl {' '.join(later_steps)}" in summary
    assert summary.rstrip().endswith("result: FAIL")
    assert "dry run: step_epochs" in (out / "check.log").read_text()  # the last step ran
    assert done.stdout.rstrip().endswith("result: FAIL")  # the summary is printed too
    assert len(list(out.iterdir())) <= 8  # what a device machine sends back


@needs_bash
def test_every_step_passing_exits_zero_and_unknown_steps_are_refused(tmp_path) -> None:
    done = run_check(tmp_path, GPU_CHECK_DRY="1", GPU_CHECK_STEPS="setup,etl")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = summary_rows(tmp_path / "out")
    assert rows["setup"][0] == rows["etl"][0] == "pass" and rows["tests"][0] == "skip"
    assert run_check(tmp_path, GPU_CHECK_FAIL_STEP="train-cahced").returncode == 2
    assert run_check(tmp_path, GPU_CHECK_STEPS="etl nope").returncode == 2


@needs_bash
def test_the_epoch_medians_leave_epoch_one_out(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    lines = [
        f"epoch {n}/6  train RMSE 0.9{n}  ({seconds:.3f} s)"
        for n, seconds in enumerate([2.5, 0.040, 0.050, 0.060, 0.070, 0.300], 1)
    ]
    (out / "train-cached.log").write_text("\n".join(["reading", *lines, "epoch 4: validation RMSE stalled"]) + "\n")
    (out / "train-streamed.log").write_text("Traceback: it broke\n")
    done = run_check(tmp_path, GPU_CHECK_STEPS="epochs")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = " ".join((out / "summary.txt").read_text().split())  # spacing aside
    assert "train-cached 6 epochs epoch 1 2.500 s median of epochs 2-6 0.0600 s (min 0.0400, max 0.3000)" in summary
    assert "train-streamed no epoch lines" in summary
    assert "train-i-autorec no log" in summary
    assert "train-kernel-ae no log" in summary


@needs_bash
def test_a_step_over_its_time_limit_is_stopped_and_the_next_runs(tmp_path) -> None:
    slow = tmp_path / "slow-python"
    slow.write_text(f'#!/bin/sh\nsleep 30\nexec {sys.executable} "$@"\n')
    slow.chmod(0o755)
    done = run_check(
        tmp_path,
        PYTHON=str(slow),
        GPU_CHECK_STEP_TIMEOUT="1",
        GPU_CHECK_STEPS="etl epochs",
        GPU_CHECK_FAIL_STEP="epochs",
    )
    assert done.returncode == 1
    rows = summary_rows(tmp_path / "out")
    assert rows["etl"][:2] == ["timeout", "124"]
    assert rows["epochs"][:2] == ["FAIL", "1"]
