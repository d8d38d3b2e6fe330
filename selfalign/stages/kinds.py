"""Every built-in stage kind → the module that registers it. This is the table of contents:
generic stages by what they do, then the stages only one method needs. A module is imported
when a pipeline first uses one of its kinds (`list stages` imports them all), so a run pays
only for the stages it has. tests/unit/test_lazy_imports.py checks the table against what the
modules register.

Where a new stage goes: see docs/architecture.md ("Where does a new stage go?")."""

_S = "selfalign.stages."
_M = "selfalign.stages.methods."

KINDS: dict[str, str] = {
    "classify_text": _S + "classify",  # one label of a closed set per row
    "strip_substrings": _S + "clean",  # cleaning rules on text columns
    "dedup_exact": _S + "dedup",
    "dedup_minhash": _S + "dedup_near",  # near-duplicates across rows
    "dedup_embedding": _S + "dedup_near",
    "embed_similarity": _S + "embed",  # MiniLM cosine between two columns
    "export": _S + "export",  # training views (rows, SFT messages, preference pairs), splits
    "filter_rows": _S + "filters",
    "sample_rows": _S + "filters",
    "generate_text": _S + "generate",  # n samples per row, a parser, fan-out
    "judge_pointwise": _S + "judge",  # weighted 0–100 dimensions and a composite
    "load": _S + "load",  # a dataset file into rows with stable ids
    "unpack_sharegpt": _S + "records",
    "pack_sharegpt": _S + "records",
    "retrieve_evidence": _S + "retrieve",  # BM25 over a local corpus, or a search API
    "segment_text": _S + "segment",  # long documents into pieces
    "select_best": _S + "select",  # best-of-n, longest-of-n, threshold
    # the stages only one method needs
    "grow_topics": _M + "aligners.topics",
    "generate_questions": _M + "aligners.questions",
    "critique_and_correct": _M + "aligners.respond",
    "aligner_text": _M + "aligners.views",
    "export_inspector": _M + "aligners.views",
    "expand_pool": _M + "almost.expand",
    "generate_responses": _M + "almost.responses",
    "build_preferences": _M + "almost.compare",
    "curate_pairs": _M + "backtranslation.curate",
    "mix_seed_pairs": _M + "backtranslation.mix",
    "reformat_response": _M + "realign.reformat",
    "select_rewrite": _M + "realign.select",
    "refine_aaa": _M + "wizardlm_aaa.refine",
}
