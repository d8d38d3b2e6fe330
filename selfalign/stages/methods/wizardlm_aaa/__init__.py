"""WizardLM-2 "AI Align AI" (Navigator Self-Align): the stage only this method needs.

pipelines/wizardlm_aaa.yaml composes the generic stages `load`, `generate_text`
(stages/generate.py), `judge_pointwise` (stages/judge.py), `select_best` (stages/select.py) and
`export` with `refine_aaa` here (refine.py: co-teaching chain, suggestions, self-teaching,
re-judge with the judge stage's own Scorer). Its generate → judge → select → refine phase is
written once in conf/phase/aaa/ and mounted for the instruction and for the response.
"""

from selfalign.stages.methods.wizardlm_aaa import refine  # noqa: F401, E402 — register their stages
