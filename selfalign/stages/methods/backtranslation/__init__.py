"""Instruction backtranslation (Humpback): the stages only this method needs.

pipelines/backtranslation.yaml composes the generic stages `load`, `filter_rows`,
`segment_text` (stages/segment.py), `sample_rows`, `generate_text` (the backward prompt) and
`export` with the two stages here: `curate_pairs` (self-curation, curate.py) and
`mix_seed_pairs` (seed mix and system tags, mix.py).
"""

from selfalign.stages.methods.backtranslation import curate, mix  # noqa: F401, E402 — register their stages
