import numpy as np
from pymatgen.core import Lattice, Structure

from discovery.structures.bonds import bond_graph
from discovery.structures.validity import check_structure


def _names(report):
    return set(report.failed)


def test_overlapping_atoms_fail_the_named_check(irmof1):
    s = irmof1.structure.copy()
    s.append("C", s[10].coords + np.array([0.3, 0.0, 0.0]), coords_are_cartesian=True)
    report = check_structure(s)
    assert "overlap" in _names(report)
    overlap = next(c for c in report.checks if c.name == "overlap")
    assert "0.30 A" in overlap.message  # names the closest pair and its distance
    on_top = irmof1.structure.copy()
    on_top.append("O", on_top[10].coords, coords_are_cartesian=True)  # exactly on another atom: the worst overlap
    assert "0.00 A" in next(c for c in check_structure(on_top).checks if c.name == "overlap").message


def test_isolated_atom_fails(irmof1):
    s = irmof1.structure.copy()
    lone = s.lattice.get_cartesian_coords([0.5, 0.5, 0.5])  # the pore centre
    s.append("O", lone, coords_are_cartesian=True)
    report = check_structure(s)
    assert "isolated" in _names(report)
    assert "isolated" not in _names(check_structure(irmof1.structure))


def test_broken_linker_leaves_a_molecule_and_breaks_connectivity(irmof1):
    # remove the three benzene rings: Zn4O(CO2)6 clusters are left as molecules, no periodic framework
    keep = [i for i in range(len(irmof1.structure)) if irmof1.atom_bead[i] == 0]
    s = Structure.from_sites([irmof1.structure[i] for i in keep])
    report = check_structure(s)
    assert {"isolated", "connectivity"} <= _names(report)


def test_overcoordinated_hydrogen(irmof1):
    s = irmof1.structure.copy()
    h = next(i for i, site in enumerate(s) if site.specie.symbol == "H")
    s.append("H", s[h].coords + np.array([0.0, 0.0, 0.75]), coords_are_cartesian=True)
    assert "coordination" in _names(check_structure(s))


def test_degenerate_cell():
    s = Structure(Lattice([[5, 0, 0], [0, 5, 0], [5, 5, 0.05]]), ["C", "C"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    report = check_structure(s)
    assert report.failed == ["cell"]


def test_dimensionality_of_periodic_graphs():
    diamond = Structure.from_spacegroup("Fd-3m", Lattice.cubic(3.567), ["C"], [[0, 0, 0]])
    assert [dim for _, dim in bond_graph(diamond).components()] == [3]
    chain = Structure(Lattice.orthorhombic(3.0, 10, 10), ["C", "C"], [[0, 0, 0], [0.5, 0, 0]])  # C-C 1.5 A along a
    assert [dim for _, dim in bond_graph(chain).components()] == [1]
    report = check_structure(chain)
    assert "connectivity" in _names(report)
