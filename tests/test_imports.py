"""The import graph: no cycles between symbld's and symblctl's modules, and the client imports nothing of the daemon.

Every import counts, lazy ones inside functions too (they are cycles all the same, only later);
imports under ``if TYPE_CHECKING:`` do not, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("symbld", "symblctl")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # "from pkg import module"
        stack.extend(ast.iter_child_nodes(node))
    return {m for m in found if m in modules}


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    modules = set(files)
    return {name: _imports(ast.parse(path.read_text()), modules) - {name} for name, path in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _package_parents(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # A package's __init__ importing its own submodules is how packages re-export, not a cycle of design.
    return {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}


def test_no_import_cycles() -> None:
    cycles = _cycles(_package_parents(import_graph()))
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_client_imports_nothing_of_the_daemon() -> None:
    graph = import_graph()
    leaks = {m: sorted(d for d in deps if d.split(".")[0] == "symbld")
             for m, deps in graph.items() if m.split(".")[0] == "symblctl"}
    assert not {m: d for m, d in leaks.items() if d}, leaks


def test_the_checker_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# -- layers: which package may import which ---------------------------------------------------------------
# Lowest first. A package imports only packages of its own layer or below, and packages of one layer form no
# cycle between them. Every import counts here, TYPE_CHECKING ones too: a type is a dependency of design.
LAYERS: list[tuple[str, ...]] = [
    ("symblctl",),  # the client and every declaration (commands, events)
    # settings, language tags, the event payload builders and the typed errors every layer above raises
    ("symbld", "symbld.config_check", "symbld.languages", "symbld.config", "symbld.shapes", "symbld.errors"),
    ("symbld.audio", "symbld.engines", "symbld.insights", "symbld.diarization"),  # sources, recognisers, analyses
    ("symbld.core",),  # connections: sessions, the bus, the journal, the service handlers use, ports
    ("symbld.control", "symbld.web", "symbld.gateways", "symbld.integrations"),  # what talks to the world
    ("symbld.app", "symbld.__main__"),  # the wiring
]

# Imports against the layers that are still there, each with why; the test fails when one goes away (strike it
# here) as when a new one comes.
KNOWN_AGAINST_LAYERS: dict[tuple[str, str], str] = {}


def package_of(module: str) -> str:
    """symblctl for the client; symbld.<first part> for the daemon (a subpackage or a top-level module)."""
    parts = module.split(".")
    return "symblctl" if parts[0] == "symblctl" else ".".join(parts[:2])


def package_graph() -> dict[str, dict[str, set[str]]]:
    """package -> imported package -> the module imports that make the edge."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    modules = set(files)
    edges: dict[str, dict[str, set[str]]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        found = {n.name for node in ast.walk(tree) if isinstance(node, ast.Import) for n in node.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        for target in found & modules:
            a, b = package_of(name), package_of(target)
            if a != b:
                edges.setdefault(a, {}).setdefault(b, set()).add(f"{name} -> {target}")
    return edges


def _layer(package: str) -> int:
    for i, layer in enumerate(LAYERS):
        if package in layer:
            return i
    raise AssertionError(f"{package} is in no layer: add it to LAYERS in tests/test_imports.py")


def against_layers(graph: dict[str, dict[str, set[str]]]) -> dict[tuple[str, str], list[str]]:
    """The package edges that go up the layers, with the module imports that make them."""
    return {(a, b): sorted(why) for a, deps in graph.items() for b, why in deps.items() if _layer(b) > _layer(a)}


def test_packages_import_only_their_layer_and_below() -> None:
    against = against_layers(package_graph())
    new = {edge: why for edge, why in against.items() if edge not in KNOWN_AGAINST_LAYERS}
    assert not new, "imports against the layers:\n" + "\n".join(f"{a} -> {b}: {w}" for (a, b), w in new.items())
    gone = set(KNOWN_AGAINST_LAYERS) - set(against)
    assert not gone, f"no longer against the layers (strike them from KNOWN_AGAINST_LAYERS): {sorted(gone)}"


def test_no_package_cycles_besides_the_known_ones() -> None:
    graph = {a: {b for b in deps if (a, b) not in KNOWN_AGAINST_LAYERS} for a, deps in package_graph().items()}
    for a in list(graph):
        graph.update({b: set() for b in graph[a] if b not in graph})
    cycles = _cycles(graph)
    assert not cycles, "package cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_layer_check_sees_an_import_from_above() -> None:
    assert package_of("symbld.web.server") == "symbld.web" and package_of("symbld.app") == "symbld.app"
    assert package_of("symblctl.protocol") == "symblctl"
    graph = {"symbld.core": {"symbld.engines": {"symbld.core.service -> symbld.engines.base"},
                             "symbld.app": {"symbld.core.x -> symbld.app"}},
             "symbld.web": {"symbld.gateways": {"symbld.web.metrics -> symbld.gateways.api_counters"}}}
    assert against_layers(graph) == {("symbld.core", "symbld.app"): ["symbld.core.x -> symbld.app"]}


def test_a_type_checking_import_is_an_edge_between_packages() -> None:
    """web/server.py imports its port (core/ports.py) only for type checking: the package graph still has it."""
    assert "symbld.web.server -> symbld.core.ports" in package_graph()["symbld.web"]["symbld.core"]
