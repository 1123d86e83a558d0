"""Validity checks for a MOF, each named in the report.

Cheap checks on the atoms: ``cell`` (non-degenerate), ``overlap`` (no pair closer than a fraction of
the sum of covalent radii), ``coordination`` (sane neighbour counts per element), ``isolated`` (no
lone atoms or molecules), ``connectivity`` (every framework component periodic in three dimensions).
With geometry (Zeo++): ``pore_limiting_diameter`` (>= 2.4 A, MOFDiff's criterion) and
``co2_accessible`` (a channel a CO2-sized probe can travel through).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from discovery.structures.bonds import BOND_TOLERANCE, PeriodicGraph, bond_graph
from discovery.structures.elements import is_metal
from discovery.errors import GeometryError
from discovery.oracle.geometry.zeo import (CO2_PROBE_RADIUS, Geometry, GeometrySettings, PoreChannels, compute_channels,
                                          compute_geometry)

OVERLAP_FACTOR = 0.7  # below 0.7 (r_i + r_j): closer than even a triple bond (C#C is 0.79)
MIN_PLD = 2.4

# Allowed neighbour counts for linker elements: (min all, max all, max non-metal). Oxygen and halides
# may bridge several metals (mu4-O in Zn4O, mu3-OH in Zr6, mu4-Cl) but form at most 2 or 1 covalent bonds.
COORDINATION = {"H": (1, 1, 1), "C": (2, 4, 4), "N": (1, 4, 4), "O": (1, 6, 2), "F": (1, 6, 1),
                "Cl": (1, 6, 1), "Br": (1, 6, 1), "I": (1, 6, 1), "S": (1, 6, 6), "P": (1, 6, 6),
                "B": (2, 4, 4), "Si": (2, 6, 6)}
MAX_METAL_LIGANDS = 12


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class ValidityReport:
    checks: tuple[CheckResult, ...]

    @property
    def valid(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    @property
    def reason(self) -> str:
        """The first failed check as ``name: message`` (empty when valid)."""
        bad = [c for c in self.checks if not c.passed]
        return f"{bad[0].name}: {bad[0].message}" if bad else ""

    def to_dict(self) -> dict:
        return {"valid": self.valid, "checks": {c.name: {"passed": c.passed, "message": c.message} for c in self.checks}}


def check_cell(structure: Structure) -> CheckResult:
    lat = structure.lattice
    if not np.all(np.isfinite(lat.matrix)) or lat.volume <= 1.0:
        return CheckResult("cell", False, f"degenerate cell (volume {lat.volume:.3g} A^3)")
    if min(lat.abc) < 2.0:
        return CheckResult("cell", False, f"cell edge of {min(lat.abc):.2f} A is shorter than 2 A")
    if not all(20.0 <= a <= 160.0 for a in lat.angles):
        return CheckResult("cell", False, f"cell angles {tuple(round(a, 1) for a in lat.angles)} outside 20-160 deg")
    flatness = lat.volume / float(np.prod(lat.abc))
    if flatness < 0.1:
        return CheckResult("cell", False, f"nearly flat cell (V / abc = {flatness:.3f})")
    return CheckResult("cell", True)


def check_overlap(structure: Structure, graph: PeriodicGraph, factor: float = OVERLAP_FACTOR) -> CheckResult:
    close = graph.ratio < factor
    if not close.any():
        return CheckResult("overlap", True)
    k = int(np.argmin(graph.ratio))
    i, j = graph.src[k], graph.dst[k]
    pair = f"{structure[i].specie}{i}-{structure[j].specie}{j}"
    return CheckResult("overlap", False, f"{close.sum() // 2} atom pair(s) overlap; closest {pair} at "
                                         f"{graph.distance[k]:.2f} A ({graph.ratio[k]:.2f} x covalent radii sum)")


def check_coordination(structure: Structure, graph: PeriodicGraph) -> CheckResult:
    symbols = [site.specie.symbol for site in structure]
    degree = graph.degree()
    nonmetal_degree = np.bincount(graph.src, weights=[not is_metal(symbols[d]) for d in graph.dst],
                                  minlength=len(symbols))
    bad: Counter = Counter()
    for i, el in enumerate(symbols):
        n, covalent = int(degree[i]), int(nonmetal_degree[i])
        if is_metal(el):
            # A metal is held by linker atoms; metal-metal contacts neither hold it nor crowd it.
            if not 1 <= covalent <= MAX_METAL_LIGANDS:
                bad[f"{el} with {covalent} non-metal neighbour(s) (allowed 1-{MAX_METAL_LIGANDS})"] += 1
            continue
        lo, hi, hi_covalent = COORDINATION.get(el, (1, 6, 6))
        if not lo <= n <= hi:
            bad[f"{el} with {n} neighbour(s) (allowed {lo}-{hi})"] += 1
        elif covalent > hi_covalent:
            bad[f"{el} with {covalent} non-metal neighbour(s) (allowed {hi_covalent})"] += 1
    if not bad:
        return CheckResult("coordination", True)
    return CheckResult("coordination", False, "; ".join(f"{k}: {v} atom(s)" for k, v in bad.most_common(3)))


def check_isolated(structure: Structure, components: list[tuple[np.ndarray, int]]) -> CheckResult:
    molecules = [m for m, dim in components if dim == 0]
    if not molecules:
        return CheckResult("isolated", True)
    lone = sum(1 for m in molecules if len(m) == 1)
    first = min(molecules, key=len)
    formula = Counter(structure[int(i)].specie.symbol for i in first)
    desc = "".join(f"{el}{n if n > 1 else ''}" for el, n in sorted(formula.items()))
    return CheckResult("isolated", False, f"{lone} isolated atom(s) and {len(molecules) - lone} molecule(s) "
                                          f"not bonded to the framework (e.g. {desc})")


def check_connectivity(components: list[tuple[np.ndarray, int]], min_dimensionality: int = 3) -> CheckResult:
    dims = [dim for _, dim in components if dim > 0]
    if not dims:
        return CheckResult("connectivity", False, "no periodic framework: every component is a finite molecule")
    if min(dims) < min_dimensionality:
        return CheckResult("connectivity", False, f"framework component(s) periodic in only {min(dims)} "
                                                  f"dimension(s); {min_dimensionality} required")
    return CheckResult("connectivity", True, f"{len(dims)} interpenetrating net(s)" if len(dims) > 1 else "")


def check_pores(geometry: Geometry, min_pld: float = MIN_PLD) -> list[CheckResult]:
    pld_ok = geometry.pld >= min_pld
    pld = CheckResult("pore_limiting_diameter", pld_ok, "" if pld_ok else f"PLD {geometry.pld:.2f} A < {min_pld} A")
    access_ok = geometry.n_channels > 0 and geometry.probe_accessible_fraction > 0
    probe = geometry.settings.get("probe_radius")
    access = CheckResult("co2_accessible", access_ok, "" if access_ok else
                         f"no channel a CO2-sized probe (radius {probe} A) can pass")
    return [pld, access]


def check_structure(structure: Structure, geometry: Geometry | None = None, *,
                    bond_tolerance: float = BOND_TOLERANCE, min_dimensionality: int = 3) -> ValidityReport:
    """Run the atom checks (and the pore checks when ``geometry`` is given)."""
    cell = check_cell(structure)
    if not cell.passed:
        return ValidityReport((cell,))  # no neighbour search on a broken cell
    graph = bond_graph(structure, bond_tolerance)
    components = graph.components()
    checks = [cell, check_overlap(structure, graph), check_coordination(structure, graph),
              check_isolated(structure, components), check_connectivity(components, min_dimensionality)]
    if geometry is not None:
        checks += check_pores(geometry)
    return ValidityReport(tuple(checks))


def check_channels(channels: PoreChannels, min_pld: float = MIN_PLD,
                   probe_radius: float = CO2_PROBE_RADIUS) -> list[CheckResult]:
    """``check_pores``' two checks from Zeo++'s channel analysis alone (``compute_channels``)."""
    pld_ok = channels.percolates(min_pld / 2)
    access_ok = channels.percolates(probe_radius)
    return [CheckResult("pore_limiting_diameter", pld_ok, "" if pld_ok else f"PLD < {min_pld} A: no channel a "
                                                                            f"sphere of that diameter passes"),
            CheckResult("co2_accessible", access_ok, "" if access_ok else
                        f"no channel a CO2-sized probe (radius {probe_radius} A) can pass")]


def check_mof(structure: Structure, *, with_geometry: bool = True, settings=None, name: str = "structure",
              descriptors: bool = True) -> tuple[ValidityReport, Geometry | None]:
    """All checks, Zeo++ included unless ``with_geometry=False``; a Zeo++ failure is a failed check.
    ``descriptors=False``: the pore checks from Zeo++'s channel analysis alone, about half the cost, and no
    Geometry (pore sizes, areas, volumes) is returned."""
    report = check_structure(structure)
    if not with_geometry or not report.valid:
        return report, None
    settings = settings or GeometrySettings()
    try:
        if not descriptors:
            radii = (MIN_PLD / 2, settings.probe_radius)
            pores = compute_channels(structure, radii, settings.timeout_s, name=name)
            return ValidityReport(report.checks + tuple(check_channels(pores, MIN_PLD, radii[1]))), None
        geometry = compute_geometry(structure, settings, name=name)
    except GeometryError as exc:
        return ValidityReport(report.checks + (CheckResult("pore_geometry", False, str(exc)),)), None
    return ValidityReport(report.checks + tuple(check_pores(geometry))), geometry
