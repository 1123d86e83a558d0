import numpy as np
import pytest
from pymatgen.core import Lattice

from discovery.oracle.adsorption.forcefield import N2
from discovery.structures.mof import MOF
from discovery.oracle.adsorption.raspa import OracleError, replication, widom_henry

pytestmark = pytest.mark.filterwarnings("ignore:OpenCL library not found:RuntimeWarning")


def test_smallest_box_respects_the_minimum_image():
    from discovery.structures.supercell import perpendicular_widths, simulation_cell

    primitive_fcc = Lattice.from_parameters(18.27, 18.27, 18.27, 60, 60, 60)  # IRMOF-1's primitive cell
    cell = simulation_cell(primitive_fcc, 12.8)
    assert cell.copies == 4  # the cubic conventional cell, not 2 x 2 x 2 = 8 primitive cells
    assert perpendicular_widths(cell.lattice.matrix).min() >= 25.6
    assert simulation_cell(Lattice.cubic(16.99), 12.8).copies == 6  # ZIF-8: 6 cubic cells suffice, not 8
    assert simulation_cell(Lattice.cubic(30.0), 12.8).copies == 1


def test_box_keeps_charges_with_their_atoms(irmof1):
    from discovery.oracle.adsorption.raspa import simulation_box

    q = np.where([s.specie.symbol == "Zn" for s in irmof1.structure], 1.0, 0.0)
    q -= q.mean()
    box = simulation_box(irmof1, q)
    zn = np.array([s.specie.symbol == "Zn" for s in box.structure])
    assert box.copies == 8 and len(box.structure) == 8 * irmof1.n_atoms
    assert np.allclose(box.charges[zn], q.max()) and np.allclose(box.charges[~zn], q.min())
    assert abs(box.charges.sum()) < 1e-9


def test_bad_inputs_are_named(irmof1):
    from pymatgen.core import Structure

    from discovery.errors import StructureReadError
    from discovery.oracle.adsorption.forcefield import ForceFieldError
    from discovery.oracle.adsorption.raspa import simulation_box

    with pytest.raises(OracleError, match="3 charges for"):
        simulation_box(irmof1, np.zeros(3))
    q = np.zeros(irmof1.n_atoms)
    q[0] = np.nan
    with pytest.raises(StructureReadError, match="nan: charges must be"):  # NaN charges never reach RASPA
        MOF(id="nan", structure=irmof1.structure, charges=q)
    exotic = MOF(id="rf", structure=Structure(Lattice.cubic(10.0), ["Rf", "C"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    overlapping = irmof1.structure.copy()
    overlapping.append("H", overlapping[0].coords + [0.3, 0.0, 0.0], coords_are_cartesian=True)
    with pytest.raises(OracleError, match="clash: overlap: "):
        simulation_box(MOF(id="clash", structure=overlapping), "none")
    with pytest.raises(ForceFieldError, match="Rf"):  # UFF stops at lawrencium
        widom_henry(exotic, charges="none", cycles=1)


def test_replication_reaches_twice_the_cutoff():
    assert replication(Lattice.cubic(13.2)) == (2, 2, 2)
    assert replication(Lattice.cubic(25.7)) == (1, 1, 1)
    # a 60-degree rhombohedral cell is thinner than its edges: IRMOF-1's primitive cell needs 2 x 2 x 2
    assert replication(Lattice.from_parameters(18.27, 18.27, 18.27, 60, 60, 60)) == (2, 2, 2)


def test_widom_henry_is_positive_and_reproducible(irmof1):
    a = widom_henry(irmof1, charges="none", cycles=40, seed=3)
    b = widom_henry(irmof1, charges="none", cycles=40, seed=3)
    assert a.kh > 0 and np.isfinite(a.kh) and a.kh_ci95 >= 0
    assert a.kh == b.kh  # raspalib is bit-reproducible for a given seed
    assert a.box_copies == 8  # the built IRMOF-1 is a 12.9 A cube: 2 x 2 x 2
    n2 = widom_henry(irmof1, N2, charges="none", cycles=40, seed=3)
    assert n2.kh < a.kh  # CO2 adsorbs more strongly than N2 in a Zn-carboxylate framework


def test_henry_and_heat_units(irmof1):
    from discovery.oracle.adsorption.raspa import GAS_CONSTANT, heat_of_adsorption

    r = widom_henry(irmof1, charges="none", cycles=30, seed=4)
    rho = irmof1.structure.density * 1000.0  # g/cm3 -> kg/m3
    assert r.kh == pytest.approx(r.rosenbluth_weight / (GAS_CONSTANT * 298.0 * rho), rel=1e-6)  # mol/kg/Pa
    heat = heat_of_adsorption(irmof1, charges="none", cycles=30, init_cycles=5, seed=4)
    assert heat.energy_K < 0  # an attractive framework
    assert heat.qst_kj_mol == pytest.approx(GAS_CONSTANT * (298.0 - heat.energy_K) / 1000.0)


def test_mixture_gcmc_reports_each_gas(irmof1):
    from discovery.oracle.adsorption.forcefield import CO2
    from discovery.oracle.adsorption.raspa import gcmc_uptake

    mix = gcmc_uptake(irmof1, (CO2, N2), (0.15, 0.85), pressure_pa=1e5, charges="none", cycles=40, init_cycles=20)
    assert set(mix.uptake) == {"CO2", "N2"} and mix.uptake["CO2"] > 0
    assert mix.fugacity_coefficients["N2"] == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(OracleError, match="sum to 1"):
        gcmc_uptake(irmof1, (CO2, N2), (0.15, 0.80), pressure_pa=1e5, charges="none", cycles=1)


def test_charges_are_required_and_must_be_neutral(irmof1):
    with pytest.raises(OracleError, match="no charges"):
        widom_henry(irmof1, charges="cif", cycles=1)
    q = np.zeros(irmof1.n_atoms)
    q[0] = 0.5
    charged = MOF(id="charged", structure=irmof1.structure, charges=q)
    with pytest.raises(OracleError, match="sum to"):
        widom_henry(charged, charges="cif", cycles=1)


def test_adaptive_cycles_stop_at_the_cap(irmof1):
    from discovery.oracle.adsorption.raspa import adaptive_henry

    r = adaptive_henry(irmof1, charges="none", target=1e-6, first_cycles=20, max_cycles=50, seed=2)
    assert r.cycles == 50  # an unreachable target runs to the cap and says so
    loose = adaptive_henry(irmof1, charges="none", target=10.0, first_cycles=20, max_cycles=50, seed=2)
    assert loose.cycles == 20  # a met target stops after the first run


def test_eqeq_charges_are_neutral_and_chemically_sensible(irmof1):
    from discovery.oracle.charges import eqeq_charges

    q = eqeq_charges(irmof1.structure, irmof1.id)
    assert q.shape == (irmof1.n_atoms,)
    assert abs(q.sum()) < 1e-6
    symbols = [s.specie.symbol for s in irmof1.structure]
    assert all(qi > 0 for qi, el in zip(q, symbols) if el in ("Zn", "H"))
    assert all(qi < 0 for qi, el in zip(q, symbols) if el == "O")
    r = widom_henry(irmof1, charges="eqeq", cycles=20, seed=1)
    assert r.kh > 0 and r.charges == "eqeq"
