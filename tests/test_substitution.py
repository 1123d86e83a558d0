"""Isoreticular edits of a MOF known unit by unit: a unit fits a slot only with the same anchors at the same
places; a swap keeps the neighbours' atoms and makes no new bond; the generator edits a real parent in place."""

import numpy as np
import pytest

from discovery.generator.substitution import (Frame, SlotIndex, choose_swaps, clearance, fit_slot, slot_of,
                                              substitute)
from discovery.library.decompose import decompose
from discovery.structures.mof import Bead, CGView
from discovery.structures.validity import check_structure


@pytest.fixture(scope="module")
def irmof1_frame(irmof1):
    dec = decompose(irmof1.structure, "irmof1", topology=False)
    return Frame("irmof1", dec.cg, dec.blocks)


@pytest.fixture(scope="module")
def fluoro_linker(irmof1):
    """IRMOF-1's linker with one H made F, as a unit cut from a real MOF (pormake has no such block)."""
    s = irmof1.structure.copy()
    s.replace(next(i for i, site in enumerate(s) if site.specie.symbol == "H"), "F")
    dec = decompose(s, "f1", topology=False)
    (uid,) = [b for b in dec.blocks if dec.blocks[b].composition.get("F")]
    return dec.blocks[uid]


def _linker(frame):
    (bb_id,) = [b for b, bb in frame.blocks.items() if not bb.has_metal]
    return bb_id


def _turned(bb, seed=3):
    from dataclasses import replace

    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return replace(bb, positions=bb.positions @ q.T + np.array([1.0, -2.0, 0.5])), q


@pytest.mark.parametrize("metal", [False, True])  # a linear linker (2 points), a node (6: the seeded search)
def test_a_unit_fits_its_own_slot_however_it_is_turned(irmof1_frame, metal):
    (bb,) = [bb for bb in irmof1_frame.blocks.values() if bb.has_metal == metal]
    turned, _ = _turned(bb)
    fit = fit_slot(slot_of(turned), slot_of(bb))
    assert fit is not None and fit.rmsd < 1e-6
    placed, target = fit.apply(slot_of(turned).points), slot_of(bb).points
    assert np.linalg.norm(placed[:, None] - target[None], axis=-1).min(axis=1).max() < 1e-6
    assert slot_of(bb).linear != metal


def test_units_with_other_anchors_or_lengths_do_not_fit(irmof1_frame):
    from discovery.library.building_blocks import BuildingBlockLibrary

    library = BuildingBlockLibrary()
    bdc = slot_of(irmof1_frame.blocks[_linker(irmof1_frame)])
    length = np.linalg.norm(bdc.anchors[0] - bdc.anchors[1])
    others = [slot_of(library.get(i)) for i in library.ids() if library.get(i).n_connection_points == 2]
    others = [s for s in others if s is not None]
    longer = [s for s in others if s.signature == bdc.signature
              and abs(np.linalg.norm(s.anchors[0] - s.anchors[1]) - length) > 1.5]
    other_anchor = [s for s in others if s.signature != bdc.signature]
    assert longer and other_anchor  # the library has both kinds
    assert all(fit_slot(s, bdc) is None for s in longer[:10] + other_anchor[:10])


def test_a_linker_swapped_for_its_fluorinated_twin_keeps_the_framework(irmof1_frame, fluoro_linker):
    parent, linker = irmof1_frame, _linker(irmof1_frame)
    fit = fit_slot(slot_of(fluoro_linker), slot_of(parent.blocks[linker]))
    assert fit is not None and fit.rmsd < 0.1
    child = substitute(parent, {linker: (fluoro_linker, fit)}, "child")
    n_linkers = sum(b.bb_id == linker for b in parent.cg.beads)
    assert len(child.swapped) == n_linkers and child.mutation == f"{linker}->{fluoro_linker.id}"
    before, after = parent.structure(), child.frame.structure()
    assert after.composition["F"] == n_linkers and after.composition["H"] == before.composition["H"] - n_linkers
    assert np.allclose(after.lattice.matrix, before.lattice.matrix)
    # the nodes did not move: their atoms are where the parent's are
    nodes = [i for i, b in enumerate(parent.cg.beads) if b.bb_id != linker]
    keep_before = np.isin(parent.atom_bead(), nodes)
    keep_after = np.isin(child.frame.atom_bead(), nodes)
    assert np.allclose(before.cart_coords[keep_before], after.cart_coords[keep_after])
    assert clearance(child.frame, child.swapped) >= 1.25
    assert check_structure(after).valid, check_structure(after).reason


def test_clearance_sees_a_unit_pushed_into_its_neighbours(irmof1_frame):
    parent = irmof1_frame
    i = next(k for k, b in enumerate(parent.cg.beads) if not parent.blocks[b.bb_id].has_metal)
    assert clearance(parent, [i]) >= 1.25
    bead = parent.cg.beads[i]
    lattice = np.asarray(parent.cg.lattice)
    shifted = Bead(bead.bb_id, bead.role, bead.frac_coords + np.linalg.solve(lattice.T, [1.0, 0.6, 0.0]),
                   bead.orientation)
    beads = list(parent.cg.beads)
    beads[i] = shifted
    moved = Frame("moved", CGView(parent.cg.lattice, tuple(beads)), parent.blocks)
    assert clearance(moved, [i]) < 1.25


def test_the_generator_swaps_toward_what_it_denoised(irmof1_frame, fluoro_linker):
    """Every linker bead denoised onto the fluorinated unit: all linkers become it; a node is kept, as no
    other node in the index fits its slot."""
    parent, linker = irmof1_frame, _linker(irmof1_frame)
    blocks = {**parent.blocks, fluoro_linker.id: fluoro_linker}
    ids = sorted(blocks)
    vectors = np.random.default_rng(0).normal(size=(len(ids), 8))
    wanted = np.array([vectors[ids.index(fluoro_linker.id if b.bb_id == linker else b.bb_id)]
                       for b in parent.cg.beads])
    index = SlotIndex(ids, blocks.get)
    swaps = choose_swaps(parent, wanted, vectors, index)
    assert list(swaps) == [linker] and swaps[linker][0].id == fluoro_linker.id
    # what it denoised is the parent's own unit: nothing is swapped
    own = np.array([vectors[ids.index(b.bb_id)] for b in parent.cg.beads])
    assert choose_swaps(parent, own, vectors, index) == {}
