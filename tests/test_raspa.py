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
    assert r.cycles == 50 and r.runs == 2  # an unreachable target runs to the cap and says so
    assert not r.converged and r.target == 1e-6 and r.kh_ci95 / r.kh > 1e-6
    loose = adaptive_henry(irmof1, charges="none", target=10.0, first_cycles=20, max_cycles=50, seed=2)
    assert loose.cycles == 20 and loose.runs == 1 and loose.converged  # a met target stops after the first run
    assert loose.kh == widom_henry(irmof1, charges="none", cycles=20, seed=2).kh  # one run: its own value


def _slow_interval_fake(calls: list, width_at_100: float = 0.5):
    """A fake ``widom_henry``: K_H 1e-5 whose relative half-width falls as cycles^-1/4, slower than the
    1/sqrt(cycles) the follow-up runs are sized by (as when a first run missed rare strong insertions)."""
    from discovery.oracle.adsorption.raspa import HenryResult

    def fake_widom_henry(mof, guest, *, cycles, seed, **_):
        calls.append((cycles, seed))
        kh, relative_ci = 1e-5, width_at_100 * (100 / cycles) ** 0.25
        return HenryResult(structure=mof.id, guest=guest.name, kh=kh, kh_ci95=kh * relative_ci, rosenbluth_weight=1.0,
                           temperature=298.0, charges="none", cycles=cycles, seed=seed, box_copies=1, cpu_s=0.01,
                           settings={})
    return fake_widom_henry


def _pooled_relative(calls: list, width_at_100: float = 0.5) -> float:
    n = sum(c for c, _ in calls)
    return float(np.sqrt(sum((c * width_at_100 * (100 / c) ** 0.25) ** 2 for c, _ in calls))) / n


@pytest.mark.parametrize("cap, converged", [(20_000, False), (1_000_000, True)])
def test_adaptive_henry_runs_until_the_target_or_the_cap(irmof1, monkeypatch, cap, converged):
    """The first run (50 % at 100 cycles) sizes a follow-up of 2,650 cycles after which the pooled interval is
    21 %, not 10 %: the runs go on, pooled after each, until the target is met or the cap stops them, and the
    result says which."""
    from discovery.oracle.adsorption import raspa

    calls: list = []
    monkeypatch.setattr(raspa, "widom_henry", _slow_interval_fake(calls))
    r = raspa.adaptive_henry(irmof1, target=0.1, first_cycles=100, max_cycles=cap, seed=7, box=object())
    assert len(calls) > 2 and r.runs == len(calls) and calls[1][0] == 2_650  # more than one follow-up
    assert [s for _, s in calls] == list(range(7, 7 + len(calls))) and r.seed == 7  # independent seeds
    assert r.cycles == sum(c for c, _ in calls) <= cap
    assert r.kh == pytest.approx(1e-5) and r.kh_ci95 / r.kh == pytest.approx(_pooled_relative(calls))
    assert r.converged is converged and r.target == 0.1
    if converged:
        assert r.kh_ci95 / r.kh <= 0.1 and r.cycles < cap
    else:  # the interval reached, above the target, after exactly the cap
        assert r.kh_ci95 / r.kh > 0.1 and r.cycles == cap


def test_adaptive_uptake_runs_until_the_target_or_the_cap(irmof1, monkeypatch):
    from discovery.oracle.adsorption import raspa
    from discovery.oracle.adsorption.forcefield import CO2

    calls: list = []

    def fake_gcmc_uptake(mof, guests, fractions, *, pressure_pa, cycles, seed, **_):
        calls.append((cycles, seed))
        width = 0.5 * (100 / cycles) ** 0.25  # slower than 1/sqrt(cycles), as in _slow_interval_fake
        return raspa.UptakeResult(pressure_pa=pressure_pa, temperature=298.0, mole_fractions={"CO2": 0.15, "N2": 0.85},
                                  uptake={"CO2": 2.0, "N2": 1.0}, ci95={"CO2": 2.0 * width, "N2": 0.1}, cycles=cycles,
                                  init_cycles=10, cpu_s=0.01)

    monkeypatch.setattr(raspa, "gcmc_uptake", fake_gcmc_uptake)
    r = raspa.adaptive_uptake(irmof1, (CO2, N2), (0.15, 0.85), pressure_pa=1e5, target=0.1, first_cycles=100,
                              max_cycles=20_000, seed=3)
    assert len(calls) == r.runs == 4 and r.cycles == 20_000 and [s for _, s in calls] == [3, 4, 5, 6]
    assert not r.converged and r.target == 0.1 and r.relative_ci("CO2") == pytest.approx(_pooled_relative(calls))
    assert r.uptake == pytest.approx({"CO2": 2.0, "N2": 1.0})  # every guest pooled, by cycles
    assert r.ci95["N2"] == pytest.approx(0.1 * np.sqrt(sum(c * c for c, _ in calls)) / 20_000)


def test_next_run_is_sized_by_the_rule_and_never_passes_the_cap():
    from discovery.oracle.adsorption.adaptive import next_cycles, pool

    assert next_cycles(0.05, 0.05, 500, 5000) == 0  # met
    assert next_cycles(0.2, 0.05, 5000, 5000) == 0  # capped
    assert next_cycles(0.1, 0.05, 500, 5000) == 1700  # 500 x 4 x 1.1 - 500
    assert next_cycles(0.0501, 0.05, 1000, 5000) >= 100  # at least 10 % of the cycles done
    assert next_cycles(0.5, 0.05, 500, 5000) == 4500 and next_cycles(float("inf"), 0.05, 500, 5000) == 4500
    assert pool([(100, 2.0, 0.3)]) == (2.0, 0.3)  # one run: unchanged
    assert pool([(100, 1.0, 0.2), (300, 1.1, 0.1)]) == pytest.approx((1.075, np.hypot(20, 30) / 400))  # agree
    # runs 4-8 of their own sigmas apart: their intervals are too small, the pooled one is scaled (PDG)
    mean, half = pool([(100, 1.0, 0.2), (300, 2.0, 0.1)])
    sigma = np.array([0.2, 0.1]) / 1.96
    chi2 = float(np.sum(((np.array([1.0, 2.0]) - 1.75) / sigma) ** 2))
    assert mean == pytest.approx(1.75) and half == pytest.approx(np.hypot(20, 30) / 400 * np.sqrt(chi2))
    assert half > 0.5  # wide enough to contain both runs' values


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
