"""Campaign configs: the shipped ones load; a typo or a bad value fails at load with the key named."""

from pathlib import Path

import pytest

from discovery.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("name", ["quickstart", "co2_capture", "cluster"])
def test_shipped_configs_load(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.name == name
    assert config.budget > config.batch_size


@pytest.mark.parametrize("data, key", [
    ({"budgte": 3}, "budgte"),
    ({"oracle": {"chargs": "none"}}, "oracle.chargs"),
    ({"oracle": {"charges": "ddec"}}, "oracle.charges"),
    ({"budget": 0}, "budget"),
    ({"budget": "ten"}, "budget"),
    ({"proposer": {"mutation_fraction": 1.5}}, "proposer.mutation_fraction"),
    ({"planner": {"objectives": ["log10_kh_h2o"]}}, "planner"),
    ({"oracle": {"properties": ["henry", "dft"]}}, "oracle.properties"),
    ({"surrogate": 3}, "surrogate"),
    ({"oracle": {"kind": "lookup"}}, "oracle.kind"),
])
def test_bad_config_names_the_key(data, key):
    with pytest.raises(ConfigError, match=rf"^{key.replace('.', '[.]')}\b"):
        load_config(data)


def test_overrides_are_typed_and_validated(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("budget: 10\noracle:\n  charges: none\n")
    config = load_config(path, ["budget=20", "oracle.target=0.2", "planner.objectives=[log10_kh_co2, log10_selectivity]"])
    assert (config.budget, config.oracle.target) == (20, 0.2)
    assert config.planner.objectives == ("log10_kh_co2", "log10_selectivity")
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(path, ["batch_size=-1"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(path, ["budget"])


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("budget: [1,\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(path)
    with pytest.raises(ConfigError, match="no config file"):
        load_config(tmp_path / "missing.yaml")
