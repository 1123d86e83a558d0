import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from discovery.oracle.transport import md

from discovery.oracle.adsorption import raspa
from discovery.oracle.box import Box, build_box
from discovery.structures.mof import MOF
from discovery.oracle.geometry.pockets import Pocket
from discovery.structures.supercell import perpendicular_widths

PRIMITIVE_FCC = Lattice.from_parameters(18.27, 18.27, 18.27, 60, 60, 60)  # IRMOF-1's primitive cell


def skewed() -> MOF:
    return MOF(id="toy-fcc", structure=Structure(PRIMITIVE_FCC, ["Zn", "O", "C"],
                                                  [[0.1, 0.2, 0.3], [0.6, 0.5, 0.4], [0.9, 0.05, 0.7]]))


def test_both_engines_simulate_the_same_box():
    mof, q = skewed(), np.array([0.5, -0.3, -0.2])
    pockets = [Pocket((0.5, 0.5, 0.5), 3.0), Pocket((0.0, 0.25, 0.75), 2.0)]
    box = raspa.simulation_box(mof, q, pockets=pockets)
    assert type(box) is Box and md.Box is Box  # one record: RASPA3 and LAMMPS read the same object
    again = build_box(mof, q, pockets=[(p.centre_frac, p.radius_A) for p in pockets])  # pairs work too
    assert np.array_equal(again.structure.frac_coords, box.structure.frac_coords) and again.blocking == box.blocking
    assert box.copies == 4 and len(box.structure) == 12 and len(box.blocking) == 2 * 4
    # each unit-cell atom's copies together, charges with them
    assert np.allclose(box.charges, np.repeat(q, 4)) and box.elements == [e for e in ("Zn", "O", "C") for _ in range(4)]


def test_lammps_view_is_the_fractional_box_rotated():
    box = build_box(skewed(), np.zeros(3), pockets=[Pocket((0.5, 0.5, 0.5), 3.0)])
    cell = box.cell
    assert cell[0, 1] == cell[0, 2] == cell[1, 2] == 0.0  # restricted triclinic
    assert abs(np.linalg.det(cell)) == pytest.approx(box.structure.lattice.volume)
    assert perpendicular_widths(cell).min() >= 2 * 12.8
    for frac, cart in ((box.structure.frac_coords, box.positions), (np.array(box.blocking)[:, :3], box.pockets[:, :3])):
        d = cart @ np.linalg.inv(cell) - frac
        assert np.allclose(d, np.rint(d), atol=1e-9)  # the same fractions, up to whole box vectors
    # distances are those of the unit cell: the rotation is rigid
    d_unit = skewed().structure.get_distance(0, 1)  # Zn-O
    f = (box.positions[np.array(box.elements) == "O"] - box.positions[0]) @ np.linalg.inv(cell)
    assert np.linalg.norm((f - np.rint(f)) @ cell, axis=1).min() == pytest.approx(d_unit, abs=1e-9)
    assert box.pockets.shape == (4, 4) and np.all(box.pockets[:, 3] == 3.0)
    assert box.unit_cell_width_A == pytest.approx(perpendicular_widths(PRIMITIVE_FCC.matrix).min())
