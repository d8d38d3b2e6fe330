"""Aligners (Ngweta et al., arXiv 2403.04224): the stages only this method needs.

`grow_topics` (topics), `generate_questions` (questions), `critique_and_correct` (respond),
`aligner_text` and `export_inspector` (views). The pipeline (pipelines/aligners.yaml) composes
them with the generic `load`, `filter_rows`, `dedup_exact`, `sample_rows`, `strip_substrings`
(stages/clean.py), `embed_similarity` (stages/embed.py) and `export`; the domain (prompt, focus,
markers) is the config group conf/domain/.
"""

from selfalign.stages.methods.aligners import questions, respond, topics, views  # noqa: F401, E402 — register their stages
