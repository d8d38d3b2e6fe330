"""The aligners pipeline's config: the `domain` config group and the root method params."""

import pytest
import yaml

from selfalign import api
from selfalign.errors import ConfigError
from selfalign.paths import resource_dir, sample_path

DOMAIN_DIR = resource_dir("conf") / "domain"
FIELDS = {"name", "prompt", "focus", "critique_marker", "correction_marker"}


def built(*overrides):
    return {s.name: s for s in api.validate(["pipeline=aligners", "model=test", *overrides]).stages}


def stages(*overrides):
    return {name: s.params for name, s in built(*overrides).items()}


@pytest.mark.parametrize("path", sorted(DOMAIN_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_each_domain_file_has_every_field_and_its_own_name(path):
    d = yaml.safe_load(path.read_text())
    assert set(d) == FIELDS and d["name"] == path.stem


@pytest.mark.parametrize("domain", ["ethical", "factuality", "helpful"])
def test_domain_option_feeds_prompt_focus_markers_and_name(domain):
    d = yaml.safe_load((DOMAIN_DIR / f"{domain}.yaml").read_text())
    b = built(f"domain={domain}")
    st = {name: s.params for name, s in b.items()}
    assert st["respond"].prompt == d["prompt"] == f"aligners/respond_{domain}"
    assert (st["respond"].critique_marker, st["respond"].correction_marker) == (
        d["critique_marker"],
        d["correction_marker"],
    )
    assert st["questions"].vars == {"focus": d["focus"]}
    assert st["aligner_text"].domain == domain
    (r3,) = [r for r in b["clean"].rules if r.name == "r3_labels_in_aligned"]
    assert {d["critique_marker"], d["correction_marker"]} <= set(r3.value)


def test_default_domain_is_ethical():
    assert stages()["aligner_text"].domain == "ethical"


def test_unknown_domain_lists_the_options():
    with pytest.raises(ConfigError) as exc:
        api.validate(["pipeline=aligners", "model=test", "domain=legal"])
    text = str(exc.value)
    assert "Could not find 'domain/legal'" in text
    assert "Available options in 'domain'" in text
    assert all(name in text for name in ("ethical", "factuality", "helpful"))


def test_root_params_reach_the_stages(tmp_path):
    seeds = str(sample_path("aligners_seed_topics.jsonl"))
    st = stages(
        f"seed_topics={seeds}",
        "topic_epochs=3",
        "topic_prompts_per_type=null",
        "num_topics=10",
        "topics_per_prompt=4",
        "num_questions=7",
        "respond_max_tokens=99",
        "+respond_extra.repeat_penalty=2",
        "similarity_threshold=0.8",
        "temperature=0.5",
    )
    assert st["seeds"].path == st["questions"].seeds == seeds
    assert (st["topics"].epochs, st["topics"].prompts_per_type) == (3, None)
    assert (st["pick_topics"].n, st["questions"].topics_per_prompt) == (10, 4)
    assert st["pick_questions"].n == 7
    assert (st["respond"].max_tokens, st["respond"].extra) == (99, {"repeat_penalty": 2})
    assert st["similarity"].max_similarity == 0.8
    assert st["topics"].temperature == st["questions"].temperature == 0.5
    assert st["respond"].temperature == 0.0  # greedy whatever the brainstorming temperature


def test_the_old_nested_keys_are_gone():
    with pytest.raises(ConfigError, match=r"aligners\.epochs: unknown config key 'aligners'"):
        api.validate(["pipeline=aligners", "model=test", "aligners.epochs=3"])


def test_a_domain_of_your_own_joins_the_group_from_a_config_dir(tmp_path):
    (tmp_path / "domain").mkdir()
    legal = (DOMAIN_DIR / "ethical.yaml").read_text().replace("name: ethical", "name: legal")
    (tmp_path / "domain" / "legal.yaml").write_text(legal)
    built = api.validate(["pipeline=aligners", "model=test", "domain=legal"], config_dirs=[str(tmp_path)])
    (stage,) = [s for s in built.stages if s.name == "aligner_text"]
    assert stage.params.domain == "legal"
