import pytest

from discovery.oracle.adsorption.eos import fugacity_coefficients
from discovery.oracle.adsorption.forcefield import CO2, N2


def test_ideal_gas_limit():
    assert fugacity_coefficients([CO2], [1.0], 298.0, 1.0) == pytest.approx([1.0], abs=1e-6)


def test_pure_co2_matches_reference_values():
    # NIST (Span-Wagner) at 298.15 K: phi = 0.9949 at 1 bar; Peng-Robinson is within a few 1e-4 there
    assert fugacity_coefficients([CO2], [1.0], 298.15, 1e5)[0] == pytest.approx(0.9949, abs=1e-3)
    # and clearly non-ideal near saturation (PR: ~0.74 at 50 bar)
    assert fugacity_coefficients([CO2], [1.0], 298.15, 50e5)[0] == pytest.approx(0.74, abs=0.02)


def test_flue_gas_mixture():
    phi_co2, phi_n2 = fugacity_coefficients([CO2, N2], [0.15, 0.85], 298.0, 1e5)
    # N2 is nearly ideal at 1 bar; CO2 in an N2-rich mixture is closer to ideal than pure CO2
    assert phi_n2 == pytest.approx(1.0, abs=1e-3)
    assert fugacity_coefficients([CO2], [1.0], 298.0, 1e5)[0] < phi_co2 < 1.0
    # a mixture of a component with itself is the pure gas
    assert fugacity_coefficients([CO2, CO2], [0.3, 0.7], 298.0, 1e6) == pytest.approx(
        fugacity_coefficients([CO2], [1.0], 298.0, 1e6) * 2)
