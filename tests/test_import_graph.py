"""The shape of the tree (DESIGN.md, issue 17): `protocol` imports none of the components; node,
coordinator and function never import each other (they talk over HTTP only); and no module
imports itself back through others, anywhere. The graph is grimp's (every import, in functions
too, except those under `if TYPE_CHECKING:`, which never run)."""

from __future__ import annotations

import grimp
import pytest

PACKAGES = ("protocol", "node", "coordinator", "worker_function", "libra")
COMPONENTS = ("node", "coordinator", "worker_function")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)


def _imports_between(graph: grimp.ImportGraph, importer: str, imported: str) -> list[str]:
    found = graph.find_matching_direct_imports(import_expression=f"{importer}.** -> {imported}.**")
    found += graph.find_matching_direct_imports(import_expression=f"{importer}.** -> {imported}")
    return sorted(f"{i['importer']} -> {i['imported']}" for i in found)


@pytest.mark.parametrize("other", ["libra", *COMPONENTS])
def test_protocol_imports_no_component(graph: grimp.ImportGraph, other: str) -> None:
    assert _imports_between(graph, "protocol", other) == []


@pytest.mark.parametrize(
    ("importer", "imported"),
    [(a, b) for a in COMPONENTS for b in (*COMPONENTS, "libra") if a != b],
)
def test_components_never_import_each_other(
    graph: grimp.ImportGraph, importer: str, imported: str
) -> None:
    assert _imports_between(graph, importer, imported) == []


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_strongly_connected_finds_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert strongly_connected(edges) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    # A package importing its own submodule (an __init__ re-export) is containment, not a cycle.
    for module, imported in edges.items():
        imported.difference_update({m for m in imported if m.startswith(module + ".")})
    assert strongly_connected(edges) == []
