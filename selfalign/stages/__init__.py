"""The stages. Built-in kinds are listed in kinds.py and imported on first use (STAGES looks a
kind up there), so importing this package imports no stage module.

Where a new stage goes: see docs/architecture.md ("Where does a new stage go?")."""

from selfalign.stages.base import STAGES, Stage, StageSpec, register_stage

__all__ = ["STAGES", "Stage", "StageSpec", "register_stage"]
