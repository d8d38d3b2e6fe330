"""Version information recorded in every run manifest."""

from __future__ import annotations

import platform
from importlib import metadata

from selfalign import __version__

PACKAGES = (
    "hydra-core",
    "omegaconf",
    "pandas",
    "pyarrow",
    "litellm",
    "jinja2",
    "rich",
    "xllamacpp",
    "sentence-transformers",
    "torch",
)


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"selfalign": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
