"""conf/stage/<kind>.yaml documents every built-in stage kind and matches its Params dataclass."""

import yaml

from selfalign.commands.listing import stage_yaml
from selfalign.config import describe_params
from selfalign.paths import resource_dir
from selfalign.stages import STAGES


def test_every_stage_kind_has_a_current_conf_file():
    stale = []
    for kind, cls in STAGES.items():
        if not cls.__module__.startswith("selfalign."):
            continue  # plugin stages registered by other tests
        path = resource_dir("conf") / "stage" / f"{kind}.yaml"
        if not path.exists() or path.read_text() != stage_yaml(kind):
            stale.append(kind)
        else:
            data = yaml.safe_load(path.read_text())
            assert set(data) == {"kind"} | {r[0] for r in describe_params(cls.Params)}
    assert not stale, f"regenerate with: python -m selfalign.commands.listing ({stale})"
