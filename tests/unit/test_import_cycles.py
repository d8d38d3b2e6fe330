"""No import cycles among selfalign's modules, counting every import: module-level, inside
functions, and under `if TYPE_CHECKING:`. A cycle makes the import order matter and hides which
layer owns what; a lazy import only hides the circle. And every module sits in one layer of
docs/architecture.md ("Layers") and imports only what its layer may.

The graph is read from the source with `ast` (nothing is imported), so the test is fast and sees
imports that a run would never execute."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PKG = ROOT / "selfalign"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _absolute(mod: str, is_pkg: bool, level: int, name: str | None) -> str:
    """`from ..x import y` inside `mod` → the absolute `selfalign.…x`."""
    if not level:
        return name or ""
    base = mod.split(".")
    base = base if is_pkg else base[:-1]  # a package's own relative base is itself
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The longest selfalign module that `name` is or lies in (an attribute of it)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(mod: str, modules: dict[str, Path]) -> set[str]:
    """Every selfalign module that `mod` imports, anywhere in its source."""
    path = modules[mod]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            src = _absolute(mod, is_pkg, node.level, node.module)
            # `from selfalign.x import y`: y may be a submodule (an edge to it) or a name in x
            targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src for a in node.names]
        else:
            continue
        for t in targets:
            owner = _owner(t, modules)
            if owner and owner != mod:
                found.add(owner)
    return found


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {m: imports_of(m, modules) for m in modules}


def strongly_connected(g: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(g.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def cycle_path(g: dict[str, set[str]], comp: list[str]) -> list[str]:
    """One shortest cycle through the component's first module: a → b → … → a."""
    members, start = set(comp), comp[0]
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(g[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in prev:
                    prev[child] = node
                    nxt.append(child)
        frontier = nxt
    return comp


def test_the_graph_sees_every_kind_of_import() -> None:
    # the check is only as good as its parser: relative, submodule-as-name, function-level and
    # TYPE_CHECKING imports all make edges
    g = graph()
    assert "selfalign.errors" in g["selfalign.engine"]  # module level
    assert "selfalign.llm.base" in g["selfalign.engine"]
    assert "selfalign.context" in g["selfalign.engine"]  # under TYPE_CHECKING
    assert "selfalign.llm.batch" in g["selfalign.engine"]  # inside a function
    assert "selfalign.stages.base" in g["selfalign.stages.llm"]  # `from selfalign.stages.base`


def test_the_finder_reports_a_cycle_with_its_path() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    (comp,) = strongly_connected(g)
    assert comp == ["a", "b", "c"]
    assert cycle_path(g, comp) == ["a", "b", "c", "a"]


def test_no_import_cycles_among_selfalign_modules() -> None:
    g = graph()
    cycles = [" → ".join(cycle_path(g, comp)) for comp in strongly_connected(g)]
    assert not cycles, "import cycles (move the shared name down a layer):\n" + "\n".join(cycles)


# docs/architecture.md, "Layers": bottom to top, by module prefix; a layer may import its own and
# those listed with it. The report reads run dirs only, so it stands on the base alone.
LAYERS: dict[str, tuple[list[str], set[str]]] = {
    "base": (
        ["errors", "registry", "redact", "paths", "text", "terminal", "aio", "config", "prompts"]
        + ["io", "parsers", "manifest", "hf", "selfalign"],
        set(),
    ),
    "llm": (["llm"], {"base"}),
    "engine": (["context", "engine"], {"base", "llm"}),
    "stages": (["stages"], {"base", "llm", "engine"}),
    "report": (["html_report", "sweep_summary", "report"], {"base"}),
    "run": (
        ["settings", "hydra_setup", "specs", "segments", "walk", "checkpoint", "stream", "runner"]
        + ["executors", "outputs", "card", "rundir_lock", "api", "parallel", "sweep"],
        {"base", "llm", "engine", "stages", "report"},
    ),
    "cli": (["cli", "__main__", "commands"], {"base", "llm", "engine", "stages", "report", "run"}),
}
# (importer, imported): upward imports that exist today, each with why; the list may only shrink
LAYER_EXEMPT = {
    # the cost estimate runs the pipeline on the test model (api.run_config) to count its tokens
    ("selfalign.llm.estimate", "selfalign.api"),
}


def layer_of(mod: str) -> str | None:
    for layer, (prefixes, _) in LAYERS.items():
        for p in prefixes:
            full = "selfalign" if p == "selfalign" else f"selfalign.{p}"
            if mod == full or (p != "selfalign" and mod.startswith(full + ".")):
                return layer
    return None


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in all_modules() if layer_of(m) is None)
    assert not missing, f"put these in a layer (docs/architecture.md, 'Layers', and LAYERS here): {missing}"


def test_each_layer_imports_only_what_it_may() -> None:
    g = graph()
    found = set()
    for mod, deps in g.items():
        mine = layer_of(mod)
        if mine is None:
            continue
        allowed = LAYERS[mine][1] | {mine}
        found |= {(mod, d) for d in deps if layer_of(d) not in allowed}
    bad = sorted(f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})" for a, b in found - LAYER_EXEMPT)
    assert not bad, "a layer imports one above it (docs/architecture.md, 'Layers'):\n" + "\n".join(bad)
    stale = LAYER_EXEMPT - found
    assert not stale, f"no longer happens, take it off LAYER_EXEMPT: {sorted(stale)}"
