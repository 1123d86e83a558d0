"""Campaign configs: the shipped ones load; a typo or a bad value fails at load with the key named."""

from pathlib import Path

import pytest

from discovery.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_load(name):
    from discovery.models import resolve_model

    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.name == name
    assert config.budget > config.batch_size
    if config.proposer.kind == "diffusion":  # a shipped generator, by name
        assert (resolve_model(config.proposer.model, "generator") / "model.json").is_file()


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


def test_oracle_section_holds_every_oracle_setting_with_its_default():
    from dataclasses import fields

    from discovery.config import OracleConfig
    from discovery.oracle.settings import TIMEOUT_S, OracleSettings, SimulationSettings

    shared = [f.name for f in fields(SimulationSettings)]
    assert {f.name for f in fields(OracleSettings)} - set(shared) == {"seed"}  # the campaign's seed
    config, settings = OracleConfig(), OracleSettings()
    assert {n: getattr(config, n) for n in shared} == {n: getattr(settings, n) for n in shared}
    assert config.timeout_s == TIMEOUT_S
    with pytest.raises(ConfigError, match=r"^oracle[.]seed: unknown key"):
        load_config({"oracle": {"seed": 3}})


def test_oracle_settings_reach_the_simulation_oracle():
    from discovery.campaign.oracles import SimulationOracle

    section = {"charges": "none", "gcmc_max_cycles": 300, "md_guests": 3, "md_production_ps": 50.0,
               "temperature": 310.0, "block_pockets": False, "qst_cycles": 0, "trajectories": "traj"}
    config = load_config({"seed": 7, "oracle": section}, ["oracle.gcmc_init_cycles=20"])
    settings = SimulationOracle(config.oracle, seed=config.seed).settings
    assert {k: getattr(settings, k) for k in section} == section
    assert (settings.gcmc_init_cycles, settings.seed, settings.first_cycles) == (20, 7, 500)  # 500: the default
    assert SimulationOracle(config.oracle).describe()["md_guests"] == 3


@pytest.mark.parametrize("section, message", [
    ({"target": 5}, "oracle.target: 5.0 is above the maximum 1.0"),
    ({"gcmc_max_cycles": 5}, "oracle.gcmc_max_cycles: 5 is below the minimum 10"),
    ({"md_guests": 0}, "oracle.md_guests: 0 is below the minimum 1"),
    ({"temperature": "warm"}, "oracle.temperature: expected float"),
    ({"block_pockets": "yes"}, "oracle.block_pockets: expected bool"),
    ({"trajectory_dir": "x"}, "oracle.trajectory_dir: unknown key"),
])
def test_bad_oracle_setting_names_the_dotted_key(section, message):
    with pytest.raises(ConfigError, match="^" + message.replace(".", "[.]")):
        load_config({"oracle": section})


def test_campaign_doc_lists_every_oracle_key_with_its_default():
    import yaml

    from discovery.config import CampaignConfig

    doc = (CONFIGS.parent / "docs" / "campaign.md").read_text()
    documented = yaml.safe_load(doc.split("```yaml\n")[1].split("```")[0])["oracle"]
    defaults = CampaignConfig().to_dict()["oracle"]
    assert set(documented) == set(defaults)
    for key, value in documented.items():  # "a | b": the choices, the default first
        assert (value.split(" | ")[0] if isinstance(value, str) and " | " in value else value) == defaults[key], key


@pytest.mark.parametrize("key, value, message", [
    ("resources.cpus_per_oracle", 0, "below the minimum"),
    ("oracle.lookup_delay_s", float("inf"), "not a finite number"),
    ("oracle.timeout_s", float("inf"), "not a finite number"),
    ("name", "../../x", "name: '../../x' must be"),
    ("name", "a/b", "must be letters"),
])
def test_risky_values_are_refused_at_load(key, value, message):
    *section, last = key.split(".")
    data = {section[0]: {last: value}} if section else {last: value}
    with pytest.raises(ConfigError, match=message):
        load_config(data)
