"""Every implementation of each campaign contract through the same assertions
(``discovery.campaign.contracts``: ``Oracle``, ``Generator``, ``Surrogate``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from discovery.campaign.contracts import (Candidate, Feedback, Generator, Oracle, Outcome, ProposalContext,
                                          Surrogate)
from discovery.errors import DiscoveryError


@pytest.fixture(scope="module")
def table():
    from discovery.pool import POOL_TABLE, read_table

    _, rows = read_table(POOL_TABLE)
    return {r["id"]: r for r in rows[:60] if r.get("cg")}


# ---- oracles ------------------------------------------------------------------------------------------
class ConstantTestOracle(Oracle):
    """Test double: the smallest user oracle (every candidate gets the same values)."""

    name = "constant"

    def evaluate(self, candidate: Candidate) -> Outcome:
        return Outcome("ok", {"log10_kh_co2": -5.0, "log10_kh_n2": -6.0})


def _oracles(table, irmof1):
    from discovery.campaign.oracles import LookupOracle, SimulationOracle
    from discovery.config import OracleConfig

    some_id = next(iter(table))
    return {"lookup": (LookupOracle(table), Candidate(some_id)),
            "raspa": (SimulationOracle(OracleConfig(properties=("geometry",))), Candidate("irmof1", irmof1.to_json())),
            "user": (ConstantTestOracle(), Candidate("anything"))}


@pytest.mark.parametrize("kind", ["lookup", "raspa", "user"])
def test_oracle_contract(kind, table, irmof1):
    oracle, candidate = _oracles(table, irmof1)[kind]
    outcome = oracle.evaluate(candidate)
    assert isinstance(outcome, Outcome) and outcome.status == "ok", outcome
    assert all(math.isfinite(v) for v in outcome.values.values())
    assert oracle.describe()["kind"] == oracle.name
    if kind == "raspa":  # the full record: settings and versions, for provenance
        assert {"settings", "versions", "geometry"} <= set(outcome.record)
    if kind != "user":  # a candidate it cannot evaluate is a failed outcome with a reason, not an exception
        bad = oracle.evaluate(Candidate("no-such-mof"))
        assert bad.status == "failed" and bad.reason and bad.message


def test_outcome_rejects_bad_values():
    with pytest.raises(DiscoveryError, match="finite"):
        Outcome("ok", {"log10_kh_co2": math.nan})
    with pytest.raises(DiscoveryError, match="status"):
        Outcome("done", {})


# ---- generators ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_generator_model(tmp_path_factory):
    from agents.cli.main import main

    out = tmp_path_factory.mktemp("generator") / "model"
    assert main(["train", "generator", "--steps", "3", "--embedding-epochs", "1", "--hidden", "16", "--layers", "1",
                 "--diffusion-steps", "5", "--out", str(out), "--json"]) == 0
    return out


def _generator(kind, table, model):
    from discovery.campaign.generators import DesignSpaceGenerator, TableGenerator
    from discovery.config import ProposerConfig
    from discovery.generator.campaign import CampaignGenerator

    if kind == "table":
        return TableGenerator(table)
    if kind == "designspace":
        return DesignSpaceGenerator()
    return CampaignGenerator(ProposerConfig(kind="diffusion", model=str(model), steer=1, finetune_after=2), None)


@pytest.mark.parametrize("kind", ["table", "designspace", "diffusion"])
def test_generator_contract(kind, table, tiny_generator_model):
    generator = _generator(kind, table, tiny_generator_model)
    assert isinstance(generator, Generator)
    first = generator.propose(2, ProposalContext(round=0, seed=3))
    assert 1 <= len(first) <= 2
    for record in first:
        assert {"id", "recipe", "origin", "status", "generator"} <= set(record)
        assert record["status"] in ("valid", "invalid")
        if record["status"] == "valid":
            assert record["cg"]["beads"] and record["descriptors"]
        else:
            assert record["reason"]
    ids = [r["id"] for r in first]
    again = _generator(kind, table, tiny_generator_model).propose(2, ProposalContext(round=0, seed=3))
    assert [r["id"] for r in again] == ids  # seeded by the context: a redone round proposes the same
    excluded = generator.propose(2, ProposalContext(round=0, seed=3, exclude=frozenset(ids)))
    assert not {r["id"] for r in excluded} & set(ids)
    rows = list(table.values())[:3]
    feedback = [Feedback(r["id"], r["labels"], float(3 - k), r["cg"]) for k, r in enumerate(rows)]
    info = generator.update(feedback)
    assert info is None or isinstance(info, dict)


# ---- surrogates ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ensemble", "gp"])
def test_surrogate_contract(kind, table):
    import torch
    from botorch.models.model import Model

    from discovery.library.candidates import table_candidate
    from discovery.config import load_config
    from surrogates.adsorption.campaign_model import from_config

    config = load_config({"surrogate": {"kind": kind, "members": 2, "epochs": 2}, "proposer": {"kind": "table"},
                          "oracle": {"kind": "lookup"}})
    surrogate = from_config(config)
    assert isinstance(surrogate, Surrogate) and surrogate.targets == config.targets
    rows = [r for r in table.values() if set(surrogate.targets) <= set(r.get("labels", {}))][:16]
    records = [table_candidate(r) for r in rows]
    assert surrogate.add(records) == {}
    assert set(surrogate.add([{"id": "broken", "status": "valid", "cg": None, "descriptors": {}}])) == {"broken"}
    ids = [r["id"] for r in rows]
    y = np.array([[r["labels"][t] for t in surrogate.targets] for r in rows])
    info = surrogate.fit(1, ids[:12], y[:12])
    assert info["version"] == 1 and info["n_train"] == 12
    model, X_pool, X_obs = surrogate.botorch_inputs(ids[12:], ids[:12], y[:12])
    assert isinstance(model, Model) and len(X_pool) == 4 and len(X_obs) == 12
    with torch.no_grad():
        post = model.posterior(X_pool.unsqueeze(-2))  # batch x q=1 x d -> batch x q x m
    assert post.mean.shape[-2:] == (1, len(surrogate.targets))
    mean, std = surrogate.predict(ids[12:])
    assert mean.shape == std.shape == (4, len(surrogate.targets)) and (std > 0).all()
