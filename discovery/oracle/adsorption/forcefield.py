"""Force-field parameters for the adsorption oracle: UFF for frameworks, TraPPE for CO2 and N2.

UFF Lennard-Jones parameters are read from the UFF parameter file that Open Babel ships (PyPI
``openbabel-wheel``; its values are those of RDKit's UFF implementation, Rappe et al., JACS 1992):
sigma = x_i / 2^(1/6) and epsilon = D_i, converted from kcal/mol to Kelvin. The file is read as data;
Open Babel itself is never imported.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from discovery.errors import DiscoveryError

KCAL_PER_MOL_IN_K = 503.2195  # 1 kcal/mol divided by the gas constant, in K
SIXTH_ROOT_OF_TWO = 2.0 ** (1.0 / 6.0)


class ForceFieldError(DiscoveryError):
    """A framework element without parameters, or a missing parameter source."""


@dataclass(frozen=True)
class LennardJones:
    """12-6 Lennard-Jones parameters: sigma in Angstrom, epsilon / k_B in Kelvin."""

    sigma: float
    epsilon: float


@dataclass(frozen=True)
class Site:
    """A rigid guest's interaction site: position along the molecular axis (A), LJ and charge (e)."""

    name: str
    element: str
    z: float
    lj: LennardJones | None
    charge: float


@dataclass(frozen=True)
class Guest:
    """A rigid, linear guest molecule (TraPPE)."""

    name: str
    sites: tuple[Site, ...]
    critical_temperature: float  # K, for the Peng-Robinson fugacity
    critical_pressure: float  # Pa
    acentric_factor: float


# TraPPE (Potoff & Siepmann, AIChE J. 2001): rigid linear CO2 (C=O 1.16 A) and N2 with a massless centre.
CO2 = Guest("CO2", (
    Site("O_co2", "O", -1.16, LennardJones(3.05, 79.0), -0.35),
    Site("C_co2", "C", 0.0, LennardJones(2.80, 27.0), 0.70),
    Site("O_co2", "O", 1.16, LennardJones(3.05, 79.0), -0.35),
), critical_temperature=304.1282, critical_pressure=7377300.0, acentric_factor=0.22394)
N2 = Guest("N2", (
    Site("N_n2", "N", -0.55, LennardJones(3.31, 36.0), -0.482),
    Site("N_com", "-", 0.0, None, 0.964),
    Site("N_n2", "N", 0.55, LennardJones(3.31, 36.0), -0.482),
), critical_temperature=126.192, critical_pressure=3395800.0, acentric_factor=0.0372)


def uff_parameter_file() -> Path:
    spec = importlib.util.find_spec("openbabel")
    if spec is None or not spec.submodule_search_locations:
        raise ForceFieldError("UFF parameters come from PyPI package openbabel-wheel, which is not installed")
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("share/openbabel/*/UFF.prm"))
    if not files:
        raise ForceFieldError("openbabel-wheel is installed but ships no UFF.prm")
    return files[-1]


@lru_cache(maxsize=1)
def uff() -> dict[str, LennardJones]:
    """UFF Lennard-Jones parameters per element (all UFF types of an element share x_i and D_i)."""
    table: dict[str, LennardJones] = {}
    for line in uff_parameter_file().read_text().splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[0] != "param":
            continue
        element = re.match(r"[A-Z][a-z]?", fields[1]).group(0)
        x, d = float(fields[4]), float(fields[5])
        table.setdefault(element, LennardJones(round(x / SIXTH_ROOT_OF_TWO, 5), round(d * KCAL_PER_MOL_IN_K, 4)))
    return table


def framework_lj(element: str) -> LennardJones:
    """UFF parameters of a framework element; ForceFieldError naming it when UFF has none."""
    params = uff().get(element)
    if params is None:
        raise ForceFieldError(f"no UFF Lennard-Jones parameters for element {element!r}")
    return params
