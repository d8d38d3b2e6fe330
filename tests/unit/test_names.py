"""One name per concept: no two classes of selfalign share a name, every module says what it is for."""

from __future__ import annotations

import ast
from collections import defaultdict

from helpers import ROOT


def _modules() -> dict[str, ast.Module]:
    return {
        str(p.relative_to(ROOT)): ast.parse(p.read_text(encoding="utf-8"))
        for p in sorted((ROOT / "selfalign").rglob("*.py"))
    }


def test_no_two_classes_share_a_name() -> None:
    """Two `Step`s (the runner's segment step, refine_aaa's co-teacher) once meant different things."""
    where = defaultdict(list)
    for path, tree in _modules().items():
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                where[node.name].append(path)
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}


def test_every_module_opens_with_a_docstring() -> None:
    assert [path for path, tree in _modules().items() if not ast.get_docstring(tree)] == []
