"""`load` reads Hugging Face datasets: a save_to_disk folder, a folder of a Hub dataset's files,
and a Hub id from the local cache only, with clear errors and no network (docs/inputs.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import ROOT, cli, make_stage, run_stage

from selfalign import hf
from selfalign.errors import InputError

datasets = pytest.importorskip("datasets")

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache of the test's own; HF_HUB_OFFLINE is *not* set, so a read
    that tried the network would reach the no-network guard and fail the test."""
    home = tmp_path / "hfhome"
    monkeypatch.setenv("HF_HOME", str(home))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    return home


def splits() -> dict:
    train = {"question": [f"question {i}?" for i in range(5)], "n": list(range(5))}
    return {
        "train": datasets.Dataset.from_dict(train),
        "test": datasets.Dataset.from_dict({"question": ["held out?"], "n": [9]}),
    }


def hub_files(folder: Path, ext: str = "parquet") -> Path:
    """The layout of a Hub dataset repo: data/<split>-00000-of-00001.<ext>, one file a split."""
    (folder / "data").mkdir(parents=True)
    for name, part in splits().items():
        path = str(folder / "data" / f"{name}-00000-of-00001.{ext}")
        part.to_parquet(path) if ext == "parquet" else part.to_json(path)
    return folder


def cached(home: Path, repo: str = "org/name", branch: str = "main") -> Path:
    """A Hub dataset as `hf download` leaves it in the cache: snapshots/<sha>/ and refs/<branch>."""
    base = home / "hub" / f"datasets--{repo.replace('/', '--')}"
    hub_files(base / "snapshots" / SHA)
    (base / "refs").mkdir()
    (base / "refs" / branch).write_text(SHA)
    return base


def load(ctx, path: str, **params):
    return make_stage("load", ctx, "load", path=path, **params)


def test_a_save_to_disk_folder_with_a_split_rename_and_limit(ctx, tmp_path: Path) -> None:
    datasets.DatasetDict(splits()).save_to_disk(str(tmp_path / "disk"))
    stage = load(
        ctx, str(tmp_path / "disk"), rename={"question": "instruction"}, required=["instruction"], limit=3
    )
    cols, problems = stage.check(set())
    assert cols == {"instruction", "n", "row_id"} and problems == []
    df = run_stage(stage, None)
    assert list(df.instruction) == ["question 0?", "question 1?", "question 2?"]
    assert list(df.row_id) == ["0", "1", "2"]
    held = run_stage(load(ctx, str(tmp_path / "disk"), split="test"), None)
    assert list(held.question) == ["held out?"]


def test_a_single_dataset_save_to_disk_folder(ctx, tmp_path: Path) -> None:
    splits()["train"].save_to_disk(str(tmp_path / "one"))
    assert hf.kind(str(tmp_path / "one"), None) == "disk"
    assert len(run_stage(load(ctx, str(tmp_path / "one")), None)) == 5


@pytest.mark.parametrize("ext", ["parquet", "jsonl"])
def test_a_folder_of_hub_files_reads_each_split(ctx, tmp_path: Path, ext: str) -> None:
    folder = hub_files(tmp_path / "repo", ext)
    assert hf.kind(str(folder), None) == "files"
    assert list(run_stage(load(ctx, str(folder), split="test"), None).question) == ["held out?"]
    assert len(run_stage(load(ctx, str(folder)), None)) == 5  # train by default
    with pytest.raises(InputError, match=r"no split 'dev'. Splits: (train, test|test, train)\. Set the load"):
        load(ctx, str(folder), split="dev").check(set())


def test_a_hub_id_is_read_from_the_cache_by_branch_or_commit(ctx, hf_home: Path) -> None:
    cached(hf_home, branch="dev")
    df = run_stage(load(ctx, "hf://datasets/org/name", revision="dev", limit=2), None)
    assert list(df.question) == ["question 0?", "question 1?"]
    by_sha = load(ctx, "hf:org/name", revision=SHA, split="test")
    assert list(run_stage(by_sha, None).question) == ["held out?"]
    bare = load(ctx, "org/name", format="hf", revision="dev")
    assert bare.check(set())[0] == {"question", "n", "row_id"}
    assert len(bare.fingerprint_extra()) == 16


def test_a_hub_id_not_in_the_cache_says_what_to_download(ctx) -> None:
    with pytest.raises(InputError) as exc:
        load(ctx, "hf://datasets/org/missing", revision="v1.0").check(set())
    message = str(exc.value)
    assert "'org/missing' (revision v1.0) is not in the local Hugging Face cache" in message
    assert "hf download org/missing --repo-type dataset --revision v1.0" in message
    assert "Traceback" not in message


def test_the_cli_gives_exit_2_and_no_stack_trace_for_an_uncached_dataset(hf_home: Path) -> None:
    res = cli(
        "validate",
        "pipeline=backtranslation",
        "model=test",
        "input.path=hf://datasets/org/missing",
        cwd=ROOT,
        env={"HF_HOME": str(hf_home)},
    )
    assert res.returncode == 2, res.stderr
    assert "hf download org/missing --repo-type dataset" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_text_column_of_another_type_is_a_check_problem(ctx, tmp_path: Path) -> None:
    datasets.DatasetDict(splits()).save_to_disk(str(tmp_path / "disk"))
    _, problems = load(ctx, str(tmp_path / "disk"), required=["n"]).check(set())
    assert problems == [
        f"pipeline.stages.load: {tmp_path / 'disk'}: column 'n' is used as text but its type in the dataset "
        "is Value('int64'). Map a text column instead, or set the load stage's non_text=coerce (or drop)."
    ]


def test_a_folder_of_text_files_stays_text(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("hello")
    assert hf.kind(str(tmp_path / "docs"), None) is None
    with pytest.raises(InputError, match="not a Hugging Face dataset"):
        hf.kind(str(tmp_path / "docs"), "hf")


def test_revision_is_for_a_hub_id_only(ctx, tmp_path: Path) -> None:
    folder = hub_files(tmp_path / "repo")
    with pytest.raises(InputError, match="`revision` applies to a Hub id only"):
        load(ctx, str(folder), revision="main").check(set())


def test_without_datasets_installed_the_error_says_how_to_install(ctx, tmp_path, monkeypatch) -> None:
    folder = hub_files(tmp_path / "repo")
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets → ImportError
    with pytest.raises(InputError, match=r"needs the `datasets` package.*pip install 'selfalign\[hf\]'"):
        load(ctx, str(folder)).check(set())


def test_a_backtranslation_run_on_a_hub_dataset(run_pipeline, hf_home: Path) -> None:
    rows = [json.loads(x) for x in (ROOT / "selfalign/samples/backtranslation_unlabelled.jsonl").open()]
    base = hf_home / "hub" / "datasets--me--texts"
    (base / "snapshots" / SHA).mkdir(parents=True)
    datasets.Dataset.from_list(rows).to_parquet(str(base / "snapshots" / SHA / "train.parquet"))
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(SHA)
    df, manifest, _ = run_pipeline("pipeline=backtranslation", "input.path=hf://datasets/me/texts")
    load_stage = next(s for s in manifest["stages"] if s["name"] == "load_texts")
    assert load_stage["rows_out"] == len(rows) and len(df) > 0


def test_nested_values_come_as_python_lists(ctx, tmp_path: Path) -> None:
    items = [[{"from": "human", "value": "hi?"}, {"from": "gpt", "value": "hello"}]]
    datasets.Dataset.from_dict({"id": ["a"], "items": items}).save_to_disk(str(tmp_path / "sg"))
    df = run_stage(load(ctx, str(tmp_path / "sg")), None)
    assert df["items"][0] == items[0]  # a list of dicts, as unpack_sharegpt expects
