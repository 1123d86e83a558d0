"""Peng-Robinson fugacity coefficients of gas mixtures (van der Waals one-fluid mixing, k_ij = 0).

GCMC needs each component's fugacity f_i = phi_i y_i P. At flue-gas conditions (1 bar, 298 K) the
coefficients are within 1 % of one, but the protocol states the equation of state, so it is applied.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from discovery.oracle.adsorption.forcefield import Guest

R = 8.314462618  # J / (mol K)
SQRT2 = math.sqrt(2.0)


def fugacity_coefficients(guests: Sequence[Guest], mole_fractions: Sequence[float], temperature: float,
                          pressure_pa: float) -> list[float]:
    """phi_i of each component of the gas phase (the largest, vapour root of the cubic)."""
    y = np.asarray(mole_fractions, dtype=float)
    tc = np.array([g.critical_temperature for g in guests])
    pc = np.array([g.critical_pressure for g in guests])
    omega = np.array([g.acentric_factor for g in guests])
    kappa = 0.37464 + 1.54226 * omega - 0.26992 * omega**2
    alpha = (1.0 + kappa * (1.0 - np.sqrt(temperature / tc))) ** 2
    a = 0.45724 * (R * tc) ** 2 / pc * alpha
    b = 0.07780 * R * tc / pc
    a_ij = np.sqrt(np.outer(a, a))
    a_mix, b_mix = float(y @ a_ij @ y), float(y @ b)
    big_a = a_mix * pressure_pa / (R * temperature) ** 2
    big_b = b_mix * pressure_pa / (R * temperature)
    roots = np.roots([1.0, -(1.0 - big_b), big_a - 3 * big_b**2 - 2 * big_b, -(big_a * big_b - big_b**2 - big_b**3)])
    z = float(max(r.real for r in roots if abs(r.imag) < 1e-10))
    log_term = math.log((z + (1 + SQRT2) * big_b) / (z + (1 - SQRT2) * big_b))
    ln_phi = (b / b_mix * (z - 1.0) - math.log(z - big_b)
              - big_a / (2 * SQRT2 * big_b) * (2.0 * (a_ij @ y) / a_mix - b / b_mix) * log_term)
    return [float(v) for v in np.exp(ln_phi)]
