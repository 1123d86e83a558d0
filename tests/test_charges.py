import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from discovery.oracle.charges import NEUTRALITY_TOLERANCE_E, ChargeError, neutral_charges
from discovery.oracle.adsorption.forcefield import ForceFieldError
from discovery.oracle.transport.md import run_md
from discovery.oracle.transport.md_setup import MDError
from discovery.structures.mof import MOF
from discovery.oracle.adsorption.raspa import OracleError, framework_charges


def toy(charges=None, elements=("Zn", "O", "C", "H")) -> MOF:
    rng = np.random.default_rng(0)
    return MOF(id="toy", structure=Structure(Lattice.cubic(12.0), list(elements), rng.random((len(elements), 3))),
               charges=None if charges is None else np.asarray(charges, dtype=float))


def test_a_rounding_residual_is_spread_evenly_and_reported():
    q = np.array([1.2, -0.9, 0.3, -0.596])  # +0.004 e: CIF rounding noise
    out = neutral_charges(toy(), q)
    assert out.residual_e == pytest.approx(0.004)
    assert abs(out.charges.sum()) < 1e-15
    assert np.allclose(q - out.charges, 0.001)  # the same share for every atom
    assert neutral_charges(toy(), np.zeros(4)).residual_e == 0.0


def test_a_real_net_charge_is_rejected_with_the_callers_error():
    q = np.array([1.0, -0.9, 0.0, 0.0]) + [NEUTRALITY_TOLERANCE_E / 4, 0, 0, 0]  # 0.1025 e
    with pytest.raises(ChargeError, match=r"toy: framework charges sum to \+0.1025 e"):
        neutral_charges(toy(), q)
    with pytest.raises(OracleError, match="sum to"):
        neutral_charges(toy(), q, error=OracleError)
    with pytest.raises(ChargeError, match="toy: charges must be 4 finite numbers, got 3 charges"):
        neutral_charges(toy(), np.zeros(3))
    with pytest.raises(ChargeError, match="got 1 that are not"):
        neutral_charges(toy(), [0.0, np.inf, 0.0, 0.0])
    with pytest.raises(ForceFieldError, match="toy: .*'Og'"):
        neutral_charges(toy(elements=("Og", "C")), np.zeros(2))


def test_both_engines_apply_the_same_policy():
    q = np.array([1.2, -0.9, 0.3, -0.596])
    expected = neutral_charges(toy(), q).charges
    assert np.array_equal(framework_charges(toy(q), "cif"), expected)  # RASPA3's charges
    with pytest.raises(OracleError, match="sum to"):
        framework_charges(toy(q + 0.1), "cif")
    with pytest.raises(MDError, match="sum to"):  # LAMMPS's: rejected before LAMMPS is loaded
        run_md(toy(), q + 0.1, production_ps=2.0)
