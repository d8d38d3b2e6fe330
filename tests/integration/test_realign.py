"""The realign pipeline end to end with the test model: plain and ShareGPT input, rule sets,
retrieval on/off, and the files it writes."""

import json
from pathlib import Path

import pytest

from selfalign import api
from selfalign.errors import ConfigError, ValidationFailed


def requests(manifest, stage: str) -> int:
    st = next(s for s in manifest["stages"] if s["name"] == stage)
    return sum(m["requests"] for m in st["llm"].values())


def test_default_run_on_shipped_sample(run_pipeline):
    df, manifest, run_dir = run_pipeline("pipeline=realign")
    assert len(df) == 14 and manifest["rows"] == 14  # no row is ever dropped
    by_q = {r.instruction: r for r in df.itertuples()}
    advice = by_q["I keep putting off work on my thesis. What should I do?"]
    assert advice.category == "advice_giving" and advice.rewrite_status == "no_format"
    assert advice.tag == "original" and advice.response == advice.original_response
    # 12 rows have a recipe, 2 samples each; the 2 format-less rows cost nothing
    assert requests(manifest, "reformat") == 24 and requests(manifest, "classify") == 14
    tf = by_q["True or False: The Great Wall of China is easy to see from the Moon with the naked eye."]
    assert tf.category == "fact_verification" and tf.tag_reason == "true_false"
    assert any("myth" in e for e in tf.evidence)
    letter = by_q["Which of these numbers is prime? A) 21 B) 27 C) 29 D) 33. Answer with the letter only."]
    assert letter.tag_reason == "single_char" and letter.evidence == []
    email = next(r for r in df.itertuples() if r.category == "email_generation")
    assert email.tag == "original" and email.tag_reason == "too_short"
    assert set(df.category_match) >= {"exact", "normalized", "search"}
    rag = df[
        df.category.isin(
            ["how_to_generation", "open_qa", "fact_verification", "recommendations", "explain_answer"]
        )
    ]
    assert len(rag) == 5 and all(1 <= len(e) <= 5 for e in rag.evidence)
    assert all(e == [] for e in df[~df.index.isin(rag.index)].evidence)
    records = json.loads((run_dir / "realign_sharegpt.json").read_text())
    assert [r["id"] for r in records] == list(range(14))
    assert {r["items"][1]["tag"] for r in records} == {"rewrite", "original"}
    sft = [json.loads(x) for x in (run_dir / "realign_sft.jsonl").read_text().splitlines()]
    assert len(sft) == 14 and sft[0]["messages"][0]["role"] == "user"
    flat = [json.loads(x) for x in (run_dir / "realign_rows.jsonl").read_text().splitlines()]
    assert set(flat[0]) == {
        "id",
        "instruction",
        "response",
        "original_response",
        "category",
        "tag",
        "tag_reason",
    }


def test_sharegpt_input_keeps_given_labels_and_evidence(run_pipeline, tmp_path: Path):
    records = [
        {
            "id": 0,
            "items": [
                {
                    "from": "human",
                    "value": "Why does ice float on water?",
                    "category": "explain_answer",
                    "evidence": ["Ice is less dense."],
                },
                {"from": "gpt", "value": "It is less dense than water."},
            ],
        },
        {
            "id": 1,
            "items": [
                {"from": "human", "value": "How do I repot a cactus?"},
                {"from": "gpt", "value": "Wear gloves and use gritty soil."},
                {"from": "human", "value": "And then?"},
                {"from": "gpt", "value": "Wait a week before watering."},
            ],
        },
        {
            "id": 2,
            "items": [
                {"from": "human", "value": "Write a poem about rain.", "category": "poem_generation"},
                {"from": "gpt", "value": "Rain taps the roof."},
            ],
        },
    ]
    path = tmp_path / "in.json"
    path.write_text(json.dumps(records))
    df, manifest, run_dir = run_pipeline("pipeline=realign", f"input_path={path}")
    assert requests(manifest, "classify") == 1  # only the record without a category
    assert list(df.category_match) == ["given", "exact", "given"]
    assert df.evidence[0] == ["Ice is less dense."]  # existing evidence is not searched again
    assert df.category[1] == "how_to_generation" and df.evidence[1] == []  # multi-turn: none
    out = json.loads((run_dir / "realign_sharegpt.json").read_text())
    assert [r["id"] for r in out] == [0, 1, 2] and len(out[1]["items"]) == 4
    assert out[1]["items"][3]["value"] == "Wait a week before watering."
    assert out[2]["items"][1] == {"from": "gpt", "value": "Rain taps the roof.", "tag": "original"}


def test_rule_set_and_retrieval_switches(run_pipeline):
    df, manifest, _ = run_pipeline(
        "pipeline=realign",
        "post_filter.rules=no_robots",
        "retrieval.enabled=false",
        "rewrite.samples=1",
        "n_rows=7",
    )
    assert len(df) == 7 and "evidence" not in df.columns
    assert requests(manifest, "reformat") == 6  # the advice row (no format) is not sent
    letter = df[df.response.str.contains("C")].iloc[0]
    assert letter.tag_reason == "ok"  # no_robots has no single-character rule


def test_method_params_live_at_the_root():
    with pytest.raises(ConfigError, match=r"realign\.limit: unknown config key 'realign'"):
        api.validate(["pipeline=realign", "model=test", "realign.limit=7"])
    typo = r"rewrite\.sample: unknown config key 'rewrite\.sample'\. Did you mean 'samples'"
    with pytest.raises(ConfigError, match=typo):
        api.validate(["pipeline=realign", "model=test", "rewrite.sample=1"])
    with pytest.raises(ValidationFailed, match=r"select\.rules: expected 'open_platypus'"):
        api.validate(["pipeline=realign", "model=test", "post_filter.rules=gsm8k"])


def test_validate_and_serper_without_key(monkeypatch):
    api.validate(["pipeline=realign", "model=test"])
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    with pytest.raises(ValidationFailed, match="needs an API key in the env var SERPER_API_KEY"):
        api.validate(["pipeline=realign", "model=test", "retrieval.provider=serper"])
