"""Real MOFs cut into building units (discovery.library.decompose): the design-space MOF's own blocks come
back, ids come from content, the CG view reassembles into the framework, records and libraries round-trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Structure

from discovery.errors import DiscoveryError
from discovery.library.decompose import (
    DecompositionError,
    check_reassembly,
    decompose,
    decomposed_mof,
    reassemble,
)
from discovery.library.units import UnitLibrary, block_from_row
from discovery.structures.mof import MOF


@pytest.fixture(scope="module")
def plain_irmof1(irmof1, tmp_path_factory):
    """The assembled IRMOF-1 as a user's CIF: atoms only, no CG view."""
    path = tmp_path_factory.mktemp("cif") / "irmof1.cif"
    irmof1.to_cif(path)
    return MOF.from_cif(path)


@pytest.fixture(scope="module")
def fluoro(plain_irmof1):
    """The same framework with two H of every linker (no two within 3 A: para) made F: a unit pormake lacks."""
    s = plain_irmof1.structure.copy()
    hydrogens = [i for i, site in enumerate(s) if site.specie.symbol == "H"]
    first_of_each = [i for i in hydrogens if not any(s.get_distance(i, j) < 3.0 for j in hydrogens if j < i)]
    for i in first_of_each:
        s.replace(i, "F")
    return MOF(id="fluoro", structure=s)


def test_a_design_space_mof_gives_back_its_net_and_pormake_blocks(plain_irmof1):
    dec = decompose(plain_irmof1.structure, "irmof1")
    assert dec.cg.topology == "pcu" and dec.guests_removed == 0
    assert {u["id"]: u["count"] for u in dec.units()} == {"E14": 3, "N16": 1}
    assert sorted(len(p.atoms) for p in dec.placements) == [10, 10, 10, 23]
    assert sorted(a for p in dec.placements for a in p.atoms) == list(range(len(plain_irmof1.structure)))
    check = check_reassembly(dec)
    assert check["structure_match"] and check["composition_equal"]
    assert check["max_deviation_A"] < 0.5  # pormake's ideal blocks, rotated onto the assembled ones


def test_unit_ids_and_the_cg_view_do_not_depend_on_atom_order_or_origin(fluoro):
    a = decompose(fluoro.structure, "a", topology=False)
    rng = np.random.default_rng(0)
    s = fluoro.structure
    order = rng.permutation(len(s))
    moved = Structure(s.lattice, [s[i].specie for i in order], (s.frac_coords[order] + [0.31, 0.17, 0.05]) % 1.0)
    b = decompose(moved, "b", topology=False)
    assert sorted(p.bb_id for p in a.placements) == sorted(p.bb_id for p in b.placements)
    new = [u["id"] for u in a.units() if u["library"] == "extended"]
    assert len(new) == 1 and new[0].startswith("U") and len(new[0]) == 13  # the fluorinated linker
    assert check_reassembly(b)["structure_match"]


def test_a_decomposed_record_is_self_contained(fluoro, tmp_path):
    dec = decompose(fluoro.structure, "fluoro", topology=False)
    record = MOF.from_json(decomposed_mof(fluoro, dec).to_json(tmp_path / "fluoro.json"))
    assert record.atom_bead is not None and (record.atom_bead >= 0).all()
    blocks = {i: block_from_row(i, row) for i, row in record.units.items()}
    blocks.update({i: dec.blocks[i] for i in record.cg.bb_ids if i not in blocks})  # pormake's, by id
    rebuilt = reassemble(record.cg, blocks)
    assert rebuilt.composition == record.structure.composition
    assert json.loads((tmp_path / "fluoro.json").read_text())["provenance"]["decomposition"]["units"]


def test_a_unit_library_saves_loads_and_reuses_geometry(fluoro, tmp_path):
    dec = decompose(fluoro.structure, "fluoro", topology=False)
    library = UnitLibrary()
    assert library.add(dec.blocks.values()) == [i for i in sorted(dec.blocks) if i.startswith("U")]
    path = library.save(tmp_path / "units.json.gz")
    again = UnitLibrary.load(path)
    assert again.version == library.version and len(again) == 1 and "N16" in again
    reused = decompose(fluoro.structure, "again", library={bb.id: bb for bb in again}, topology=False)
    assert check_reassembly(reused)["structure_match"]
    (tmp_path / "bad.json.gz").write_bytes(b"not gzip")
    with pytest.raises(Exception, match="not a unit library"):
        UnitLibrary.load(tmp_path / "bad.json.gz")


def test_a_structure_that_cannot_be_cut_is_a_named_error(monkeypatch, plain_irmof1):
    from mofstructure import mofdeconstructor

    def broken(atoms):
        raise UnboundLocalError("cannot access local variable 'frag'")  # what mofstructure 0.1.9.1 does on some phosphonates

    monkeypatch.setattr(mofdeconstructor, "secondary_building_units", broken)
    with pytest.raises(DecompositionError, match="irmof1: mofstructure could not cut.*frag"):
        decompose(plain_irmof1.structure, "irmof1")


def test_the_surrogate_scores_a_mof_with_units_beyond_pormake(fluoro):
    from surrogates.adsorption import graphs
    from surrogates.adsorption.graphs import GraphError, bb_graph, bb_index, cg_graph
    from test_surrogate import GEOMETRY

    record = decomposed_mof(fluoro, decompose(fluoro.structure, "fluoro", topology=False))
    (new,) = record.units
    if new not in graphs._EXTENDED:  # units are registered per process: another test may have met this one
        with pytest.raises(GraphError, match=f"{new}.*neither pormake's nor among the record's units"):
            cg_graph(record.cg, GEOMETRY, "fluoro")  # the units did not come with it
    graph = cg_graph(record.cg, GEOMETRY, "fluoro", units=record.units)
    index = {i for i in graph.bead_bb.tolist() if i >= len(bb_index())}
    assert len(index) == 1 and bb_graph(index.pop()).z.tolist().count(9) == 2  # C6H2F2, F = 9


def test_an_instance_in_another_conformation_becomes_a_conformer_of_its_id():
    from scipy.spatial.transform import Rotation

    from discovery.library.building_blocks import BuildingBlock
    from discovery.library.decompose import _place

    rng = np.random.default_rng(1)
    positions = rng.normal(size=(7, 3)) * 2.0  # an asymmetric 6-atom unit and one connection point
    base = BuildingBlock("Utest", ("C", "O", "N", "C", "H", "H", "X"), positions, (6,),
                         np.array([[0, 1], [1, 2], [2, 3], [3, 4], [0, 5], [3, 6]]))
    blocks: dict = {}
    assert _place(base, blocks)[0].id == "Utest"  # the first instance defines the id's geometry
    turned = Rotation.from_rotvec([0.3, -1.1, 0.7]).apply(positions) + [4.0, 0.0, -2.0]
    known, order, rotation, rmsd = _place(BuildingBlock("Utest", base.symbols, turned, (6,), base.bonds), blocks)
    assert known.id == "Utest" and rmsd < 1e-6 and list(order) == list(range(6))  # a rigid motion: the same block
    assert np.allclose(positions[:6] @ rotation.T, turned[:6] - turned[:6].mean(0) + positions[:6].mean(0) @ rotation.T)
    bent = positions * [1.6, 1.0, 1.0]  # stretched along x: no rotation brings it within 0.3 A
    assert _place(BuildingBlock("Utest", base.symbols, bent, (6,), base.bonds), blocks)[0].id == "Utest~1"
    assert _place(BuildingBlock("Utest", base.symbols, bent + 1.0, (6,), base.bonds), blocks)[0].id == "Utest~1"
    assert sorted(blocks) == ["Utest", "Utest~1"]


def _unit_atoms(index: int) -> list[int]:
    from surrogates.adsorption.graphs import bb_graph

    return bb_graph(index).z.tolist()


def test_graphs_with_real_units_are_read_in_another_process(fluoro):
    # a graph's bead_bb indexes this process's unit registry; a worker (the acquisition benchmark's
    # campaigns, spawned) registers the same units at the same indices before reading it
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from surrogates.adsorption.graphs import (GraphError, bb_index, cg_graph, register_units,
                                              registered_units)
    from test_surrogate import GEOMETRY

    record = decomposed_mof(fluoro, decompose(fluoro.structure, "fluoro", topology=False))
    graph = cg_graph(record.cg, GEOMETRY, "fluoro", units=record.units)
    (index,) = {i for i in graph.bead_bb.tolist() if i >= len(bb_index())}
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=register_units,
                             initargs=(registered_units(),)) as ex:
        assert ex.submit(_unit_atoms, index).result() == _unit_atoms(index)
    with pytest.raises(GraphError, match="has index"):  # here it is registered already, at another index
        register_units([("Uother", registered_units()[-1][1]), *registered_units()])


def test_a_cut_unit_pairs_in_cg_assembly_by_pormakes_connection_point_convention(fluoro, monkeypatch):
    """A cut unit keeps each X at its partner atom, a bond length from the partner's X; assembly moves them to
    the bond midpoints (pormake's convention), so the decomposed MOF's CG view is built again from its units."""
    import discovery.generator.cg_assembly as cg_assembly
    from discovery.library.units import assembly_form, is_pormake

    dec = decompose(fluoro.structure, "fluoro", topology=False)
    units = UnitLibrary(b for i, b in dec.blocks.items() if not is_pormake(i))
    linker = next(iter(units))
    moved = assembly_form(linker)
    for x in linker.connection_point_indices:
        (anchor,) = [int(b) if a == x else int(a) for a, b in np.asarray(linker.bonds) if x in (a, b)]
        assert np.allclose(moved.positions[x], (linker.positions[x] + linker.positions[anchor]) / 2)
    assert np.allclose(np.delete(moved.positions, linker.connection_point_indices, 0),
                       np.delete(linker.positions, linker.connection_point_indices, 0))

    result = cg_assembly.assemble_cg_view(dec.cg, use_orientations=True, library=units)
    assert result.ok and result.report.valid, result.message
    assert result.mof.structure.composition == dec.framework.composition

    monkeypatch.setattr(cg_assembly, "assembly_form", lambda bb: bb)  # the X's where the cut left them
    unconverted = cg_assembly.assemble_cg_view(dec.cg, use_orientations=True, library=units)
    assert not (unconverted.ok and unconverted.report.valid)  # the linkers float free of the nodes


def test_the_cg_assembly_benchmark_counts_each_outcome(fluoro, tmp_path):
    from discovery.generator.assembly_bench import benchmark_cg_assembly

    dec = decompose(fluoro.structure, "fluoro", topology=False)
    (tmp_path / "structures").mkdir()
    decomposed_mof(fluoro, dec).to_json(tmp_path / "structures" / "fluoro.json")
    broken = decomposed_mof(fluoro, dec).to_dict()
    broken["id"], broken["cg"] = "no-view", None
    (tmp_path / "structures" / "no-view.json").write_text(json.dumps(broken))
    result = benchmark_cg_assembly(tmp_path, n=5, seed=0)
    assert result["n"] == 2
    for run in ("positions_only", "with_orientations"):
        assert (result[run]["valid"], result[run]["not_built"]) == (1, 1)
        assert result[run]["reasons"] == {"no CG view": 1}
    with pytest.raises(DiscoveryError, match="no MOF records"):
        benchmark_cg_assembly(tmp_path / "structures" / "missing")
