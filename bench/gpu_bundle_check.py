"""What the GPU bundle (.gpu/, made by bench/gpu_bundle.sh) must hold, and whether it holds it.

A GPU machine that reaches no package index runs this project with its own python3, whose image holds
some of constraints.txt's packages (bench/gpu_image_packages.txt lists the ones we count on); the bundle
carries wheels of every other pin, except the ones LEFT_OUT names. This script is the one place that
rule lives: bench/gpu_bundle.sh downloads what `--print-pins` prints, and the default mode checks a
bundle against the same rule.

    python bench/gpu_bundle_check.py                 # check .gpu/whl: exit 1 if a pin is missing
    python bench/gpu_bundle_check.py --print-pins    # the pins the bundle must carry, one a line
    python3 bench/gpu_bundle_check.py --installed    # on the GPU machine: what this interpreter runs

The check reports every pin as held by the image, bundled, or left out on purpose, and fails on a pin
that is none of these, on a wheel at another version than its pin, on two wheels of one package, on a
wheel that the target Python cannot install, on a requirement of a bundled wheel that nothing meets, and
on a bundle too large to carry. A requirement with a version range on a package the image holds at an
unknown version is reported as unverified (an error with --strict): `--installed` checks it on the
machine itself. Standard library only, plus `packaging` (which pip, pytest and matplotlib need anyway).
"""

from __future__ import annotations

import argparse
import email.parser
import importlib.metadata
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

try:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.version import InvalidVersion, Version
except ImportError:  # pragma: no cover - an interpreter without packaging still has pip's copy
    from pip._vendor.packaging.markers import Marker  # type: ignore[assignment]
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[assignment]
    from pip._vendor.packaging.version import InvalidVersion, Version  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
IMAGE = ROOT / "bench" / "gpu_image_packages.txt"
BUNDLE = ROOT / ".gpu"
# What a device call carries is 64 MiB in all, the checkout included: leave it a few MiB.
MAX_MB = 60.0

# Pins that neither the image holds nor the bundle carries, on purpose, with the reason.
LEFT_OUT = {
    "polars": "too big to carry (its runtime wheel is about 54 MB of the 64 MiB a device call carries); "
    "only `etl generate` needs it, and the one test that reads through Polars skips without it",
    "polars-runtime-32": "polars's runtime: left out with polars",
    # The linters make test runs before the tests; the GPU check runs the tests alone.
    "ruff": "a linter: the GPU check runs the tests, not make lint",
    "mypy": "the type checker: the GPU check runs the tests, not make lint",
    "mypy-extensions": "mypy's: left out with mypy",
    "librt": "mypy's: left out with mypy",
    "pathspec": "mypy's: left out with mypy",
    # bayes-fm's Gibbs sampler runs on the CPU only; the trainer imports it for bayes-fm alone, and its tests
    # skip without it. scipy's wheel (about 35 MB) and pandas's would not fit beside the rest.
    "myfm": "bayes-fm's CPU sampler: too big to carry with scipy and pandas, and no GPU path to check",
    "scipy": "myfm's: left out with myfm",
    "pandas": "myfm's: left out with myfm",
    "tqdm": "myfm's: left out with myfm",
    "tzdata": "pandas's: left out with myfm",
    "setuptools": "myfm's (pkg_resources): left out with myfm",
}


def normalize(name: str) -> str:
    """A package name as PEP 503 compares them: Typing_Extensions, typing-extensions -> typing-extensions."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    name: str  # as constraints.txt spells it
    version: str

    @property
    def key(self) -> str:
        return normalize(self.name)

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


def read_pins(path: Path) -> list[Pin]:
    """constraints.txt's `name==version` lines, in order."""
    pins = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)", line)
        if not match:
            raise SystemExit(f"{path}:{number}: not a `name==version` pin: {raw!r}")
        pins.append(Pin(match[1], match[2]))
    return pins


def read_image(path: Path) -> dict[str, str | None]:
    """The image list: normalized name -> version, or None where the image's version is not known."""
    image: dict[str, str | None] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\s*==\s*|\s+)?([^\s=]+)?", line)
        if not match:
            raise SystemExit(f"{path}:{number}: not `name`, `name==version` or `name version`: {raw!r}")
        version = match[2]
        image[normalize(match[1])] = None if version in (None, "any", "unknown", "*") else version
    return image


def bundle_pins(pins: list[Pin], image: dict[str, str | None]) -> list[Pin]:
    """The pins the bundle must carry: constraints.txt's, less the image's and LEFT_OUT's."""
    return [pin for pin in pins if pin.key not in image and pin.key not in LEFT_OUT]


@dataclass
class Wheel:
    path: Path
    name: str
    version: str
    tags: tuple[str, str, str]  # python, abi, platform (each possibly dotted)

    @property
    def key(self) -> str:
        return normalize(self.name)

    def requires(self) -> list[str]:
        with zipfile.ZipFile(self.path) as archive:
            metadata = next((n for n in archive.namelist() if n.endswith(".dist-info/METADATA")), None)
            if metadata is None:
                return []
            message = email.parser.Parser().parsestr(archive.read(metadata).decode("utf-8", "replace"))
        return message.get_all("Requires-Dist") or []


def read_wheel(path: Path) -> Wheel | None:
    parts = path.name[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        return None
    return Wheel(path, parts[0], parts[1], (parts[-3], parts[-2], parts[-1]))


def installable(wheel: Wheel, python_version: str) -> bool:
    """Whether CPython `python_version` on Linux x86-64 can install this wheel (by its filename's tags)."""
    major, minor = (int(part) for part in python_version.split(".")[:2])
    pythons, abis, platforms = (tag.split(".") for tag in wheel.tags)
    platform_ok = any(
        p == "any" or (p.startswith(("manylinux", "linux_")) and p.endswith("_x86_64")) for p in platforms
    )
    python_ok = False
    for tag in pythons:
        stable = re.fullmatch(r"cp(\d)(\d+)", tag)
        plain = tag in ("py3", f"py{major}", f"py{major}{minor}", f"cp{major}{minor}")
        stable_abi = "abi3" in abis and stable and int(stable[1]) == major and int(stable[2]) <= minor
        if plain or stable_abi:
            python_ok = True
    return platform_ok and python_ok


def target_environment(python_version: str) -> dict[str, str]:
    """The marker environment of the GPU machine's python3 (CPython on Linux x86-64)."""
    return {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_version": "",
        "implementation_version": f"{python_version}.0",
        "extra": "",
    }


def applies(requirement: Requirement, environment: dict[str, str] | None) -> bool:
    """Whether a Requires-Dist line applies (not an extra's, and its marker holds there)."""
    if requirement.marker is None:
        return True
    env = {**(environment or {}), "extra": ""}
    return Marker(str(requirement.marker)).evaluate(env)


def satisfies(version: str, requirement: Requirement) -> bool:
    try:
        return requirement.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def check_bundle(constraints: Path, image_list: Path, bundle: Path, python_version: str, max_mb: float) -> Report:
    report = Report()
    pins = read_pins(constraints)
    image = read_image(image_list)
    wheel_dir = bundle / "whl"
    wheels = (
        [w for w in (read_wheel(p) for p in sorted(wheel_dir.glob("*.whl"))) if w is not None]
        if wheel_dir.is_dir()
        else []
    )
    if not wheel_dir.is_dir():
        report.errors.append(f"{wheel_dir} is missing: run bench/gpu_bundle.sh")
    by_key: dict[str, list[Wheel]] = {}
    for wheel in wheels:
        by_key.setdefault(wheel.key, []).append(wheel)
    pinned = {pin.key: pin for pin in pins}

    for key in sorted(image):
        if key not in pinned:
            report.errors.append(f"{key}: in {image_list.name} but not pinned in {constraints.name}")
    for pin in pins:
        held = by_key.get(pin.key, [])
        if pin.key in image:
            where = "image" + (f" ({image[pin.key]})" if image[pin.key] else "")
            if held:
                where += f", and bundled ({', '.join(w.version for w in held)})"
        elif held:
            where = "bundled"
        elif pin.key in LEFT_OUT:
            where = f"left out: {LEFT_OUT[pin.key]}"
        else:
            where = "MISSING: neither in the image list nor bundled"
            report.errors.append(f"{pin}: neither in the image list nor bundled")
        report.lines.append(f"  {str(pin):<28} {where}")

    for key, held in sorted(by_key.items()):
        if len(held) > 1:
            report.errors.append(
                f"{key}: {len(held)} wheels ({', '.join(w.path.name for w in held)}); "
                "two versions of one package stop the whole install"
            )
        for wheel in held:
            if key not in pinned:
                report.errors.append(f"{wheel.path.name}: not pinned in {constraints.name}")
            elif wheel.version != pinned[key].version:
                report.errors.append(f"{wheel.path.name}: version {wheel.version}, but {pinned[key]} is pinned")
            if not installable(wheel, python_version):
                report.errors.append(f"{wheel.path.name}: CPython {python_version} on Linux x86-64 cannot install it")

    environment = target_environment(python_version)
    for wheel in wheels:
        for line in wheel.requires():
            requirement = Requirement(line)
            if not applies(requirement, environment):
                continue
            need = normalize(requirement.name)
            spec = str(requirement.specifier)
            if need in by_key:
                if not any(satisfies(w.version, requirement) for w in by_key[need]):
                    report.errors.append(
                        f"{wheel.name} {wheel.version} needs {requirement.name}{spec}; the bundle "
                        f"has {', '.join(w.version for w in by_key[need])}"
                    )
            elif need in image:
                known = image[need]
                if known is not None:
                    if not satisfies(known, requirement):
                        report.errors.append(
                            f"{wheel.name} {wheel.version} needs {requirement.name}{spec}; the image "
                            f"has {known}: bundle it"
                        )
                elif spec:
                    report.unverified.append(
                        f"{wheel.name} {wheel.version} needs {requirement.name}{spec}; the image's "
                        "version is not known here"
                    )
            else:
                report.errors.append(
                    f"{wheel.name} {wheel.version} needs {requirement.name}{spec}, which neither the "
                    "image list nor the bundle holds"
                )

    if bundle.is_dir():
        size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()) / 2**20
        report.lines.append(f"  {bundle.name}: {size:.1f} MiB in all ({len(wheels)} wheels), limit {max_mb:g} MiB")
        if size > max_mb:
            report.errors.append(
                f"{bundle}: {size:.1f} MiB, over the {max_mb:g} MiB a device call can carry beside the checkout"
            )
    return report


def check_installed(constraints: Path, image_list: Path) -> Report:
    """The running interpreter (the GPU machine's python3 with the bundle on PYTHONPATH): each pin's version."""
    report = Report()
    image = read_image(image_list)
    for pin in read_pins(constraints):
        try:
            dist = importlib.metadata.distribution(pin.name)
        except importlib.metadata.PackageNotFoundError:
            if pin.key in LEFT_OUT:
                report.lines.append(f"  {str(pin):<28} not installed (left out on purpose)")
            else:
                report.lines.append(f"  {str(pin):<28} NOT INSTALLED")
                report.errors.append(f"{pin}: not installed")
            continue
        version = dist.version
        same = "same" if version == pin.version or version.split("+")[0] == pin.version else "differs"
        report.lines.append(f"  {str(pin):<28} {version:<14} {same:<8} {dist.locate_file('')}")
        for line in dist.requires or []:
            requirement = Requirement(line)
            if not applies(requirement, None):
                continue
            try:
                have = importlib.metadata.version(requirement.name)
            except importlib.metadata.PackageNotFoundError:
                have = None
            if have is None or not satisfies(have, requirement):
                problem = (
                    f"{dist.metadata['Name']} {version} needs {requirement.name}{requirement.specifier}, "
                    f"installed: {have or 'none'}"
                )
                # A clash inside the image is the image's; one that a bundled package has is ours to fix.
                (report.unverified if pin.key in image else report.errors).append(problem)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--constraints", type=Path, default=CONSTRAINTS, help="The pins (default: constraints.txt).")
    parser.add_argument(
        "--image",
        type=Path,
        default=IMAGE,
        help="The packages the GPU image holds (default: bench/gpu_image_packages.txt).",
    )
    parser.add_argument(
        "--bundle", type=Path, default=BUNDLE, help="The bundle folder, wheels in its whl/ (default: .gpu)."
    )
    parser.add_argument("--python-version", default="3.12", help="The GPU machine's Python (default 3.12).")
    parser.add_argument(
        "--max-mb", type=float, default=MAX_MB, help=f"The bundle's size limit in MiB (default {MAX_MB:g})."
    )
    parser.add_argument("--strict", action="store_true", help="Unverified requirements are errors too.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--print-pins", action="store_true", help="Print the pins the bundle must carry, and stop.")
    mode.add_argument(
        "--installed",
        action="store_true",
        help="Check the running interpreter instead: each pin's installed version, and their needs.",
    )
    args = parser.parse_args(argv)

    if args.print_pins:
        for pin in bundle_pins(read_pins(args.constraints), read_image(args.image)):
            print(pin)
        return 0
    if args.installed:
        print(f"Python {sys.version.split()[0]}: pinned version, running version, where")
        report = check_installed(args.constraints, args.image)
    else:
        print(
            f"{args.bundle / 'whl'} for CPython {args.python_version}, against {args.constraints.name} and "
            f"{args.image.name}:"
        )
        report = check_bundle(args.constraints, args.image, args.bundle, args.python_version, args.max_mb)
    print("\n".join(report.lines))
    for line in report.unverified:
        print(f"unverified: {line}")
    for line in report.errors:
        print(f"ERROR: {line}")
    failed = bool(report.errors) or (args.strict and bool(report.unverified))
    print("FAILED" if failed else "ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
