"""What one selfalign module may take from another: no `_private` name (it is private to its
module: a second user turns it into an interface nobody declared), and one name per concept
(no two classes share a name)."""

from __future__ import annotations

import ast
from collections import defaultdict

from helpers import ROOT

PACKAGE = ROOT / "selfalign"

# (importer, imported module) pairs that exist today, in code owned elsewhere; the list may only
# shrink (a pair that no longer occurs fails too, so it is taken off when it is fixed).
EXEMPT = {
    # the io package's helpers are split over its modules (formats, lines, values, jsonstream)
    ("selfalign.io", "selfalign.io.values"),
    ("selfalign.io.jsonstream", "selfalign.io.formats"),
    ("selfalign.io.jsonstream", "selfalign.io.lines"),
    ("selfalign.io.jsonstream", "selfalign.io.values"),
    ("selfalign.io.lines", "selfalign.io.formats"),
    ("selfalign.io.readers", "selfalign.io.jsonstream"),
    ("selfalign.io.readers", "selfalign.io.lines"),
    ("selfalign.io.readers", "selfalign.io.values"),
    ("selfalign.io.scan", "selfalign.io.jsonstream"),
    ("selfalign.io.scan", "selfalign.io.lines"),
    ("selfalign.io.scan", "selfalign.io.values"),
    ("selfalign.io.values", "selfalign.io.formats"),
    ("selfalign.io.values", "selfalign.io.lines"),
    ("selfalign.io.writers", "selfalign.io.values"),
    ("selfalign.llm.batch_api", "selfalign.llm.transport"),  # _error_text
    ("selfalign.stages.load", "selfalign.stages.load_rows"),  # _EXAMPLES
}


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(encoding="utf-8"))
    return out


def private_imports() -> set[tuple[str, str, str]]:
    """(importer, module, name) of every `from selfalign… import _name` (dunders are public)."""
    found = set()
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("selfalign"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.add((name, str(node.module), alias.name))
    return found


def test_no_module_imports_another_modules_private_names():
    found = private_imports()
    new = sorted(f"{a} imports {n} from {m}" for a, m, n in found if (a, m) not in EXEMPT)
    assert not new, "make the name public (no underscore) or move it: " + "; ".join(new)
    stale = EXEMPT - {(a, m) for a, m, _ in found}
    assert not stale, f"no longer happens, take it off EXEMPT: {sorted(stale)}"


def test_no_two_classes_share_a_name():
    where: dict[str, list[str]] = defaultdict(list)
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(name)
    twice = {cls: mods for cls, mods in where.items() if len(mods) > 1}
    assert not twice, f"one name per concept: {twice}"


def test_the_rules_see_every_module():
    assert len(modules()) > 50 and {"selfalign.runner", "selfalign.io"} <= set(modules())
