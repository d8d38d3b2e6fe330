"""Stage families, one module each. Importing this package imports every module in it, so each
module's @register_stage classes are registered without a central list to edit."""

import importlib
import pkgutil

from selfalign.stages.base import STAGES, Stage, register_stage

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["STAGES", "Stage", "register_stage"]
