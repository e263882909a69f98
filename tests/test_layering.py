"""The packages' layering (docs/development.md): etl and trainer both use warehouse, neither imports the other,
and warehouse imports neither; the command line loads without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"etl": {"trainer"}, "trainer": {"etl"}, "warehouse": {"etl", "trainer"}}


def imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_reaches_into_the_one_it_must_not(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
        if imported_packages(path) & FORBIDDEN[package]
    }
    assert not offenders, offenders


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_the_diagram_in_docs_development_names_every_module(package: str) -> None:
    """The package's box in the diagram that opens docs/development.md lists each of its modules."""
    lines = (ROOT / "docs" / "development.md").read_text().split("```")[1].splitlines()
    top = next(n for n, line in enumerate(lines) if f"│ {package} " in line)
    left = lines[top].index(f"│ {package} ")
    right = lines[top].index("│", left + 1)
    names: set[str] = set()
    for line in lines[top:]:
        if line[left : left + 1] != "│":  # the box's bottom edge
            break
        names |= set(line[left + 1 : right].split())
    modules = {path.stem for path in (ROOT / package).glob("*.py") if not path.stem.startswith("__")}
    assert modules <= names, f"the {package} box of docs/development.md's diagram lacks {sorted(modules - names)}"


def module_level_imports(path: Path) -> set[str]:
    """The trainer modules a module imports when it is imported: its top-level imports, without those under
    `if TYPE_CHECKING:` or inside functions (imported when called)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.startswith("trainer")}


def test_trainer_has_no_import_cycle() -> None:
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for path in (ROOT / "trainer").rglob("*.py")
    }
    graph = {name: module_level_imports(path) & set(modules) - {name} for name, path in modules.items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, "import cycle: " + " -> ".join(visiting[visiting.index(name) :] + [name])
        if name in done:
            return
        visiting.append(name)
        for imported in sorted(graph[name]):
            visit(imported)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_the_command_line_and_the_registry_of_models_load_without_torch() -> None:
    """torch takes seconds to import: `trainer --help`, and the models it lists, need not. One child process: each
    module in turn, so that the first to pull torch in is named."""
    code = (
        "import importlib, sys\n"
        "for name in ('trainer.cli', 'trainer.models.registry', 'trainer.config'):\n"
        "    importlib.import_module(name)\n"
        "    assert 'torch' not in sys.modules, name + ' imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
