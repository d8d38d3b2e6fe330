"""Golden rendered prompts: for each shipped pipeline run on the test model with its defaults
(the shipped sample), the exact messages and sampling params of one request per LLM stage and
prompt template, compared byte for byte with tests/golden/<pipeline>/<stage>.<template>.txt.

How a request is chosen, so that the files do not depend on the order requests are sent in:
the requests are grouped by (stage, the template each message was rendered from), and each
group's file holds its smallest request by (row_id, sample, params, messages). A file's name is
the stage and the user message's template (its last path part), e.g.
`aaa_instruction.co_teach.txt`, plus `+<part>` for each prompt rendered into a message (realign's
format recipes: `reformat.rewrite+open_qa.txt`). Templates are named by recording what
`Prompt.render` returned. The response cache is off for these runs, so every request reaches the model.

Golden files change only on purpose: after editing a prompt or a stage's sampling params, run
`SELFALIGN_UPDATE_GOLDEN=1 pytest tests/integration/test_golden_prompts.py` and review the diff.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import GOLDEN, PIPELINES, check_golden, check_no_stale_golden

from selfalign import api, prompts
from selfalign.llm.testmodel import Recorded, Script

UNNAMED = "unnamed"  # a message no Prompt.render call produced
MIN_PART = 20  # shorter rendered texts are not looked for inside messages


@pytest.fixture
def template_of(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, set[str]]]:
    """Rendered text → names of the prompts that rendered it, for every render in the test."""
    seen: dict[str, set[str]] = {}
    real = prompts.Prompt.render

    def recording(self: prompts.Prompt, **values: Any) -> str:
        text = real(self, **values)
        seen.setdefault(text, set()).add(self.name)
        return text

    monkeypatch.setattr(prompts.Prompt, "render", recording)
    yield seen


def _row_key(row_id: str) -> tuple[tuple[int, int | str], ...]:
    """'10.2' after '9.1': numeric parts compare as numbers."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in row_id.split("."))


def _order(r: Recorded) -> tuple[Any, ...]:
    return (
        _row_key(r.row_id),
        r.sample,
        json.dumps(r.params, sort_keys=True, default=str),
        json.dumps(r.messages),
    )


def _templates(r: Recorded, template_of: dict[str, set[str]]) -> tuple[tuple[str, str], ...]:
    """(role, template) per message, then ("part", template) for each other prompt whose
    rendered text is inside a message (e.g. realign's per-category format recipe)."""
    whole = tuple((m["role"], "|".join(sorted(template_of.get(m["content"], {UNNAMED})))) for m in r.messages)
    parts = sorted(
        {
            ("part", name)
            for text, names in template_of.items()
            if len(text) >= MIN_PART
            for m in r.messages
            if text != m["content"] and text in m["content"]
            for name in names
        }
    )
    return whole + tuple(parts)


def golden_requests(script: Script, template_of: dict[str, set[str]]) -> dict[str, Recorded]:
    """File name → the chosen request of each (stage, templates) group."""
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[Recorded]] = {}
    for r in script.requests:
        groups.setdefault((r.stage, _templates(r, template_of)), []).append(r)
    out: dict[str, Recorded] = {}
    for (stage, templates), reqs in sorted(groups.items()):
        user = next((name for role, name in reversed(templates) if role == "user"), UNNAMED)
        parts = [name.rsplit("/", 1)[-1] for role, name in templates if role == "part"]
        name = f"{stage}.{'+'.join([user.rsplit('/', 1)[-1], *parts])}.txt"
        assert name not in out, f"two template sets of stage {stage} map to {name}: {templates}"
        out[name] = min(reqs, key=_order)
    return out


def render(r: Recorded, templates: tuple[tuple[str, str], ...]) -> str:
    head = [
        f"# stage: {r.stage}",
        f"# templates: {', '.join(f'{role}={name}' for role, name in templates)}",
        f"# row_id: {r.row_id}, sample: {r.sample}",
        f"# params: {json.dumps(r.params, sort_keys=True, ensure_ascii=False, default=str)}",
    ]
    body = "".join(f"### {m['role']}\n{m['content']}\n\n" for m in r.messages)
    return "\n".join(head) + "\n\n" + body


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_golden_prompts(
    pipeline: str, tmp_path: Path, test_model: Script, template_of: dict[str, set[str]]
) -> None:
    api.run([f"pipeline={pipeline}", "model=test", "cache.enabled=false"], tmp_path / "run")
    chosen = golden_requests(test_model, template_of)
    llm_stages = {r.stage for r in test_model.requests}
    assert llm_stages and {r.stage for r in chosen.values()} == llm_stages
    assert "" not in llm_stages, "a request without its stage name"
    folder = GOLDEN / pipeline
    for name, r in chosen.items():
        check_golden(folder / name, render(r, _templates(r, template_of)).encode())
    check_no_stale_golden(folder, set(chosen), "*.txt")
