"""The dataset card (README.md): a Hub YAML header that points at the view files, then the run."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import yaml
from helpers import make_stage, run_stage

from selfalign import card
from selfalign.stages.export import ViewFiles


def split_card(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    _, head, rest = text.split("---\n", 2)
    return yaml.safe_load(head), rest


def test_a_run_writes_a_card_that_points_at_its_views(run_pipeline) -> None:
    _, manifest, run_dir = run_pipeline("pipeline=almost")
    meta, rest = split_card((run_dir / "README.md").read_text())
    assert meta["license"] == "unknown" and {"synthetic", "selfalign", "almost"} <= set(meta["tags"])
    (config,) = meta["configs"]
    assert config == {
        "config_name": "comparisons",
        "data_files": [{"split": "train", "path": "comparisons.parquet"}],
        "default": True,
    }
    (info,) = meta["dataset_info"]
    (split,) = info["splits"]
    assert split["name"] == "train" and split["num_examples"] == manifest["rows"] and split["num_bytes"] > 0
    message = [{"name": "role", "dtype": "string"}, {"name": "content", "dtype": "string"}]
    assert info["features"][:3] == [{"name": c, "list": message} for c in ("prompt", "chosen", "rejected")]
    compare = next(s for s in manifest["stages"] if s["name"] == "compare")
    drops = ", ".join(f"{k}: {n}" for k, n in compare["drops"].items())
    assert (
        f"| compare | `build_preferences` | {compare['rows_in']} | {compare['rows_out']} | {drops} |" in rest
    )
    assert "| `default` | `test` | `default` |" in rest  # the model
    assert "rubric:\n- faithful-3shot" in rest  # key parameters
    assert "Aligning Large Language Models through Synthetic Feedback" in rest  # the citation
    assert "preference, conversational" in rest
    assert str(run_dir.parent) not in rest  # no local paths in a card meant for the Hub


def write_run(ctx, views: list[dict]) -> None:
    df = pd.DataFrame(
        {
            "row_id": [str(i) for i in range(5)],
            "instruction": [f"q{i}" for i in range(5)],
            "response": [f"a{i}" for i in range(5)],
            "n": list(range(5)),
        }
    )
    run_stage(make_stage("export", ctx, "export", views=views), df)
    (ctx.run_dir / "config.yaml").write_text(
        yaml.safe_dump({"seed": 1, "my_key": "/abs/path/in.jsonl", "pipeline": {"name": "mine"}})
    )
    stages = [{"name": "export", "kind": "export", "rows_in": 5, "rows_out": 5, "drops": {}, "counts": {}}]
    manifest = {
        "status": "ok",
        "rows": 5,
        "stages": stages,
        "overrides": ["pipeline=mine", "p=/home/me/x.jsonl"],
    }
    (ctx.run_dir / "manifest.json").write_text(json.dumps(manifest))


def test_splits_formats_and_a_custom_pipeline(ctx) -> None:
    views = [
        {
            "file": "sft",
            "kind": "sft",
            "format": "standard",
            "keep": ["n"],
            "split": {"train": 0.8, "test": 0.2},
        },
        {"file": "all", "kind": "rows", "formats": ["jsonl", "parquet"]},
    ]
    write_run(ctx, views)
    stage = make_stage("export", ctx, "export", views=views)
    meta, rest = split_card(card.render(ctx.run_dir, card.views_of([stage])))
    sft, rows = meta["configs"]
    assert sft["data_files"] == [
        {"split": "train", "path": "sft.train.jsonl"},
        {"split": "test", "path": "sft.test.jsonl"},
    ]
    assert rows["data_files"] == [{"split": "train", "path": "all.parquet"}] and "default" not in rows
    info = meta["dataset_info"][0]
    assert info["features"] == [
        {"name": "prompt", "dtype": "string"},
        {"name": "completion", "dtype": "string"},
        {"name": "n", "dtype": "int64"},
    ]
    assert [s["num_examples"] for s in info["splits"]] == [4, 1]
    assert "prompt-completion, standard" in rest and "## Citation" not in rest  # no known method
    assert "my_key: in.jsonl" in rest and "`selfalign run pipeline=mine p=x.jsonl`" in rest
    assert "/home/me" not in rest and "/abs/path" not in rest


def test_views_without_files_and_empty_splits_are_left_out(ctx) -> None:
    write_run(
        ctx, [{"file": "sft", "kind": "sft"}, {"file": "s", "kind": "sft", "split": {"a": 1.0, "b": 0.0}}]
    )
    missing = ViewFiles("gone", "sft", "conversational", {"": "gone"}, ["jsonl"])
    there = ViewFiles("sft", "sft", "conversational", {"": "sft"}, ["jsonl"])
    split = ViewFiles("s", "sft", "conversational", {"a": "s.a", "b": "s.b"}, ["jsonl"])
    assert (ctx.run_dir / "s.b.jsonl").read_text() == ""  # written, but datasets cannot load it
    kept = card.present(ctx.run_dir, [missing, there, split])
    assert [(v.name, v.splits) for v in kept] == [("sft", {"": "sft"}), ("s", {"a": "s.a"})]


def test_feature_yaml_for_nested_types() -> None:
    t = pa.struct([("a", pa.list_(pa.string())), ("b", pa.float64())])
    assert card.feature("x", t) == {
        "name": "x",
        "struct": [{"name": "a", "list": "string"}, {"name": "b", "dtype": "float64"}],
    }
    assert card.feature("y", pa.list_(pa.struct([("k", pa.bool_())]))) == {
        "name": "y",
        "list": [{"name": "k", "dtype": "bool"}],
    }


def test_views_in_reads_back_what_the_card_points_at(ctx) -> None:
    write_run(
        ctx,
        [
            {
                "file": "sft",
                "kind": "sft",
                "split": {"train": 0.5, "val": 0.5},
                "formats": ["jsonl", "parquet"],
            }
        ],
    )
    text = card.render(
        ctx.run_dir,
        [
            ViewFiles(
                "sft", "sft", "conversational", {"train": "sft.train", "val": "sft.val"}, ["jsonl", "parquet"]
            )
        ],
    )
    (v,) = card.views_in(text)
    assert (v.name, v.splits, v.formats) == ("sft", {"train": "sft.train", "val": "sft.val"}, ["parquet"])


def test_the_citation_comes_from_the_pipelines_yaml(ctx) -> None:
    """A user's pipeline may carry `pipeline.citation` too: the card prints its BibTeX."""
    write_run(ctx, [{"file": "sft", "kind": "sft"}])
    bibtex = "@misc{mine,\n  title = {Mine}\n}"
    cfg = {"pipeline": {"name": "mine", "citation": {"title": "Mine", "bibtex": bibtex}}}
    (ctx.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    stage = make_stage("export", ctx, "export", views=[{"file": "sft", "kind": "sft"}])
    _, rest = split_card(card.render(ctx.run_dir, card.views_of([stage])))
    assert rest.endswith(f"## Citation\n\nThe method this pipeline implements:\n\n```bibtex\n{bibtex}\n```\n")
