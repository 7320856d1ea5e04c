"""The package's import graph: no cycle, and every import runs with the pipeline of stages
(a module imports only from its own stage or the stages before it). Imports inside functions
count too: a lazy import against the flow is a cycle all the same."""

from __future__ import annotations

import ast
from pathlib import Path

import bayes_spill

PACKAGE = Path(bayes_spill.__file__).resolve().parent
# The pipeline, first to last (docs/HELPERS.md). Top-level modules and subpackages alike.
STAGES = (
    "errors",
    "paper",
    "parallel",
    "data",
    "spillover",
    "config",
    "model",
    "inference",
    "twostep",
    "policy",
    "checking",
    "calibration",
    "api",
    "cli",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: the package's modules it imports, at the top or inside a function}."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bayes_spill"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("bayes_spill"))
        graph[name] = {t for t in targets if t in modules and t not in (name, "bayes_spill")}
    return graph


def stage(module: str) -> int | None:
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_every_module_belongs_to_a_stage():
    unplaced = [m for m in import_graph() if m != "bayes_spill" and stage(m) is None]
    assert not unplaced, f"modules outside the pipeline's stages {STAGES}: {unplaced}"


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, f"import cycles: {found}"


def test_imports_run_with_the_pipeline():
    graph = import_graph()
    graph.pop("bayes_spill")  # the package's __init__ re-exports the public names lazily
    upstream = [f"{m} -> {d}" for m, ds in graph.items() for d in ds if stage(m) < stage(d)]
    assert not upstream, "imports against the pipeline's flow:\n" + "\n".join(sorted(upstream))


def test_the_checks_catch_a_cycle_and_an_upstream_import():
    graph = {"bayes_spill.data.a": {"bayes_spill.model.b"}, "bayes_spill.model.b": {"bayes_spill.data.a"}}
    assert cycles(graph) == [["bayes_spill.data.a", "bayes_spill.model.b"]]
    assert stage("bayes_spill.data.a") < stage("bayes_spill.model.b")
