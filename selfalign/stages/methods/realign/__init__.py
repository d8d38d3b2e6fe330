"""ReAlign (GAIR-NLP, arXiv 2402.12219): the stages only ReAlign needs.

pipelines/realign.yaml composes the generic stages `load`, `unpack_sharegpt` / `pack_sharegpt`
(selfalign/stages/records.py), `classify_text` (classify.py, over prompts/realign/tasks.yaml),
`retrieve_evidence` (retrieve.py, search.py) and `export` with the two stages of this package:
`reformat_response` (reformat.py: rewrite into the task's format recipe) and `select_rewrite`
(select.py: keep the rewrite or the original by the original's post-filter rules).
"""

# The tasks whose queries get retrieved evidence in the original (its RAG_TASKS); the pipeline's
# `retrieval.categories` lists them (tests/unit/test_realign_retrieve.py keeps the two equal).
RAG_TASKS = ["how_to_generation", "open_qa", "fact_verification", "recommendations", "explain_answer"]

from selfalign.stages.methods.realign import reformat, select  # noqa: F401, E402 — register their stages
