"""expand_pool on the test model: requests, novelty filter, determinism, limits, config errors."""

import json
import re

import pandas as pd
import pytest
from helpers import make_stage, run_stage

from selfalign.errors import ConfigError, StageError
from selfalign.paths import sample_path
from selfalign.stages.methods.almost.pool import RougePool, read_seed_file

SEEDS = sample_path("almost_seed_prompts.txt")


def capture(ctx):
    """Record every request the stage sends (it still goes to the test model)."""
    seen = []
    real = ctx.llm.call

    async def call(stage, ref, req, *rest):
        seen.append(req)
        return await real(stage, ref, req, *rest)

    ctx.llm.call = call
    return seen


def pool_stage(ctx, **params):
    return make_stage(
        "expand_pool", ctx, "pg", seed_file=SEEDS, system_prompt="almost/expand_pool_system", **params
    )


# --- expand_pool ----------------------------------------------------------------------------------


def test_expand_pool_requests_follow_the_original(ctx):
    seen = capture(ctx)
    out = run_stage(pool_stage(ctx, num_generation=4), pd.DataFrame())
    assert len(out) == 4 and set(out.source) == {"generated"}
    assert list(out.row_id) == ["q00000", "q00001", "q00002", "q00003"]
    instruction, seeds = read_seed_file(SEEDS, "t")
    for i, req in enumerate(seen):
        user = req.message_dicts[-1]["content"]
        assert user.startswith(instruction + "\n\n") and user.endswith("\nQuery:")
        examples = re.findall(r"^Query: (.+)$", user, flags=re.M)
        assert len(examples) == 10 and len(set(examples)) == 10
        assert req.param_dict == {"temperature": 1.2, "top_p": 0.9, "max_tokens": 64}
        assert req.sample == i  # one sample index per attempt: distinct cache keys
    assert set(re.findall(r"^Query: (.+)$", seen[0].message_dicts[-1]["content"], re.M)) <= set(seeds)


def test_expand_pool_accepts_only_novel_prompts_and_counts_rejections(ctx):
    out = run_stage(pool_stage(ctx, num_generation=12), pd.DataFrame())
    assert len(out) == 12
    pool = RougePool(0.5)
    for s in read_seed_file(SEEDS, "t")[1] + list(out.prompt):
        assert pool.similar(s) is None or s in read_seed_file(SEEDS, "t")[1]
        pool.add(s)
    drops = ctx.stats.stage("pg").drops
    assert drops["too_similar"] >= 1 and drops["too_short"] >= 1  # the test model makes both
    rejected = [json.loads(x) for x in (ctx.run_dir / "rejected.jsonl").read_text().splitlines()]
    assert sum(drops.values()) == len(rejected)
    similar = [r for r in rejected if r["reason"] == "too_similar"]
    assert similar and similar[0]["rouge_l"] >= 0.5 and similar[0]["similar_to"]


def test_expand_pool_is_deterministic(ctx, tmp_path):
    first = run_stage(pool_stage(ctx, num_generation=6, batch_size=3), pd.DataFrame())
    ctx.llm.cache = None  # the second run must not merely replay the cache
    second = run_stage(pool_stage(ctx, num_generation=6, batch_size=3), pd.DataFrame())
    assert list(first.prompt) == list(second.prompt)


def test_skip_first_takes_the_second_query(ctx):
    out = run_stage(pool_stage(ctx, num_generation=3, parse="skip_first"), pd.DataFrame())
    # the test model's second line is "Query: W w w w w N?" (5 words and a number)
    assert all(re.fullmatch(r"[A-Z][a-z]+( [a-z]+){4} \d+\?", p) for p in out.prompt)
    first = run_stage(pool_stage(ctx, num_generation=3), pd.DataFrame())
    assert not any(re.fullmatch(r"[A-Z][a-z]+( [a-z]+){4} \d+\?", p) for p in first.prompt)


def test_max_attempts_bounds_the_loop(ctx):
    seen = capture(ctx)
    out = run_stage(pool_stage(ctx, num_generation=50, max_attempts=5), pd.DataFrame())
    assert len(seen) == 5 and len(out) <= 5
    with pytest.raises(StageError, match=r"max_attempts=3 reached with \d+/50 .*Raise max_att"):
        run_stage(pool_stage(ctx, num_generation=50, max_attempts=3, on_exhausted="fail"), pd.DataFrame())


def test_keep_seeds_and_small_seed_sets(ctx, tmp_path):
    f = tmp_path / "seeds.txt"
    f.write_text("Write a question.\nWhat is the tallest mountain on Earth?\nHow do bees fly?\n")
    seen = capture(ctx)
    out = run_stage(
        make_stage("expand_pool", ctx, "pg", seed_file=str(f), num_generation=2, keep_seeds=True),
        pd.DataFrame(),
    )
    assert list(out.source) == ["seed", "seed", "generated", "generated"]
    assert seen[0].message_dicts[-1]["content"].count("Query:") == 3  # k = min(10, pool size)


def test_expand_pool_config_errors(ctx, tmp_path):
    with pytest.raises(ConfigError, match="seed_file` is required"):
        make_stage("expand_pool", ctx, "pg")
    with pytest.raises(ConfigError, match=r"pg\.seed_file: seed prompt file .* not found"):
        make_stage("expand_pool", ctx, "pg", seed_file=str(tmp_path / "none.txt"))
    with pytest.raises(
        ConfigError,
        match=r"pg\.prompt: template 'almost/respond' uses "
        r"demonstrations, prompt, but expand_pool only",
    ):
        pool_stage(ctx, prompt="almost/respond")
    with pytest.raises(ConfigError, match=r"parse: expected 'first_line' \| 'skip_first'"):
        pool_stage(ctx, parse="second")
    with pytest.raises(ConfigError, match="rouge_threshold"):
        pool_stage(ctx, rouge_threshold=0)


def test_vars_fill_template_variables_the_stage_does_not(ctx):
    stage = pool_stage(ctx, prompt="almost/respond", vars={"demonstrations": "DEMOS", "prompt": "P"})
    assert stage.reads() == set()  # the stage reads no rows
    user = stage.request(["an example"])[-1]["content"]
    assert user.startswith("DEMOS") and "Human: P" in user


# --- the pool feeds accepted prompts back, and its novelty checks ------------------------------

NOVEL = [
    "How do volcanoes form under the ocean floor?",
    "Which spices go well with roasted carrots?",
    "What is a good way to learn chess openings?",
    "Why do cats purr when they are content?",
]


def two_seeds(tmp_path):
    f = tmp_path / "seeds.txt"
    f.write_text("Write a question.\nWhat is the tallest mountain on Earth?\nHow do bees make honey?\n")
    return str(f), ["What is the tallest mountain on Earth?", "How do bees make honey?"]


def examples_of(req):
    return re.findall(r"^Query: (.+)$", req.user, flags=re.M)


def test_accepted_prompts_reach_the_examples_of_later_requests(ctx, test_model, tmp_path):
    """The method: each accepted prompt joins the few-shot pool that later requests draw from.
    n_examples exceeds the pool, so every request shows the whole pool as judged so far."""
    path, seeds = two_seeds(tmp_path)
    test_model.queue(NOVEL[0], NOVEL[1], NOVEL[1], NOVEL[2], NOVEL[3])  # the 3rd is a repeat
    stage = make_stage(
        "expand_pool", ctx, "pg", seed_file=path, num_generation=4, n_examples=20, batch_size=1
    )
    out = run_stage(stage, pd.DataFrame())
    assert list(out.prompt) == NOVEL
    reqs = test_model.for_stage("pg")
    assert len(reqs) == 5
    accepted_before = [0, 1, 2, 2, 3]  # the repeat (request 2) was rejected, so it never joins
    for req, k in zip(reqs, accepted_before, strict=True):
        assert sorted(examples_of(req)) == sorted(seeds + NOVEL[:k])


def test_with_requests_in_flight_a_request_sees_results_up_to_i_minus_batch_size(ctx, test_model, tmp_path):
    path, seeds = two_seeds(tmp_path)
    test_model.queue(*NOVEL)
    stage = make_stage(
        "expand_pool", ctx, "pg", seed_file=path, num_generation=4, n_examples=20, batch_size=2
    )
    run_stage(stage, pd.DataFrame())
    pools = [set(examples_of(r)) - set(seeds) for r in test_model.for_stage("pg")]
    assert [len(p) for p in pools] == [0, 0, 1, 2]  # request i: results 0 .. i-2 judged
    assert all(p <= set(NOVEL) for p in pools)


def test_pool_rejects_inflected_near_duplicates_that_rouge_misses(ctx, test_model, tmp_path):
    path, _ = two_seeds(tmp_path)
    first, variant = "Recommend a recipe for chocolate cookies.", "Recommending recipes for chocolate cookie?"
    assert RougePool(0.5).fmeasure(first, variant) < 0.5
    test_model.queue(first, variant, NOVEL[0])
    stage = make_stage("expand_pool", ctx, "pg", seed_file=path, num_generation=2, batch_size=1)
    assert list(run_stage(stage, pd.DataFrame()).prompt) == [first, NOVEL[0]]
    assert ctx.stats.stage("pg").drops == {"near_duplicate": 1}
    rejected = [json.loads(x) for x in (ctx.run_dir / "rejected.jsonl").read_text().splitlines()]
    assert rejected[0]["similar_to"] == first and rejected[0]["jaccard"] >= 0.5
    test_model.queue(first, variant)
    off = make_stage(
        "expand_pool", ctx, "off", seed_file=path, num_generation=2, batch_size=1, minhash_threshold=None
    )
    assert list(run_stage(off, pd.DataFrame()).prompt) == [first, variant]


def test_pool_rejects_a_cyrillic_repeat(ctx, test_model, tmp_path):
    path, _ = two_seeds(tmp_path)
    test_model.queue("Как испечь хлеб дома?", "Как испечь хлеб дома?", NOVEL[0])
    stage = make_stage("expand_pool", ctx, "pg", seed_file=path, num_generation=2, batch_size=1)
    assert list(run_stage(stage, pd.DataFrame()).prompt) == ["Как испечь хлеб дома?", NOVEL[0]]
    assert ctx.stats.stage("pg").drops == {"too_similar": 1}  # ROUGE-L now sees Cyrillic words
