"""ReAlign/ShareGPT records ↔ flat columns: `unpack_sharegpt` and `pack_sharegpt`."""

import json

import pandas as pd
from helpers import make_stage, run_stage

from selfalign.stages.records import turn_pair

RECORDS = [
    {
        "id": 0,
        "items": [
            {"from": "human", "value": "Give three tips for staying healthy.", "category": "advice_giving"},
            {"from": "gpt", "value": "1. Eat well. 2. Move. 3. Sleep."},
        ],
    },
    {
        "id": 1,
        "items": [
            {"from": "human", "value": "What is BM25?", "evidence": ["a ranking function"]},
            {"from": "gpt", "value": "A ranking function."},
            {"from": "human", "value": "Who made it?"},
            {"from": "gpt", "value": "Robertson and colleagues."},
        ],
    },
    {"id": 2, "items": [{"from": "gpt", "value": "no question"}]},
    {"id": 3, "items": "not a list"},
]


def frame(records):
    return pd.DataFrame([{"row_id": str(i), **r} for i, r in enumerate(records)])


def test_turn_pair():
    assert turn_pair(RECORDS[0]["items"], ["human"], ["gpt"]) == (0, 1)
    sys_first = [{"from": "system", "value": "s"}, *RECORDS[0]["items"]]
    assert turn_pair(sys_first, ["human"], ["gpt"]) == (1, 2)
    assert turn_pair([{"from": "human"}, {"from": "human"}], ["human"], ["gpt"]) is None
    assert turn_pair([], ["human"], ["gpt"]) is None and turn_pair(None, ["h"], ["g"]) is None


def test_unpack_records_and_count_bad_ones(ctx):
    out = run_stage(make_stage("unpack_sharegpt", ctx, "u"), frame(RECORDS))
    assert list(out.id) == [0, 1]
    assert list(out.instruction) == ["Give three tips for staying healthy.", "What is BM25?"]
    assert list(out.response) == ["1. Eat well. 2. Move. 3. Sleep.", "A ranking function."]
    assert list(out.category) == ["advice_giving", None]
    assert list(out.evidence) == [[], ["a ranking function"]]
    assert list(out.num_items) == [2, 4]
    assert ctx.stats.stage("u").drops == {"no_user_assistant_pair": 2}


def test_unpack_passes_plain_rows_through(ctx):
    stage = make_stage("unpack_sharegpt", ctx, "u")
    df = pd.DataFrame({"row_id": ["0"], "instruction": ["q"], "response": ["a"]})
    assert run_stage(stage, df).equals(df)
    assert stage.check({"row_id", "instruction", "response"}) == ({"row_id", "instruction", "response"}, [])
    cols, problems = stage.check({"row_id", "items"})
    assert {"instruction", "response", "category", "evidence", "num_items"} <= cols


def test_unpack_mode_sharegpt_needs_items(ctx):
    stage = make_stage("unpack_sharegpt", ctx, "u", mode="sharegpt")
    _, problems = stage.check({"row_id", "text"})
    assert problems and "needs column 'items'" in problems[0] and "mode=plain" in problems[0]


def test_pack_updates_existing_records_and_writes_json(ctx):
    df = run_stage(make_stage("unpack_sharegpt", ctx, "u"), frame(RECORDS[:2]))
    df["response"] = ["Rewritten tips.", "BM25 is a ranking function."]
    df["category"] = ["advice_giving", "open_qa"]
    df["evidence"] = [[], ["a ranking function", "from Okapi"]]
    df["tag"] = ["original", "rewrite"]
    out = run_stage(make_stage("pack_sharegpt", ctx, "p", file="realign_sharegpt"), df)
    first, second = out["items"]
    assert first[1] == {"from": "gpt", "value": "Rewritten tips.", "tag": "original"}
    assert "evidence" not in first[0] and first[0]["category"] == "advice_giving"
    assert second[0]["evidence"] == ["a ranking function", "from Okapi"]
    assert second[1]["value"] == "BM25 is a ranking function." and second[1]["tag"] == "rewrite"
    assert second[2:] == RECORDS[1]["items"][2:]  # later turns untouched
    assert list(out.id) == [0, 1]
    saved = json.loads((ctx.run_dir / "realign_sharegpt.json").read_text())
    assert saved == [{"id": 0, "items": first}, {"id": 1, "items": second}]


def test_pack_builds_records_from_plain_columns(ctx):
    df = pd.DataFrame(
        {"row_id": ["a", "b"], "instruction": ["q1", "q2"], "response": ["r1", "r2"], "id": [7, 9]}
    )
    out = run_stage(make_stage("pack_sharegpt", ctx, "p"), df)  # file: null by default
    assert out["items"][0] == [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "r1"}]
    assert list(out.id) == [7, 9] and not (ctx.run_dir / "realign_sharegpt.json").exists()
    renum = run_stage(make_stage("pack_sharegpt", ctx, "p", file=None, renumber=True), df)
    assert list(renum.id) == [0, 1]


def test_unpack_drops_rows_with_no_required_text_counted(ctx):
    """Plain rows and unpacked records alike: no empty instruction or response goes on."""
    stage = make_stage("unpack_sharegpt", ctx, "u", required=["instruction", "response"])
    plain = pd.DataFrame(
        {
            "row_id": ["0", "1", "2", "3", "4"],
            "instruction": ["q", "", None, "q3", " \n"],
            "response": ["a", "a1", "a2", "\t", "a4"],
        }
    )
    assert list(run_stage(stage, plain).row_id) == ["0"]
    assert ctx.stats.stage("u").drops == {"empty:instruction": 3, "empty:response": 1}
    blank = {"id": 9, "items": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": " "}]}
    out = run_stage(stage, frame([RECORDS[0], blank]))
    assert list(out.id) == [0] and ctx.stats.stage("u").drops["empty:response"] == 2
