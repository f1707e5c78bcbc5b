"""The tree shows the processes: no import circles, and each process imports only its own rooms.

The import graph is read from the source (every `import`, including the ones inside functions,
which are still dependencies a reader has to follow), so a circle hidden behind a lazy import
fails here too.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("controller", "solvers", "schemas")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(mod: str, level: int, name: str | None, here: str, is_pkg: bool) -> str:
    if level == 0:
        return mod
    base = here.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([mod] if mod else []))


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (a package counts as its __init__)."""
    files = {(_module_name(p)): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", node.level, None, mod, path.name == "__init__.py")
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                while t and t not in known:  # `from pkg import name`: the module, else the package
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    deps.add(t)
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package_edges(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(a, b) for a, deps in graph.items() for b in deps
            if not b.startswith(a + ".") and not a.startswith(b + ".")}


def test_the_cycle_finder_finds_a_planted_circle() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    graph = import_graph()
    # packages' __init__ re-exporting their modules is not a circle a reader follows
    flat = {m: {d for d in deps if not m.startswith(d + ".") and not d.startswith(m + ".")}
            for m, deps in graph.items()}
    assert cycles(flat) == []


def test_solvers_and_schemas_do_not_import_controller() -> None:
    graph = import_graph()
    upward = sorted((a, b) for a, b in _package_edges(graph)
                    if a.split(".")[0] in ("solvers", "schemas") and b.startswith("controller"))
    assert upward == []


ROOMS = {  # process -> the controller subpackages it may import (besides solvers and schemas)
    "controller.worker.run": ("controller.worker", "controller.common"),
    "controller.router.command": ("controller.router", "controller.common", "controller.sim"),
    "controller.replay.command": ("controller.replay", "controller.common", "controller.worker.windows",
                                  "controller.worker.ingest"),
    "controller.prom_ingest.command": ("controller.prom_ingest", "controller.common"),
    # the render shares the worker's PromQL for KEDA (one definition of the gauge's query)
    "controller.render.command": ("controller.render", "controller.common", "controller.worker.desired_state_metrics"),
}
ALSO = {"controller.worker.run": ["controller.worker.app"],
        "controller.render.command": ["controller.render.k8s", "controller.render.gateway"]}


@pytest.mark.parametrize("entry", sorted(ROOMS))
def test_a_process_imports_only_its_rooms(entry: str) -> None:
    """`llmfleet worker` loads the worker's subpackage, common/, solvers/ and schemas/ only
    (checked in a fresh interpreter, so what another test imported does not count)."""
    modules = [entry, *ALSO.get(entry, [])]
    code = (f"import json, sys, importlib; [importlib.import_module(m) for m in {modules!r}]; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'controller')))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True,
                                       capture_output=True, text=True).stdout)
    allowed = ("controller",) + ROOMS[entry]
    strays = [m for m in loaded if m not in ("controller", "controller.worker") and not any(
        m == room or m.startswith(room + ".") for room in allowed[1:])]
    assert strays == [], f"{entry} imports modules of other processes: {strays}"
