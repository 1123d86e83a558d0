"""RASPA3 (PyPI ``raspalib``) from Python: Widom Henry coefficients at the field's screening protocol.

Protocol (rigid framework): UFF framework atoms, TraPPE guests, Lorentz-Berthelot mixing, 12.8 A
cutoff, potentials shifted at the cutoff, no tail corrections, Ewald for charges, unit cell replicated
to n_i = ceil(2 cutoff / w_i) with w_i the perpendicular widths. raspalib 3.1.0 traps handled here: it
reads no files (everything is built from Python objects), its box angles are radians, it does not
replicate the cell or warn when it is too small, and results live on ``mc.systems`` (the driver's copy).

First piece of the oracle: Henry coefficients only; adaptive cycles, GCMC and the batch runner follow.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Literal

import numpy as np
from pymatgen.core import Element, Lattice

from .errors import DiscoveryError
from .forcefield import CO2, Guest, framework_lj
from .mof import MOF

CUTOFF_A = 12.8
GAS_CONSTANT = 8.314462618  # J / (mol K)
AVOGADRO = 6.02214076e23
NEUTRALITY_TOLERANCE_E = 1e-2

Charges = Literal["cif", "eqeq", "none"]


class OracleError(DiscoveryError):
    """A structure the oracle cannot simulate as asked (missing or non-neutral charges, ...)."""


@dataclass(frozen=True)
class HenryResult:
    """Widom Henry coefficient of one guest: ``kh`` in mol kg^-1 Pa^-1 with its 95 % half-width."""

    structure: str
    guest: str
    kh: float
    kh_ci95: float
    rosenbluth_weight: float
    temperature: float
    charges: str
    cycles: int
    seed: int
    unit_cells: tuple[int, int, int]
    cpu_s: float
    settings: dict

    def to_dict(self) -> dict:
        return asdict(self)


def replication(lattice: Lattice, cutoff: float = CUTOFF_A) -> tuple[int, int, int]:
    """Unit cells per direction so that every perpendicular width of the box is at least 2 x cutoff."""
    m = lattice.matrix
    widths = [lattice.volume / np.linalg.norm(np.cross(m[(i + 1) % 3], m[(i + 2) % 3])) for i in range(3)]
    return tuple(int(math.ceil(2.0 * cutoff / w - 1e-9)) for w in widths)  # type: ignore[return-value]


def framework_charges(mof: MOF, charges: Charges) -> np.ndarray:
    """The per-atom charges to simulate with; OracleError when they are missing or not neutral."""
    if charges == "none":
        return np.zeros(mof.n_atoms)
    if charges == "eqeq":
        from .charges import eqeq_charges

        return eqeq_charges(mof.structure, mof.id)
    if charges != "cif":
        raise OracleError(f"unknown charge model {charges!r}: use 'cif', 'eqeq' or 'none'")
    if mof.charges is None:
        raise OracleError(f"{mof.id}: the structure carries no charges; use charges='none'")
    total = float(mof.charges.sum())
    if abs(total) > NEUTRALITY_TOLERANCE_E:
        raise OracleError(f"{mof.id}: framework charges sum to {total:+.4f} e, not to zero")
    return mof.charges - total / mof.n_atoms  # spread the rounding residue so Ewald sees a neutral cell


def adaptive_henry(mof: MOF, guest: Guest = CO2, *, charges: Charges = "cif", target: float = 0.05,
                   first_cycles: int = 500, max_cycles: int = 5000, seed: int = 0, temperature: float = 298.0,
                   cutoff: float = CUTOFF_A) -> HenryResult:
    """Widom K_H with as many cycles as needed for a 95 % half-width within ``target`` (relative), or
    ``max_cycles``. A first run sizes the second (the half-width falls as 1/sqrt(cycles)); the two
    independent runs are combined, weighted by their cycles."""
    first = widom_henry(mof, guest, charges=charges, cycles=first_cycles, seed=seed, temperature=temperature,
                        cutoff=cutoff)
    rel = first.kh_ci95 / first.kh if first.kh > 0 else math.inf
    needed = min(max_cycles, math.ceil(first_cycles * (rel / target) ** 2 * 1.1))
    if rel <= target or needed <= first_cycles:
        return first
    more = widom_henry(mof, guest, charges=charges, cycles=needed - first_cycles, seed=seed + 1,
                       temperature=temperature, cutoff=cutoff)
    n1, n2 = first.cycles, more.cycles
    kh = (n1 * first.kh + n2 * more.kh) / (n1 + n2)
    ci = math.hypot(n1 * first.kh_ci95, n2 * more.kh_ci95) / (n1 + n2)
    w = (n1 * first.rosenbluth_weight + n2 * more.rosenbluth_weight) / (n1 + n2)
    return HenryResult(**{**first.to_dict(), "kh": kh, "kh_ci95": ci, "rosenbluth_weight": w, "cycles": n1 + n2,
                          "cpu_s": first.cpu_s + more.cpu_s, "unit_cells": first.unit_cells})


def widom_henry(mof: MOF, guest: Guest = CO2, *, charges: Charges = "cif", cycles: int = 2000, seed: int = 0,
                temperature: float = 298.0, cutoff: float = CUTOFF_A) -> HenryResult:
    """Henry coefficient K_H = <W> / (R T rho_framework) from Widom insertions (``cycles`` cycles)."""
    rl = _raspalib()

    q = framework_charges(mof, charges)
    elements = sorted({site.specie.symbol for site in mof.structure})
    force_field, guest_types = _force_field(rl, elements, guest, cutoff)
    cells = replication(mof.structure.lattice, cutoff)
    framework = _framework(rl, force_field, mof, elements, q, cells)
    component = rl.Component(force_field, guest.name, guest.critical_temperature, guest.critical_pressure,
                             guest.acentric_factor, _guest_atoms(rl, guest, guest_types),
                             particle_probabilities=rl.MCMoveProbabilities(widom_probability=1.0))
    system = rl.System(force_field, None, False, temperature, None, 0.0, framework, [component], [], [0], 5)
    t0 = time.process_time()
    mc = rl.MonteCarlo(cycles, 0, 0, 10 * cycles + 1, 10 * cycles + 1, 1000, 100, [system], seed, 5, False)
    mc.run()
    done = mc.systems[0]  # the driver's copy holds the results, not `system`
    w, w_ci = done.components[0].average_rosenbluth_weights.result()
    rho = done.framework_mass() * 1e-3 / (AVOGADRO * mof.structure.lattice.volume * 1e-30 * math.prod(cells))
    to_kh = 1.0 / (GAS_CONSTANT * temperature * rho)
    return HenryResult(structure=mof.id, guest=guest.name, kh=w * to_kh, kh_ci95=w_ci * to_kh, rosenbluth_weight=w,
                       temperature=temperature, charges=charges, cycles=cycles, seed=seed, unit_cells=cells,
                       cpu_s=time.process_time() - t0, settings=_settings(cutoff))


def _raspalib():
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="OpenCL library not found")  # CPU runs need no OpenCL
        import raspalib
    return raspalib


def _settings(cutoff: float) -> dict:
    return {"force_field": "UFF (openbabel-wheel UFF.prm) + TraPPE", "mixing": "Lorentz-Berthelot",
            "cutoff_A": cutoff, "shifted": True, "tail_corrections": False, "electrostatics": "Ewald",
            "raspalib": version("raspalib")}


def _force_field(rl, elements: list[str], guest: Guest, cutoff: float):
    """Pseudo-atoms: one per framework element (indices follow ``elements``), then the guest's sites."""
    pseudo, params, guest_types = [], [], {}
    for el in elements:
        lj = framework_lj(el)
        pseudo.append(rl.PseudoAtom(f"{el}_fw", True, _mass(el), 0.0, 0.0, Element(el).Z, True, ""))
        params.append(rl.VDWParameters(lj.epsilon, lj.sigma))
    for site in guest.sites:
        if site.name in guest_types:
            continue
        guest_types[site.name] = len(pseudo)
        z = Element(site.element).Z if site.element != "-" else 0
        pseudo.append(rl.PseudoAtom(site.name, False, _mass(site.element), site.charge, 0.0, z, True, ""))
        params.append(rl.VDWParameters(site.lj.epsilon, site.lj.sigma) if site.lj else rl.VDWParameters(0.0, 1.0))
    ff = rl.ForceField(pseudo, params, rl.ForceField.MixingRule.LORENTZ_BERTHELOT, cutoff, cutoff, cutoff,
                       True, False, True)  # shifted, no tail corrections, charges on
    return ff, guest_types


def _framework(rl, ff, mof: MOF, elements: list[str], q: np.ndarray, cells: tuple[int, int, int]):
    lat = mof.structure.lattice
    box = rl.SimulationBox(*lat.abc, *(math.radians(x) for x in lat.angles))  # radians: degrees give NaN
    atoms = [rl.Atom([float(x) for x in site.frac_coords], float(qi), 1.0, 0, elements.index(site.specie.symbol),
                     0, 0, 0) for site, qi in zip(mof.structure, q)]
    return rl.Framework(ff, mof.id, box, 1, atoms, list(cells))


def _guest_atoms(rl, guest: Guest, types: dict[str, int]) -> list:
    return [rl.Atom([0.0, 0.0, s.z], s.charge, 1.0, 0, types[s.name], 0, 0, 0) for s in guest.sites]


def _mass(element: str) -> float:
    return 0.0 if element == "-" else float(Element(element).atomic_mass)
