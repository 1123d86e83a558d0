from collections import Counter

import numpy as np
import pytest

from discovery.library.assembly import Recipe
from discovery.errors import IncompatibleCombinationError, UnknownBuildingBlockError, UnknownTopologyError
from discovery.structures.validity import check_mof

IRMOF1_PRIMITIVE_A = 25.832 / 2  # IRMOF-1 is cubic, a = 25.832 A; the pcu primitive cell holds one Zn4O


def test_irmof1_composition(irmof1):
    counts = Counter(site.specie.symbol for site in irmof1.structure)
    assert counts == {"Zn": 4, "O": 13, "C": 24, "H": 12}  # Zn4O(BDC)3


def test_irmof1_lattice_near_known(irmof1):
    a, b, c, alpha, beta, gamma = irmof1.structure.lattice.parameters
    assert np.allclose([a, b, c], IRMOF1_PRIMITIVE_A, rtol=0.05)
    assert np.allclose([alpha, beta, gamma], 90.0, atol=1.0)


def test_irmof1_is_valid(irmof1):
    report, geometry = check_mof(irmof1.structure, name=irmof1.id)
    assert report.valid, report.reason
    assert {c.name for c in report.checks} >= {"overlap", "coordination", "isolated", "connectivity",
                                               "pore_limiting_diameter", "co2_accessible"}
    assert geometry.lcd > geometry.pld > 2.4
    assert 0.4 < geometry.density_g_cm3 < 0.8  # IRMOF-1: 0.59 g/cm3


def test_cg_view_matches_recipe(irmof1, assembler):
    cg = irmof1.cg
    assert cg.topology == "pcu"
    assert Counter(cg.bb_ids) == {"N16": 1, "E14": 3}  # one node, three edges per pcu cell
    assert [b.role for b in cg.beads].count("node") == 1
    # each bead owns exactly its BB's atoms
    for k, bead in enumerate(cg.beads):
        atoms = Counter(irmof1.structure[int(i)].specie.symbol for i in np.where(irmof1.atom_bead == k)[0])
        assert atoms == assembler.bbs.get(bead.bb_id).composition
        assert np.allclose(bead.orientation @ bead.orientation.T, np.eye(3), atol=1e-6)
    # edge beads sit halfway between node images (pcu: at the cell-edge midpoints relative to the node)
    node = cg.beads[[b.role for b in cg.beads].index("node")].frac_coords
    for bead in cg.beads:
        if bead.role == "edge":
            d = (bead.frac_coords - node + 0.5) % 1.0 - 0.5
            assert sorted(np.round(np.abs(d), 2)) == [0.0, 0.0, 0.5]


def test_orientation_maps_library_bb_onto_placed_atoms(irmof1, assembler):
    bead = irmof1.cg.beads[0]
    bb = assembler.bbs.get(bead.bb_id)
    real = [i for i, s in enumerate(bb.symbols) if s != "X"]
    placed = (bb.positions[real] - bb.centroid) @ bead.orientation.T + bead.frac_coords @ irmof1.cg.lattice
    atoms = irmof1.structure.cart_coords[irmof1.atom_bead == 0]
    # compare as periodic sets: every placed library atom coincides with a framework atom
    lattice = irmof1.structure.lattice
    d = lattice.get_all_distances(lattice.get_fractional_coords(placed), lattice.get_fractional_coords(atoms))
    assert d.min(axis=1).max() < 0.05


def test_wrong_connectivity_rejected_with_reason(assembler):
    with pytest.raises(IncompatibleCombinationError, match="6-connected"):
        assembler.assemble("pcu+N1+E14")


def test_poor_fit_rejected_with_rmsd(assembler):
    compat = assembler.check(Recipe.parse("pcu+N197+E14"))  # a distorted Zn4O: RMSD ~0.43 on pcu
    assert not compat.compatible and "RMSD" in compat.reason


def test_unknown_ids_are_named(assembler):
    with pytest.raises(UnknownTopologyError, match="no-such-net"):
        assembler.assemble("no-such-net+N16+E14")
    with pytest.raises(UnknownBuildingBlockError, match="E9999"):
        assembler.assemble("pcu+N16+E9999")
    with pytest.raises(IncompatibleCombinationError, match="bad recipe"):
        Recipe.parse("pcu-N16")


def test_recipe_string_round_trip():
    r = Recipe("tbo", ("N10", "N20"), ("E14", None))
    assert str(r) == "tbo+N10.N20+E14.-"
    assert Recipe.parse(str(r)) == r


def test_channel_analysis_answers_the_pore_checks_as_the_full_geometry(irmof1):
    """A sphere percolates exactly when it is narrower than Zeo++'s PLD; the cheap check agrees with the full one."""
    from discovery.oracle.geometry.zeo import compute_channels, compute_geometry

    pld = compute_geometry(irmof1.structure, name=irmof1.id).pld
    below, above = pld / 2 - 0.05, pld / 2 + 0.05
    channels = compute_channels(irmof1.structure, (below, above), name=irmof1.id)
    assert channels.percolates(below) and not channels.percolates(above)
    fast, geometry = check_mof(irmof1.structure, name=irmof1.id, descriptors=False)
    assert geometry is None and fast.valid
    assert [c.name for c in fast.checks] == [c.name for c in check_mof(irmof1.structure)[0].checks]


def test_environment_images_are_cartesian_and_match_pymatgen():
    """The edge-spin search's neighbours: the Cartesian images pymatgen's sphere search finds (it returns
    fractional coordinates, which the spin search once used as Cartesian ones)."""
    from pymatgen.core import Lattice

    from discovery.library.orient import environment_images

    rng = np.random.default_rng(3)
    for _ in range(20):
        lat = Lattice.from_parameters(*rng.uniform(6, 25, 3), *rng.uniform(60, 120, 3))
        env = rng.uniform(-0.3, 1.3, (50, 3)) @ lat.matrix
        radii, own = rng.uniform(0.3, 1.5, 50), np.arange(50) < 4
        near, near_r = environment_images(lat, env, radii, own, env[:4], 3.5)
        centre = env[:4].mean(0)
        reach = np.linalg.norm(env[:4] - centre, axis=1).max() + 3.5
        frac, _, idx, image = lat.get_points_in_sphere(lat.get_fractional_coords(env), centre, reach,
                                                       zip_results=False)
        keep = ~(own[np.asarray(idx, int)] & np.all(np.asarray(image) == 0, axis=1))
        expected = lat.get_cartesian_coords(np.asarray(frac)[keep])
        assert sorted(map(tuple, np.round(near, 6))) == sorted(map(tuple, np.round(expected, 6)))
        assert np.all(np.linalg.norm(near - centre, axis=1) < reach)
        assert sorted(np.round(near_r, 6)) == sorted(np.round(radii[np.asarray(idx, int)[keep]], 6))


def test_rmsd_memo_gives_pormakes_answer(assembler):
    """The memoised Locator returns what pormake's computes, once per (slot, block) geometry."""
    from discovery.library._pormake import locator, pormake

    target = assembler.topologies.pormake_topology("pcu").unique_local_structures[0]
    bb = assembler.bbs.pormake_bb("N16")
    fresh = pormake().Locator().calculate_rmsd(target, bb)
    memo = locator()
    first = memo.calculate_rmsd(target, bb)
    size = len(memo.cache)
    assert memo.calculate_rmsd(target, bb.copy()) == first == fresh
    assert len(memo.cache) == size
