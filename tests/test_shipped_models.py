"""The default models the package ships (discovery/data/models): present, small, free of pickled code,
documented with the command that regenerates them, and giving the outputs recorded when they were trained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from discovery.models import FINGERPRINT, SHIPPED, read_fingerprint, resolve_model

KINDS = ("generator", "surrogate", "transport", "generator_core")


@pytest.mark.parametrize("kind", KINDS)
def test_shipped_model_is_small_safe_and_documented(kind):
    path = SHIPPED / kind
    assert (path / "model.json").is_file() and (path / FINGERPRINT).is_file()
    files = [p for p in path.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 5 * 2**20
    for f in files:
        assert f.suffix in {".json", ".pt", ".npz"} or f.name.endswith(".json.gz"), f  # gzipped JSON: units
        if f.suffix == ".pt":
            torch.load(f, weights_only=True)  # refuses anything but tensors and plain containers
        elif f.suffix == ".npz":
            with np.load(f, allow_pickle=False) as arrays:
                assert all(arrays[k].dtype != object for k in arrays.files)
    assert f"discovery train {kind.split('_')[0]}" in (SHIPPED / "README.md").read_text()
    assert f"models/{kind}" in (SHIPPED / "README.md").read_text()


def test_default_names_the_shipped_model_and_a_path_stays_a_path(tmp_path):
    from discovery.config import load_config

    assert resolve_model("default", "generator") == SHIPPED / "generator"
    assert resolve_model("core", "generator") == SHIPPED / "generator_core"  # another shipped model, by name
    assert resolve_model(tmp_path, "generator") == tmp_path
    assert resolve_model("no_such_model", "generator") == Path("no_such_model")  # a path: its loader says so
    config = load_config({}, [])
    assert config.proposer.model == "default" and config.surrogate.transport_model == "default"


@pytest.mark.parametrize("name", ["default", "core"])
def test_shipped_generator_gives_its_recorded_outputs(name):
    from discovery.generator.pipeline import fingerprint, load_generator

    got, recorded = fingerprint(load_generator(name)), read_fingerprint(resolve_model(name, "generator"))
    assert got["loss_terms"].keys() == recorded["loss_terms"].keys()
    for key, value in recorded["loss_terms"].items():
        assert got["loss_terms"][key] == pytest.approx(value, rel=1e-4, abs=1e-4), key
    assert got["property_head"] == pytest.approx(recorded["property_head"], abs=1e-4)  # another CPU: ~1e-6


def test_shipped_surrogate_gives_its_recorded_predictions():
    from surrogates.adsorption.ensemble import DeepEnsemble
    from surrogates.adsorption.train import fingerprint

    got, recorded = fingerprint(DeepEnsemble.load(resolve_model("default", "surrogate"))), \
        read_fingerprint(SHIPPED / "surrogate")
    assert got["ids"] == recorded["ids"] and len(got["ids"]) >= 8  # design-space MOFs, then real ones
    assert np.allclose(got["mean"], recorded["mean"], atol=1e-4)  # a changed weight moves them far more
    assert np.allclose(got["std"], recorded["std"], atol=1e-4)


def test_shipped_transport_model_gives_its_recorded_steps():
    from discovery.oracle.transport.table import DEFAULT, runs_of
    from surrogates.transport.bench import fingerprint
    from surrogates.transport.dynamics import load_model

    model_dir = resolve_model("default", "transport")
    recorded, meta = read_fingerprint(model_dir), json.loads((model_dir / "model.json").read_text())
    by_id = {r.id: r for r in runs_of(DEFAULT)}
    got = fingerprint(load_model("default"), [by_id[i] for i in recorded["ids"]], meta["dt_ps"])
    assert got["ids"] == recorded["ids"] and len(got["ids"]) == 3
    assert np.allclose(got["mu"], recorded["mu"], atol=1e-4)
    assert np.allclose(got["sigma"], recorded["sigma"], atol=1e-4)


def test_shipped_trajectory_table_is_the_one_the_transport_model_learned_from():
    from discovery.oracle.transport.table import SHIPPED_TABLE, table_version

    meta = json.loads((SHIPPED / "transport" / "model.json").read_text())
    assert f"{SHIPPED_TABLE.name}@{table_version(SHIPPED_TABLE)}" in meta["data"]
