"""The dApp's ES modules import one way: no cycle, app.js at the top, lib/ self-contained.

A cycle between the page's modules works only as long as nothing a module imports is used while
the modules load; one top-level call added in the wrong place breaks the page in a way no unit
test sees. And lunark/web/lib is an npm package of its own (@lunark/client), so it must not reach
into the page.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

WEB = Path(__file__).resolve().parent.parent / "lunark" / "web"

# `import x from "…"`, `import { a,\n b } from "…"`, `export { a } from "…"`, `import "…"`:
# statements at the start of a line, so the `import("./protocol.js")` of a JSDoc type is not one.
_FROM = re.compile(r"^(?:import|export)\b[^;\"']*?\bfrom\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_BARE = re.compile(r"^import\s*[\"']([^\"']+)[\"']", re.MULTILINE)


def imports_of(path: Path) -> set[str]:
    """The modules of lunark/web that ``path`` imports, as paths relative to lunark/web."""
    text = path.read_text(encoding="utf-8")
    found: set[str] = set()
    for specifier in _FROM.findall(text) + _BARE.findall(text):
        if not specifier.startswith("."):
            continue  # "/vendor/socket.io.esm.min.js", a bare package name: not the page's own
        target = PurePosixPath(path.relative_to(WEB).parent, specifier)
        parts: list[str] = []
        for part in target.parts:
            if part == "..":
                assert parts, f"{path} imports {specifier}, outside lunark/web"
                parts.pop()
            elif part != ".":
                parts.append(part)
        found.add("/".join(parts))
    return found


def import_graph() -> dict[str, set[str]]:
    return {str(p.relative_to(WEB).as_posix()): imports_of(p) for p in sorted(WEB.rglob("*.js"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                return [*path[path.index(child):], child]
            if child not in state and (cycle := visit(child)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_parser_sees_multiline_imports_and_a_cycle() -> None:
    # The check itself, on a known graph: a cycle is found, a tree is not.
    assert find_cycle({"a.js": {"b.js"}, "b.js": {"c.js"}, "c.js": {"a.js"}}) == ["a.js", "b.js", "c.js", "a.js"]
    assert find_cycle({"a.js": {"b.js", "c.js"}, "b.js": {"c.js"}, "c.js": set()}) is None
    assert imports_of(WEB / "app.js") >= {"session.js", "render.js"}  # session.js's import spans lines
    assert "lib/protocol.js" in imports_of(WEB / "lib" / "transport.js")
    assert imports_of(WEB / "lib" / "reducer.js") == set()  # only JSDoc import("./protocol.js") types


def test_the_pages_modules_have_no_import_cycle() -> None:
    graph = import_graph()
    for module, targets in graph.items():
        missing = targets - graph.keys()
        assert not missing, f"{module} imports {sorted(missing)}, which do not exist"
    cycle = find_cycle(graph)
    assert cycle is None, "lunark/web has an import cycle: " + " -> ".join(cycle or [])


def test_app_js_is_the_root_and_reaches_every_page_module() -> None:
    graph = import_graph()
    importers = {target for targets in graph.values() for target in targets}
    assert "app.js" not in importers, "app.js wires the page; no module may import it"
    reached: set[str] = set()
    todo = ["app.js"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(graph[module])
    assert reached == set(graph) - {"lib/index.js"}, f"not reached from app.js: {sorted(set(graph) - reached)}"


def test_lib_imports_nothing_of_the_page() -> None:
    # lunark/web/lib is the @lunark/client package: installed on its own, it has only itself.
    for module, targets in import_graph().items():
        if module.startswith("lib/"):
            outside = sorted(t for t in targets if not t.startswith("lib/"))
            assert not outside, f"{module} imports {outside} from outside lunark/web/lib"
