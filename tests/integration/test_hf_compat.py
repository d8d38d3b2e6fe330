"""With the real libraries (the `hf` extra): every shipped pipeline's views, in both formats, load
with `datasets` from JSONL, from Parquet and through the dataset card, and pass TRL's own format
checks; docs/train.md's SFT and DPO snippets train one step on a tiny random model (CPU)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import PIPELINES, ROOT

from selfalign import api, card

datasets = pytest.importorskip("datasets")
trl = pytest.importorskip("trl")
from trl.data_utils import is_conversational, maybe_apply_chat_template  # noqa: E402

pytestmark = pytest.mark.slow  # TRL, and every pipeline run first
FORMATS = ["conversational", "standard"]
SPECIALS = ["<pad>", "<unk>", "<eos>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CHAT = ("messages", "prompt", "completion", "chosen", "rejected")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """run(pipeline, format) → its run dir (model=test), each made once for the module."""
    made: dict[tuple[str, str], Path] = {}
    base = tmp_path_factory.mktemp("runs")

    def run(pipeline: str, fmt: str) -> Path:
        if (pipeline, fmt) not in made:
            run_dir = base / f"{pipeline}-{fmt}"
            overrides = [f"pipeline={pipeline}", "model=test", f"view_format={fmt}"]
            if pipeline == "aligners":
                overrides.append(f"aligner_format={fmt}")
            with pytest.MonkeyPatch.context() as mp:  # the module scope has no per-test cache
                mp.setenv("SELFALIGN_CACHE", str(base / "cache.sqlite"))
                api.run(overrides, run_dir)
            made[(pipeline, fmt)] = run_dir
        return made[(pipeline, fmt)]

    return run


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`datasets` writes its Arrow cache under the test's tmp dir, not ~/.cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))


def tiny_tokenizer() -> Any:
    """A character-level tokenizer with a chat template, built here (nothing is downloaded)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [chr(i) for i in range(32, 127)] + ["\n", "\t"]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(SPECIALS + chars)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<eos>",
        additional_special_tokens=SPECIALS[3:],
        chat_template=TEMPLATE,
    )


def loaded(run_dir: Path, v: Any) -> dict[str, Any]:
    """The view as `datasets` loads it: from its JSONL files, its Parquet files, and the card."""

    def files(ext: str) -> dict[str, str]:
        return {split: str(run_dir / f"{stem}.{ext}") for split, stem in v.splits.items()}

    return {
        "jsonl": datasets.load_dataset("json", data_files=files("jsonl")),
        "parquet": datasets.load_dataset("parquet", data_files=files("parquet")),
        "card": datasets.load_dataset(str(run_dir), v.name),
    }


def texts(example: dict[str, Any]) -> list[str]:
    """Every text of a TRL example: message contents, or the strings themselves."""
    out = []
    for key in CHAT:
        value = example.get(key)
        out += [m["content"] for m in value] if isinstance(value, list) else [value] if value else []
    return out


def check_trl(ds: Any, fmt: str, tokenizer: Any) -> int:
    """TRL's own checks on every row of a chat view; returns the rows checked."""
    n = 0
    for example in ds:
        assert is_conversational(example) == (fmt == "conversational"), example
        rendered = maybe_apply_chat_template(example, tokenizer)
        joined = "".join(str(v) for v in rendered.values())
        for text in texts(example):
            assert text.strip() in joined  # nothing lost on the way into the template
        n += 1
    return n


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_view_loads_and_passes_trl_checks(runs, pipeline: str, fmt: str) -> None:
    run_dir = runs(pipeline, fmt)
    text = (run_dir / "README.md").read_text()
    views = card.views_in(text)
    assert views, "the card names no view"
    infos = {i["config_name"]: i for i in card.yaml.safe_load(text.split("---\n", 2)[1])["dataset_info"]}
    tokenizer, chat_rows = tiny_tokenizer(), 0
    for v in views:
        got = loaded(run_dir, v)
        features = got["parquet"][next(iter(v.splits))].features
        for how, dd in got.items():
            assert set(dd) == set(v.splits), (v.name, how)
            for split, stem in v.splits.items():
                assert dd[split].features == features, (v.name, how, split)
                assert dd[split].num_rows == card.file_rows(run_dir / f"{stem}.parquet")
        # the card's features are what `datasets` itself reads from the files
        assert datasets.Features._from_yaml_list(infos[v.name]["features"]) == features
        if set(features) & set(CHAT):
            for split in v.splits:
                chat_rows += check_trl(got["jsonl"][split], fmt, tokenizer)
                check_trl(got["parquet"][split], fmt, tokenizer)
    assert chat_rows > 0  # every shipped pipeline has a chat view


# ---------------------------------------------------------------------------------------------
# docs/train.md's snippets, one training step each


def snippet(kind: str) -> str:
    """The python block of docs/train.md that builds a `kind` trainer."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "train.md").read_text(), re.S)
    (found,) = [b for b in blocks if f"{kind}Trainer(" in b]
    return found


def adapted(code: str, run_dir: Path, out: Path, kind: str, ext: str) -> str:
    """The snippet with the run dir, the tiny model and a 1-step config put in; each swapped part
    must be in the doc as written, so an edit there that breaks the user's copy fails here."""
    swaps = {
        r'run = "outputs/[a-z_]+/2026-01-01_00-00-00"': f"run = {str(run_dir)!r}",
        r'model="Qwen/Qwen2\.5-0\.5B-Instruct",': "model=model, processing_class=tokenizer,"
        + (" ref_model=ref_model," if kind == "DPO" else ""),
        rf'{kind}Config\(output_dir="[a-z-]+"\)': f"{kind}Config(output_dir={str(out)!r}, **TINY)",
    }
    for pattern, new in swaps.items():
        code, n = re.subn(pattern, new, code)
        assert n == 1, f"docs/train.md's {kind} snippet no longer has {pattern}"
    doc_ext = "parquet" if kind == "DPO" else "jsonl"  # the file format each snippet loads
    if ext != doc_ext:  # the other one, as the snippet's comment says
        view = "comparisons" if kind == "DPO" else "sft"
        loader = {"parquet": "parquet", "jsonl": "json"}
        old = f'load_dataset("{loader[doc_ext]}", data_files=f"{{run}}/{view}.{doc_ext}"'
        assert old in code, f"docs/train.md's {kind} snippet no longer loads {view}.{doc_ext}"
        code = code.replace(old, f'load_dataset("{loader[ext]}", data_files=f"{{run}}/{view}.{ext}"')
    return code


def tiny_model(vocab: int) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=None,
    )
    return LlamaForCausalLM(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("ext", ["parquet", "jsonl"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("kind", "pipeline"), [("DPO", "almost"), ("SFT", "wizardlm_aaa")])
def test_the_docs_snippets_train_one_step(runs, tmp_path, kind, pipeline, fmt, ext) -> None:
    import copy

    run_dir = runs(pipeline, fmt)
    code = adapted(snippet(kind), run_dir, tmp_path / "out", kind, ext)
    tokenizer = tiny_tokenizer()
    model = tiny_model(len(tokenizer))
    scope: dict[str, Any] = {
        "model": model,
        "ref_model": copy.deepcopy(model),
        "tokenizer": tokenizer,
        "TINY": {
            "max_steps": 1,
            "per_device_train_batch_size": 2,
            "report_to": [],
            "use_cpu": True,
            "save_strategy": "no",
            "max_length": 1024,
            "dataloader_num_workers": 0,
            "logging_steps": 1,
        },
    }
    exec(compile(code, f"docs/train.md ({kind})", "exec"), scope)  # noqa: S102 — our own doc
    trainer = scope["trainer"]
    assert trainer.state.global_step == 1
    loss = trainer.state.log_history[-1]["train_loss"]
    assert math.isfinite(loss) and loss > 0
    assert len(scope["train"]) == card.file_rows(
        run_dir / ("comparisons.parquet" if kind == "DPO" else "sft.parquet")
    )
