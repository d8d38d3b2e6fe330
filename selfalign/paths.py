"""Where the shipped conf/, pipelines/, prompts/ and sample data live (source checkout or wheel)."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# In a source checkout (or `pip install -e .`) they sit beside the package; a built wheel carries
# them inside the package as selfalign/_data/<name> (see [tool.hatch] in pyproject.toml).
_CANDIDATES = (PACKAGE_DIR.parent, PACKAGE_DIR / "_data")


def resource_dir(name: str) -> Path:
    """conf | pipelines | prompts | samples."""
    if name == "samples":  # plain package data, the same in both layouts
        return PACKAGE_DIR / "samples"
    for root in _CANDIDATES:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(f"selfalign resource folder '{name}' not found beside {PACKAGE_DIR}")


def sample_path(name: str) -> str:
    """Absolute path of a shipped sample data file, used by the `${sample:NAME}` resolver."""
    path = resource_dir("samples") / name
    return str(path)
