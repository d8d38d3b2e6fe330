"""ALMoST (Kim et al., EMNLP 2023; naver-ai/almost): the stages only synthetic feedback needs.

`expand_pool` (expand.py, over the query rules and ROUGE-L pool of pool.py) grows a prompt pool
from seeds; `generate_responses` (responses.py) answers every prompt under a grid of named
configurations; `build_preferences` (compare.py) turns the rubric's ranking of those
configurations into chosen/rejected pairs. pipelines/almost.yaml composes them with the generic
`export` (stages/export.py).
"""

from selfalign.stages.methods.almost import compare, expand, pool, responses  # noqa: F401, E402 — register their stages
