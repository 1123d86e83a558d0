"""Screening a dataset directory of real MOFs (proposer kind ``dataset``): the imported MOFs with a CG view are
proposed with their structure, units and descriptors, neighbours share a net and a unit, and a campaign runs
over them in process."""

from __future__ import annotations

import numpy as np
import pytest

from discovery.campaign import Campaign, Oracle, Outcome
from discovery.campaign.contracts import ProposalContext
from discovery.campaign.generators import DatasetGenerator
from discovery.errors import DiscoveryError
from discovery.library.importer import import_structures
from discovery.structures.mof import MOF


class CountingTestOracle(Oracle):
    """A test double: log10 K_H(CO2) from the structure's fluorine count; records what it was given."""

    name = "counting-test"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def evaluate(self, candidate):
        mof = MOF.from_json(candidate.mof_json)
        self.seen.append(candidate.id)
        n_f = sum(site.specie.symbol == "F" for site in mof.structure)
        return Outcome("ok", {"log10_kh_co2": -5.0 + 0.1 * n_f, "log10_kh_n2": -6.0})


@pytest.fixture(scope="module")
def dataset(irmof1, tmp_path_factory):
    """Three imported MOFs: IRMOF-1 and two halogenated copies (units pormake does not have)."""
    folder = tmp_path_factory.mktemp("screen")
    cifs = folder / "cifs"
    cifs.mkdir()
    irmof1.to_cif(cifs / "irmof1.cif")
    for name, n in (("f1", 1), ("f2", 2)):
        s = irmof1.structure.copy()
        hydrogens = [i for i, site in enumerate(s) if site.specie.symbol == "H"]
        for i in hydrogens[:n]:
            s.replace(i, "F")
        MOF(id=name, structure=s).to_cif(cifs / f"{name}.cif")
    summary = import_structures(sorted(cifs.glob("*.cif")), folder / "ds", "test", workers=1, progress=False)
    assert summary["decomposition"]["reassembled"] == 3
    return folder / "ds"


def test_the_dataset_proposer_hands_over_structures_units_and_descriptors(dataset):
    gen = DatasetGenerator(dataset, mutation_fraction=0.5)
    assert sorted(gen.rows) == ["f1", "f2", "irmof1"]
    first = gen.propose(2, ProposalContext(round=0, seed=0, exclude=frozenset({"f1"})))
    assert len(first) == 2 and "f1" not in {c["id"] for c in first}
    for c in first:
        assert c["status"] == "valid" and c["cg"]["beads"] and MOF.from_json(c["mof_json"]).n_atoms == 53
        assert np.isfinite(c["descriptors"]["log10_kh_probe"]) and c["descriptors"]["pld"] > 5
    f2 = next(c for c in gen.propose(3, ProposalContext(round=1, seed=0)) if c["id"] == "f2")
    assert f2["units"] and all(i.startswith("U") for i in f2["units"])
    # a neighbour of a parent shares its net (pcu) and a unit (the Zn4O node, N16)
    near = gen.propose(2, ProposalContext(round=2, seed=0, exclude=frozenset({"f1"}), parents=("irmof1",)))
    assert [(c["id"], c["origin"], c["parent"]) for c in near] == [("f2", "mutation", "irmof1")]


def test_a_campaign_screens_the_dataset_in_process(dataset, tmp_path):
    oracle = CountingTestOracle()
    config = {"budget": 3, "batch_size": 1, "proposer": {"kind": "dataset", "dataset": str(dataset),
                                                          "candidates_per_round": 3},
              "surrogate": {"members": 2, "epochs": 2, "min_train": 10}, "tracking": {"mlflow": False}}
    campaign = Campaign.from_config(config, run_dir=tmp_path / "run", oracle=oracle)
    list(campaign.rounds())
    campaign.close()
    assert sorted(oracle.seen) == ["f1", "f2", "irmof1"]  # each once, with its atoms
    assert max(r["values"]["log10_kh_co2"] for r in campaign.state.results.values()) == pytest.approx(-4.8)


def test_a_missing_or_empty_dataset_is_named(tmp_path):
    with pytest.raises(DiscoveryError, match="proposer.dataset"):
        Campaign.from_config({"proposer": {"kind": "dataset"}, "tracking": {"mlflow": False}}, run_dir=tmp_path / "a")
    with pytest.raises(DiscoveryError, match="not a dataset directory"):
        Campaign.from_config({"proposer": {"kind": "dataset", "dataset": str(tmp_path / "none")},
                              "tracking": {"mlflow": False}}, run_dir=tmp_path / "b")


def test_a_table_of_real_mofs_proposes_neighbours_by_net_and_unit(dataset):
    from discovery.campaign.generators import TableGenerator
    from discovery.library.candidates import compact_cg

    rows = {}
    for mof_id in ("irmof1", "f1", "f2"):
        mof = MOF.from_json(dataset / "structures" / f"{mof_id}.json")
        rows[mof_id] = {"id": mof_id, "cg": compact_cg(mof.cg), "units": mof.units, "descriptors": {}}
    rows["other"] = {**rows["f2"], "id": "other", "cg": {**rows["f2"]["cg"], "topology": "dia"}}
    gen = TableGenerator(rows, mutation_fraction=1.0)
    context = ProposalContext(round=1, seed=0, exclude=frozenset(), parents=("irmof1",))
    (near,) = gen.propose(1, context)
    assert near["mutation"] == "table-neighbour" and near["id"] in {"f1", "f2"}  # pcu and the Zn4O node
    assert near["units"] == rows[near["id"]]["units"]  # the blocks beyond pormake's travel with it
    lonely = ProposalContext(round=1, seed=0, exclude=frozenset({"irmof1", "f1", "f2"}), parents=("f2",))
    assert [c["origin"] for c in gen.propose(1, lonely)] == ["table"]  # another net is not a neighbour
