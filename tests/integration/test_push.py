"""`selfalign push RUN_DIR REPO_ID` against a stub of the Hub's HTTP API on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hubstub import HubStub

from selfalign.cli import main

pytest.importorskip("huggingface_hub")
TOKEN = "hf_secret_test_token_123"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    with HubStub(token=TOKEN) as stub:
        monkeypatch.setenv("HF_ENDPOINT", stub.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
        monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
        yield stub


def header(text: bytes | str) -> dict:
    text = text.decode() if isinstance(text, bytes) else text
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_push_uploads_the_views_and_the_card_in_one_commit(run_pipeline, hub, capsys) -> None:
    _, _, run_dir = run_pipeline("pipeline=almost")
    assert main(["push", str(run_dir), "me/almost-data", "--private", "--license", "apache-2.0"]) == 0
    assert hub.repos["me/almost-data"]["visibility"] == "private"
    assert hub.repos["me/almost-data"]["type"] == "dataset"
    files = hub.files["me/almost-data"]
    assert set(files) == {"comparisons.parquet", "README.md"}
    assert files["comparisons.parquet"] == (run_dir / "comparisons.parquet").read_bytes()
    meta = header(files["README.md"])
    assert meta["license"] == "apache-2.0"
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "comparisons.parquet"}]
    assert len(hub.commits) == 1 and hub.validated  # the card's YAML went through validation
    assert set(hub.auth) == {f"Bearer {TOKEN}"} and hub.unknown == [], hub.log
    assert "pushed 1 file(s) and README.md to me/almost-data" in capsys.readouterr().out


def test_views_picks_a_subset_and_the_card_names_only_those(run_pipeline, hub) -> None:
    _, _, run_dir = run_pipeline("pipeline=backtranslation")
    assert main(["push", str(run_dir), "me/bt", "--views", "sft", "--views", "pairs"]) == 0
    files = hub.files["me/bt"]
    assert set(files) == {"sft.parquet", "pairs.parquet", "README.md"}
    meta = header(files["README.md"])
    assert [c["config_name"] for c in meta["configs"]] == ["sft", "pairs"]
    assert "backward_sft" not in files["README.md"].decode()
    assert "private" not in hub.repos["me/bt"] or not hub.repos["me/bt"]["private"]
    # a second push into the same repo is a new commit, not an error
    assert main(["push", str(run_dir), "me/bt", "--views", "sft"]) == 0
    assert len(hub.commits) == 2


def test_the_token_is_never_written(run_pipeline, hub, tmp_path: Path, capsys) -> None:
    _, _, run_dir = run_pipeline("pipeline=almost")
    hub.refuse = True  # the Hub answers 403: the error is printed, still without the token
    assert main(["push", str(run_dir), "me/x"]) == 3
    err = capsys.readouterr().err
    assert "the Hub refused or could not be reached" in err and "403" in err
    assert main(["push", str(run_dir), "me/x", "--dry-run"]) == 0
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err + err
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not [p for p in written if TOKEN.encode() in p.read_bytes()]


def test_without_a_token_nothing_is_sent(run_pipeline, hub, monkeypatch, capsys) -> None:
    _, _, run_dir = run_pipeline("pipeline=almost")
    monkeypatch.delenv("HF_TOKEN")
    assert main(["push", str(run_dir), "me/x"]) == 2
    assert "no Hugging Face token. Set HF_TOKEN" in capsys.readouterr().err
    assert hub.auth == []


def test_bad_arguments_are_exit_2_with_a_fix(run_pipeline, hub, tmp_path: Path, capsys) -> None:
    _, _, run_dir = run_pipeline("pipeline=almost")
    assert main(["push", str(run_dir), "me/x", "--views", "comparison"]) == 2
    assert "no view 'comparison'" in capsys.readouterr().err
    assert main(["push", str(run_dir), "not-a-repo-id"]) == 2
    assert "REPO_ID 'not-a-repo-id' is not OWNER/NAME" in capsys.readouterr().err
    assert main(["push", str(tmp_path), "me/x"]) == 2
    assert "no dataset card" in capsys.readouterr().err
    assert hub.auth == []
    for argv in (["push", "--help"], ["help", "push"]):
        assert main(argv) == 0
        assert "usage: selfalign push RUN_DIR REPO_ID" in capsys.readouterr().out
    assert main(["--help"]) == 0 and "push RUN_DIR REPO_ID" in capsys.readouterr().out
