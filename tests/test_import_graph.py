"""The node's packages import one another in one direction only.

A cycle between packages (work -> orders -> match -> work, say) means a rule lives in
the wrong place; a cycle between two modules, even one through type hints only, means
two modules that cannot be read apart. Both fail here, naming the modules involved.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mmbcd_node"


def _module_imports() -> dict[str, set[str]]:
    """Module -> the node's modules it imports, type-checking-only imports included."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else module  # top-level modules stand alone


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path of nodes, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_two_packages_import_each_other_even_through_others() -> None:
    modules = _module_imports()
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in modules.items():
        packages[_package(module)] |= {_package(t) for t in targets} - {_package(module)}
    cycle = _cycle(packages)
    assert cycle is None, "package cycle " + " -> ".join(cycle or [])


def test_no_two_modules_import_each_other_even_for_type_hints() -> None:
    cycle = _cycle(_module_imports())
    assert cycle is None, "module cycle " + " -> ".join(cycle or [])


def test_the_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
