"""Stage families. Importing this package imports every module in it (subpackages included),
so each module's @register_stage classes are registered without a central list to edit."""

import importlib
import pkgutil

from selfalign.stages.base import STAGES, Stage, register_stage

for _mod in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
    if not _mod.name.rsplit(".", 1)[-1].startswith("_"):
        importlib.import_module(_mod.name)

__all__ = ["STAGES", "Stage", "register_stage"]
