"""The checklists of docs/architecture.md ("Checklist: a new pipeline", "Checklist: a new stage"),
enforced: every pipelines/*.yaml has its citation, docs page, prompts, test-model replies and
goldens; its composed config is the recorded one; every stage kind is listed; every shipped
prompt is used by some pipeline."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from helpers import GOLDEN, PIPELINES, ROOT, check_golden
from jinja2 import meta
from omegaconf import OmegaConf

from selfalign import api
from selfalign.cli import main
from selfalign.hydra_setup import compose_config
from selfalign.settings import pipeline_settings
from selfalign.stages import STAGES
from selfalign.stages.kinds import KINDS

SHIPPED = sorted(p.stem for p in (ROOT / "pipelines").glob("*.yaml"))
PROMPTS = ROOT / "prompts"
# prompts no shipped pipeline uses by default, each with where it is meant to be used
NOT_IN_A_DEFAULT_RUN = {
    "backtranslation/backward_raw": "augment.prompt for a backward model fine-tuned on backward_sft",
}
# every option of a config group a pipeline picks from, so each domain's prompts count as used
VARIANTS = {"aligners": [f"domain={p.stem}" for p in sorted((ROOT / "conf" / "domain").glob("*.yaml"))]}


def test_every_pipeline_file_is_covered_by_the_golden_tests() -> None:
    assert sorted(PIPELINES) == SHIPPED, "tests/helpers.py PIPELINES must list every pipelines/*.yaml"


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_pipeline_has_everything_on_the_checklist(name: str) -> None:
    assert (ROOT / "pipelines" / f"{name}.yaml").read_text().startswith("# @package _global_\n")
    pipe = pipeline_settings(compose_config([f"pipeline={name}"]))
    assert pipe.name == name and pipe.description
    assert pipe.citation is not None, f"pipelines/{name}.yaml: add pipeline.citation (docs/architecture.md)"
    assert pipe.citation.title and pipe.citation.authors and pipe.citation.url
    assert re.match(r"@\w+\{\w+,\n", pipe.citation.bibtex), pipe.citation.bibtex  # one BibTeX entry
    must_exist = [
        f"docs/pipelines/{name}.md",  # the docs page
        f"prompts/{name}",  # its prompt family
        f"conf/test_model/{name}.yaml",  # the test model's replies to those prompts
        f"tests/golden/{name}",  # rendered prompts (test_golden_prompts.py)
        f"tests/golden/outputs/{name}/dataset.jsonl",  # outputs (test_golden_outputs.py)
        f"tests/golden/config/{name}.yaml",  # the composed config (below)
    ]
    assert [p for p in must_exist if not (ROOT / p).exists()] == []
    assert f"| `{name}` |" in (ROOT / "README.md").read_text()  # a row in README's pipeline table
    assert f"| {name} |" in (ROOT / "docs" / "train.md").read_text()  # its views in train.md's table


def _own_config(name: str) -> dict[str, Any]:
    """What the pipeline adds to conf/config.yaml (its root keys, the ones it changes, its
    stages), unresolved; `model` (conf/model/) and the citation (checked above) left out."""
    base = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())
    cfg = OmegaConf.to_container(compose_config([f"pipeline={name}"]), resolve=False)
    assert isinstance(cfg, dict)
    cfg["pipeline"].pop("citation", None)
    return {k: v for k, v in cfg.items() if k != "model" and (k not in base or base[k] != v)}


@pytest.mark.parametrize("name", SHIPPED)
def test_the_composed_config_is_the_recorded_one(name: str) -> None:
    """tests/golden/config/<name>.yaml was recorded before the view defaults moved to
    conf/views/default.yaml (key order aside, a YAML file is compared as data)."""
    recorded = GOLDEN / "config" / f"{name}.yaml"
    own = _own_config(name)
    check_golden(recorded, yaml.safe_dump(own, sort_keys=True, allow_unicode=True).encode())


@pytest.mark.parametrize("name", SHIPPED)
def test_a_pipeline_keeps_only_the_view_settings_that_differ(name: str) -> None:
    shared = yaml.safe_load((ROOT / "conf" / "views" / "default.yaml").read_text())
    own = yaml.safe_load((ROOT / "pipelines" / f"{name}.yaml").read_text())
    assert {"/views": "default"} in own["defaults"], f"pipelines/{name}.yaml: add /views: default"
    assert [k for k, v in shared.items() if own.get(k) == v] == []


def test_every_stage_kind_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    """conf/stage/<kind>.yaml is checked by test_stage_conf.py; here: `selfalign list stages`."""
    assert main(["list", "stages"]) == 0
    listed = capsys.readouterr().out
    assert [k for k in KINDS if not re.search(rf"\b{k}\b", listed)] == []
    assert set(KINDS) <= set(STAGES)


def _templates(used: set[str], env: jinja2.Environment) -> set[str]:
    """`used` and every template they include, import or extend (names without .j2)."""
    todo, seen = list(used), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        source, _, _ = env.loader.get_source(env, f"{name}.j2")  # type: ignore[union-attr]
        todo += [r.removesuffix(".j2") for r in meta.find_referenced_templates(env.parse(source)) if r]
    return seen


def test_every_shipped_prompt_is_used_by_a_pipeline() -> None:
    used: set[str] = set()
    for name in SHIPPED:
        for variant in VARIANTS.get(name, [""]):
            built = api.validate([f"pipeline={name}", "model=test", *filter(None, [variant])])
            used |= {p for stage in built.stages for p in stage.prompt_hashes()}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(PROMPTS)))
    used = _templates(used, env)
    templates = {str(p.relative_to(PROMPTS).with_suffix("")) for p in PROMPTS.rglob("*.j2")}
    unused = templates - used - set(NOT_IN_A_DEFAULT_RUN)
    assert unused == set(), "use these prompts in a pipeline, or list them in NOT_IN_A_DEFAULT_RUN"
    assert set(NOT_IN_A_DEFAULT_RUN) <= templates - used  # a listed prompt that is used: unlist it
    # other files (a label set): named in some pipeline
    texts = "".join(p.read_text() for p in Path(ROOT / "pipelines").glob("*.yaml"))
    others = [p.relative_to(PROMPTS) for p in PROMPTS.rglob("*") if p.is_file() and p.suffix != ".j2"]
    assert [str(p) for p in others if str(p) not in texts] == []


def test_a_bad_citation_is_a_config_error_naming_its_key() -> None:
    """A user's pipeline.citation is checked like any param: before a call, with the key."""
    from selfalign.errors import ConfigError

    for override, key in [
        ("~pipeline.citation.bibtex", "pipeline.citation.bibtex: required key is missing"),
        ("+pipeline.citation.doi=x", "pipeline.citation.doi: unknown key"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(key)):
            pipeline_settings(compose_config(["pipeline=almost", override]))
