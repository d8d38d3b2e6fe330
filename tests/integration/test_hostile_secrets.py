"""Hostile user, item 4 of issue 20: no secret on disk, none on screen.

One unique canary key goes through every path a key can take (model.extra_params.api_key, a
header in model.extra_params.headers, the env var named by model.api_key_env, a stage's `extra`
param, api_base userinfo and ?api_key= query, a root override, api_key_env given the key
itself) into `selfalign run` (one run and a 2-job sweep), validate, preview, estimate, report
and push, against tests' mock on 127.0.0.1. The mock must receive the real key; the canary must
appear in no file of the run dirs and in nothing printed."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest
from helpers import ROOT, TINY_CLI, TINY_ON_MOCK, cli

sys.path.insert(0, str(ROOT / "tests"))

CANARY = f"sk-canary-{uuid.uuid4().hex}"
ENV = "SELFALIGN_CANARY_KEY"
TINY = [*TINY_CLI, *TINY_ON_MOCK]
# every documented and undocumented place a key can be put, all with the same canary
KEYED = [
    f"model.api_key_env={ENV}",
    f"model.extra_params={{api_key: {CANARY}, headers: {{X-Api-Key: {CANARY}}}}}",
    f"pipeline.stages.answer.extra={{user: {CANARY}}}",  # a stage param that is sent as is
]
pytestmark = pytest.mark.mock_faults(require_key=CANARY)  # 401 unless `Authorization: Bearer CANARY`


def _env() -> dict[str, str]:
    return {ENV: CANARY}


def _leaks(folder: Path) -> list[str]:
    """Every file under `folder` that holds the canary (text or bytes)."""
    return [str(p) for p in sorted(folder.rglob("*")) if p.is_file() and CANARY.encode() in p.read_bytes()]


def _said(res) -> str:
    return res.stdout + res.stderr


def test_canary_key_is_sent_but_never_written_or_printed(tmp_path: Path, mock_server) -> None:
    base = f"model.api_base={mock_server.url}"
    run_dir = tmp_path / "run"
    budget = "budget.max_tokens=1000000"  # so that the budget's record is written and checked too
    res = cli("run", *TINY, base, *KEYED, budget, f"hydra.run.dir={run_dir}", env=_env())
    assert res.returncode == 0, res.stderr[-3000:]
    # the real key went out: as the bearer key (the mock answers 401 otherwise) and the header
    assert mock_server.requests >= 10 and mock_server.outcomes.get("401", 0) == 0
    assert all(h.get("X-Api-Key") == CANARY for h in mock_server.headers)
    assert all(
        b.get("user") == CANARY and "api_key" not in b and "headers" not in b for b in mock_server.bodies
    )
    printed = [_said(res)]
    for name in ("config.yaml", ".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml"):
        assert "***" in (run_dir / name).read_text(), name  # redacted, not dropped
    assert (run_dir / "manifest.json").is_file() and (run_dir / "README.md").is_file()

    # validate, preview, estimate, report, and a sweep with the same keys
    printed.append(_said(cli("validate", *TINY, base, *KEYED, env=_env())))
    printed.append(_said(cli("preview", *TINY, base, *KEYED, "-k", "1", env=_env())))
    est = cli("estimate", *TINY, base, *KEYED, "--out", str(run_dir / "estimate.json"), env=_env())
    assert est.returncode == 0, est.stderr[-2000:]
    printed.append(_said(est))
    rep = cli("report", str(run_dir))
    assert rep.returncode == 0 and (run_dir / "report.html").is_file()
    printed.append(_said(rep))
    sweep_dir = tmp_path / "sweep"
    sweep = cli(
        "run", "-m", *TINY, base, *KEYED, "temperature=0.2,0.8", f"hydra.sweep.dir={sweep_dir}", env=_env()
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert (sweep_dir / "sweep_summary.csv").is_file() and (sweep_dir / "multirun.yaml").is_file()
    printed.append(_said(sweep))
    for flag in ("--cfg", "--info"):  # Hydra prints these itself
        shown = cli("run", *TINY, base, *KEYED, flag, *(["job"] if flag == "--cfg" else []), env=_env())
        assert shown.returncode == 0 and "extra_params" in shown.stdout, shown.stderr[-2000:]
        printed.append(_said(shown))

    assert _leaks(run_dir) == [] and _leaks(sweep_dir) == []
    for i, text in enumerate(printed):
        assert CANARY not in text, f"printed output #{i} holds the key"


def test_canary_in_api_base_and_error_paths_is_never_shown(tmp_path: Path) -> None:
    """A key in api_base's userinfo and query (the endpoint is dead: the run fails at the
    preflight, its error names the URL), a root override, api_key_env given the key itself."""
    url = f"http://user:{CANARY}@127.0.0.1:9/v1?api_key={CANARY}"
    run_dir = tmp_path / "run"
    res = cli("run", *TINY, f"model.api_base='{url}'", f"hydra.run.dir={run_dir}")
    assert res.returncode == 3 and "127.0.0.1:9" in res.stderr, res.stderr[-2000:]
    printed = [_said(res)]
    printed.append(_said(cli("validate", *TINY, f"model.api_base='{url}'")))
    every = ("validate", "run", "estimate", "preview")
    cases = [(c, f"model.api_key_env={CANARY}") for c in every]  # issue 20: validate printed it
    cases += [(c, f"+api_key={CANARY}") for c in ("validate", "run")]  # a root key that is no key
    cases += [("validate", f"model.api_key_env=sk-proj-{CANARY}")]
    for command, bad in cases:
        res = cli(command, *TINY, "model.api_base=http://127.0.0.1:9/v1", bad, f"hydra.run.dir={run_dir}")
        assert res.returncode == 2, (command, bad, res.stderr[-2000:])
        assert "Traceback" not in res.stderr
        printed.append(_said(res))
    assert _leaks(run_dir) == []
    for i, text in enumerate(printed):
        assert CANARY not in text, f"printed output #{i} holds the key"


def test_pushed_card_of_an_old_run_dir_is_redacted(tmp_path: Path, run_pipeline, monkeypatch) -> None:
    """A run dir written before redaction existed (its config.yaml and manifest.json hold the
    key): the card that `selfalign push` uploads and the report rebuilt from it do not."""
    pytest.importorskip("huggingface_hub")
    from hubstub import HubStub

    from selfalign.cli import main

    _, _, run_dir = run_pipeline("pipeline=almost")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["overrides"] = [f"model.extra_params.api_key={CANARY}"]  # as main wrote them
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    with (run_dir / "config.yaml").open("a") as fh:
        fh.write(f"api_key: {CANARY}\nendpoint: https://u:{CANARY}@h/v1\n")
    token = "hf_stub_token_for_this_test_0001"
    with HubStub(token=token) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", token)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
        assert main(["push", str(run_dir), "me/almost-data"]) == 0
        assert all(CANARY.encode() not in body for body in hub.files["me/almost-data"].values())
    assert main(["report", str(run_dir)]) == 0
    assert CANARY not in (run_dir / "report.html").read_text()
