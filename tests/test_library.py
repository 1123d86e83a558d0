import numpy as np
import pytest

from discovery.library.building_blocks import BuildingBlockLibrary
from discovery.errors import UnknownBuildingBlockError, UnknownTopologyError
from discovery.library.topologies import TopologyLibrary


@pytest.fixture(scope="module")
def bbs():
    return BuildingBlockLibrary()


def test_library_holds_pormake_building_blocks(bbs):
    assert len(bbs) == 867
    assert "N16" in bbs and "E14" in bbs


def test_zn4o_node_record(bbs):
    bb = bbs.get("N16")
    assert bb.kind == "node"
    assert bb.n_connection_points == 6
    assert bb.composition == {"C": 6, "O": 13, "Zn": 4}
    assert bb.metals == ("Zn",)
    # connection points sit symmetrically around their centroid (octahedral arms of equal length)
    arms = np.linalg.norm(bb.connection_points - bb.centroid, axis=1)
    assert np.allclose(arms, arms[0], atol=1e-3)
    assert bb.descriptors["n_metal_atoms"] == 4


def test_benzene_edge_record(bbs):
    bb = bbs.get("E14")
    assert bb.kind == "edge" and not bb.has_metal
    assert bb.formula == "C6H4"
    assert bb.bonds.shape[1] == 2 and bb.bonds.max() < len(bb.symbols)


def test_unknown_building_block_is_named(bbs):
    with pytest.raises(UnknownBuildingBlockError, match="N99999"):
        bbs.get("N99999")


def test_topology_slots():
    topologies = TopologyLibrary()
    pcu = topologies.info("pcu")
    assert [(t.cn, t.count) for t in pcu.node_types] == [(6, 1)]
    assert pcu.n_edges == 3 and [e.pair for e in pcu.edge_types] == [(0, 0)]
    tbo = topologies.info("tbo")
    assert sorted(t.cn for t in tbo.node_types) == [3, 4]
    with pytest.raises(UnknownTopologyError, match="no-such-net"):
        topologies.info("no-such-net")
