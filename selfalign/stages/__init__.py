"""Every built-in stage, imported here so the registry is complete. This list is the table of
contents: generic stages by what they do, then the stages only one method needs.

Where a new stage goes: see docs/architecture.md ("Where does a new stage go?")."""

from selfalign.stages import (  # noqa: F401 — imported to register their stages
    classify,  # classify_text: one label of a closed set per row
    clean,  # strip_substrings: cleaning rules on text columns
    dedup,  # dedup_exact
    dedup_near,  # dedup_minhash, dedup_embedding: near-duplicates across rows
    embed,  # embed_similarity: MiniLM cosine between two columns
    export,  # export: training views (rows, SFT messages, preference pairs), splits
    filters,  # filter_rows, sample_rows
    generate,  # generate_text: n samples per row, a parser, fan-out
    judge,  # judge_pointwise: weighted 0–100 dimensions and a composite
    load,  # load: a dataset file into rows with stable ids
    records,  # unpack_sharegpt, pack_sharegpt
    retrieve,  # retrieve_evidence (BM25 over a local corpus, or a search API)
    segment,  # segment_text: long documents into pieces
    select,  # select_best: best-of-n, longest-of-n, threshold
)
from selfalign.stages.base import STAGES, Stage, StageSpec, register_stage
from selfalign.stages.methods import (  # noqa: F401
    aligners,  # grow_topics, generate_questions, critique_and_correct, aligner_text, export_inspector
    almost,  # expand_pool, generate_responses, build_preferences
    backtranslation,  # curate_pairs, mix_seed_pairs
    realign,  # reformat_response, select_rewrite
    wizardlm_aaa,  # refine_aaa
)

__all__ = ["STAGES", "Stage", "StageSpec", "register_stage"]
