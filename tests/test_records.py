import numpy as np
import pytest

from discovery.errors import StructureReadError
from discovery.structures.mof import MOF


def test_cif_round_trip_keeps_charges(irmof1, tmp_path):
    rng = np.random.default_rng(0)
    q = rng.normal(0, 0.5, irmof1.n_atoms)
    mof = MOF(id="q", structure=irmof1.structure, charges=q - q.mean())
    path = tmp_path / "q.cif"
    mof.to_cif(path)
    back = MOF.from_cif(path)
    assert [s.specie.symbol for s in back.structure] == [s.specie.symbol for s in mof.structure]
    assert np.allclose(back.charges, mof.charges, atol=1e-6)
    assert np.allclose(back.structure.frac_coords, mof.structure.frac_coords, atol=1e-6)
    assert abs(back.total_charge) < 1e-4


def test_cif_without_charges(irmof1, tmp_path):
    irmof1.to_cif(tmp_path / "a.cif")
    assert MOF.from_cif(tmp_path / "a.cif").charges is None


def test_symmetric_cif_with_charges_expands(tmp_path):
    # a rock-salt-like cell written with symmetry: charges follow their sites through the expansion
    text = """data_test
_cell_length_a 4.2
_cell_length_b 4.2
_cell_length_c 4.2
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'F m -3 m'
loop_
_symmetry_equiv_pos_as_xyz
x,y,z
x+1/2,y+1/2,z
x+1/2,y,z+1/2
x,y+1/2,z+1/2
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_charge
Mg1 Mg 0 0 0 1.5
O1 O 0.5 0 0 -1.5
"""
    (tmp_path / "mgo.cif").write_text(text)
    mof = MOF.from_cif(tmp_path / "mgo.cif")
    assert len(mof.structure) == 8
    for site, q in zip(mof.structure, mof.charges):
        assert q == (1.5 if site.specie.symbol == "Mg" else -1.5)


def test_json_round_trip_keeps_cg_view(irmof1):
    back = MOF.from_json(irmof1.to_json())
    assert back.cg.bb_ids == irmof1.cg.bb_ids
    assert np.allclose(back.cg.cart_coords(), irmof1.cg.cart_coords())
    assert np.array_equal(back.atom_bead, irmof1.atom_bead)
    assert back.provenance["recipe"] == "pcu+N16+E14"
    assert back.formula == irmof1.formula


def test_to_ase_carries_charges(irmof1):
    mof = MOF(id="x", structure=irmof1.structure, charges=np.zeros(irmof1.n_atoms))
    atoms = mof.to_ase()
    assert len(atoms) == irmof1.n_atoms and all(atoms.pbc)
    assert np.allclose(atoms.cell.cellpar(), irmof1.structure.lattice.parameters)
    assert np.allclose(atoms.get_initial_charges(), 0.0)


def test_broken_cif_is_named(tmp_path):
    path = tmp_path / "broken.cif"
    path.write_text("data_x\n_cell_length_a 10\nthis is not a cif\n")
    with pytest.raises(StructureReadError, match="broken.cif"):
        MOF.from_cif(path)


def test_unknown_element_is_named(irmof1, tmp_path):
    text = irmof1.to_cif().replace(" Zn1 Zn ", " Qq1 Qq ")
    (tmp_path / "qq.cif").write_text(text)
    with pytest.raises(StructureReadError, match="Qq"):
        MOF.from_cif(tmp_path / "qq.cif")


def test_nan_charges_rejected(irmof1):
    q = np.zeros(irmof1.n_atoms)
    q[3] = np.nan
    with pytest.raises(StructureReadError, match="finite"):
        MOF(id="nan", structure=irmof1.structure, charges=q)


def test_nan_coordinate_in_cif_is_named(irmof1, tmp_path):
    lines = irmof1.to_cif().splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(" Zn1 "))
    parts = lines[i].split()
    parts[2] = "nan"
    lines[i] = " " + " ".join(parts)
    (tmp_path / "nan.cif").write_text("\n".join(lines) + "\n")
    with pytest.raises(StructureReadError, match="nan.cif"):
        MOF.from_cif(tmp_path / "nan.cif")
