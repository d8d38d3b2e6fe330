"""Every selfalign module opens with a docstring that says what it is for (one class name per
concept is test_module_boundaries.py's)."""

from __future__ import annotations

import ast

from helpers import ROOT


def test_every_module_opens_with_a_docstring() -> None:
    missing = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "selfalign").rglob("*.py"))
        if not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))
    ]
    assert missing == []
