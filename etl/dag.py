"""The run order of the models, derived from their `-- depends_on:` lines (etl/models.py).

graphlib's TopologicalSorter hands out, round after round, every model whose dependencies are all built:
each round is a stage, whose models may run side by side. Each column test is a node of the graph too,
after its model and, for a relationships test, after the model of the table it points to: it runs in the
first stage where those are built (alongside that stage's models), and nothing waits for it.

A stage names its models in file order (sql/etl/core/ before sql/etl/splits/, and so on), so the build's
log is the same from one run to the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter

from etl.column_tests import ColumnTest
from etl.errors import EtlError
from etl.models import Model


@dataclass
class Stage:
    models: list[Model] = field(default_factory=list)  # to build, in file order
    tests: list[tuple[Model, ColumnTest]] = field(default_factory=list)  # to run, in file and header order


@dataclass(frozen=True)
class _Test:
    """The graph node of a column test: the n-th of its model's."""

    model: str
    n: int


def plan(models: list[Model]) -> list[Stage]:
    """The stages that build ``models``, in order; EtlError naming the file for an unknown name or a cycle."""
    by_name: dict[str, Model] = {}
    for model in models:
        if model.name in by_name:
            raise EtlError(f"{model.file}: {by_name[model.name].file} builds '{model.name}' as well")
        by_name[model.name] = model
    graph: dict[str | _Test, set[str]] = {}
    for model in models:
        for name in model.depends_on:
            if name not in by_name:
                raise EtlError(f"{model.file}: depends on unknown model '{name}'")
        graph[model.name] = set(model.depends_on)
        for n, test in enumerate(model.tests):
            for parent in test.parents:
                if parent not in by_name:
                    raise EtlError(f"{model.file}: a relationships test refers to unknown model '{parent}'")
            graph[_Test(model.name, n)] = {model.name, *test.parents}

    sorter = TopologicalSorter(graph)
    try:
        sorter.prepare()
    except CycleError as error:
        # graphlib lists the cycle so that each node comes before the one that depends on it; reversed,
        # each model is followed by one it depends on.
        cycle = list(reversed(error.args[1]))
        if len(cycle) == 2:
            raise EtlError(f"{by_name[cycle[0]].file}: depends on itself") from error
        raise EtlError(
            f"{by_name[cycle[0]].file}: dependency cycle: {' -> '.join(cycle)} (each depends on the next)"
        ) from error
    stages = []
    while sorter.is_active():
        ready = sorter.get_ready()
        tests = sorted(
            ((by_name[node.model], node.n) for node in ready if isinstance(node, _Test)),
            key=lambda test: (test[0].file, test[1]),
        )
        stage = Stage(
            models=sorted((by_name[node] for node in ready if isinstance(node, str)), key=lambda m: m.file),
            tests=[(model, model.tests[n]) for model, n in tests],
        )
        stages.append(stage)
        sorter.done(*ready)
    return stages


def macros_for(model: Model, models: list[Model]) -> list[Model]:
    """The macro files ``model`` reads, directly or through other macros, each after those it reads:
    what a new connection must run before the model."""
    by_name = {m.name: m for m in models}
    needed: list[Model] = []

    def visit(name: str) -> None:
        macro = by_name[name]
        if not macro.is_macro or macro in needed:
            return
        for dependency in macro.depends_on:
            visit(dependency)
        needed.append(macro)

    for name in model.depends_on:
        visit(name)
    return needed


def runs_apart(model: Model, models: list[Model]) -> bool:
    """Whether ``model`` can run on a connection of its own (a cursor). TEMP tables and views belong to the
    connection that created them: a model that builds one, or reads one (itself, or through a macro), runs
    on the build's connection, as do the macro files. Macros are created again on the new connection
    (macros_for)."""
    if model.is_macro or model.builds_temp:
        return False
    by_name = {m.name: m for m in models}
    reads = [by_name[name] for name in model.depends_on]
    reads += [by_name[name] for macro in macros_for(model, models) for name in macro.depends_on]
    return not any(dependency.builds_temp for dependency in reads)
