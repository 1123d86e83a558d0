"""RASPA3 (PyPI ``raspalib``) from Python: the field's screening protocol for CO2 and N2 adsorption.

Protocol (rigid framework): UFF framework atoms, TraPPE guests, Lorentz-Berthelot mixing, 12.8 A
cutoff, potentials shifted at the cutoff, no tail corrections, Ewald for charges, a periodic box whose
perpendicular widths are all at least twice the cutoff. raspalib 3.1.0 traps handled here: it reads no
files (everything is built from Python objects), its box angles are radians, it does not replicate the
cell or warn when it is too small, results live on ``mc.systems`` (the driver's copy), and mixtures take
no mole fractions: each component gets the partial pressure P / n_components unless its fugacity
coefficient says otherwise, so a mixture passes phi_i * y_i * n_components (measured: a 15:85 CO2/N2
mixture at 1 bar with coefficients 0.15 and 0.85 loaded half of K_H * 0.15 bar).

Runs: Widom insertion (Henry coefficients), a one-molecule NVT run (heat of adsorption at infinite
dilution) and GCMC (uptakes of pure gases and mixtures). Energies come back from raspalib in Kelvin
(checked: the one-molecule <U> agrees with the van 't Hoff slope of two Widom runs). The box is the
smallest supercell that respects the minimum image (``discovery.oracle.box``, shared with the MD oracle); energies
do not depend on that choice, cost does.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import version
from typing import Literal, Sequence

import numpy as np
from pymatgen.core import Element, Lattice

from discovery.structures import supercell
from discovery.oracle.box import CUTOFF_A, Box, build_box, lammps_cell
from discovery.oracle.charges import eqeq_charges, neutral_charges
from discovery.oracle.adsorption.adaptive import pool, relative, run_until_target
from discovery.oracle.adsorption.eos import fugacity_coefficients
from discovery.errors import DiscoveryError
from discovery.oracle.adsorption.forcefield import CO2, Guest, framework_lj
from discovery.structures.mof import MOF

GAS_CONSTANT = 8.314462618  # J / (mol K)
AVOGADRO = 6.02214076e23

Charges = Literal["auto", "cif", "eqeq", "none"]
# raspalib's internal energy unit, 10 J/mol, in K: what ``System.compute_total_energies`` returns (measured: its
# framework-molecule Lennard-Jones times this equals direct summation to 1e-5; Widom and NVT averages come in K)
RASPA_ENERGY_UNIT_K = 10.0 / GAS_CONSTANT


class OracleError(DiscoveryError):
    """A structure the oracle cannot simulate as asked (missing or non-neutral charges, ...)."""


@dataclass(frozen=True)
class HenryResult:
    """Widom Henry coefficient of one guest: ``kh`` in mol kg^-1 Pa^-1 with its 95 % half-width.

    ``target``: the relative 95 % half-width asked for (None: a run of fixed length); ``converged``: whether
    ``kh_ci95 / kh`` met it (False: the cycle cap stopped the runs first; ``kh_ci95`` is the interval reached);
    ``runs``: the independent runs pooled (seeds ``seed``, ``seed + 1``, ...)."""

    structure: str
    guest: str
    kh: float
    kh_ci95: float
    rosenbluth_weight: float
    temperature: float
    charges: str
    cycles: int
    seed: int
    box_copies: int
    cpu_s: float
    settings: dict
    converged: bool = True
    target: float | None = None
    runs: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class HeatResult:
    """Heat of adsorption at infinite dilution, Q_st = R (T - <U>), from a one-molecule NVT run."""

    guest: str
    qst_kj_mol: float
    ci95: float
    energy_K: float
    cycles: int
    cpu_s: float


@dataclass(frozen=True)
class UptakeResult:
    """GCMC absolute uptakes (mol/kg) with 95 % half-widths, per guest. ``target``, ``converged`` and ``runs``
    as in ``HenryResult``, for the first guest's uptake (the one an adaptive run is sized for)."""

    pressure_pa: float
    temperature: float
    mole_fractions: dict[str, float]
    uptake: dict[str, float]
    ci95: dict[str, float]
    cycles: int
    init_cycles: int
    cpu_s: float
    fugacity_coefficients: dict[str, float] = field(default_factory=dict)
    converged: bool = True
    target: float | None = None
    runs: int = 1

    def relative_ci(self, guest: str) -> float:
        return self.ci95[guest] / self.uptake[guest] if self.uptake[guest] > 0 else math.inf


def replication(lattice: Lattice, cutoff: float = CUTOFF_A) -> tuple[int, int, int]:
    """Unit cells per direction so that every perpendicular width of the box is at least 2 x cutoff."""
    return supercell.replication(lattice, cutoff)


def framework_charges(mof: MOF, charges: Charges) -> np.ndarray:
    """The per-atom charges to simulate with, through ``charges.neutral_charges`` (a rounding residue is
    spread so Ewald sees a neutral cell); OracleError when they are missing or not neutral."""
    if charges == "auto":  # the structure's own charges when it carries them, else EQeq
        charges = "cif" if mof.charges is not None else "eqeq"
    if charges == "none":
        q = np.zeros(mof.n_atoms)
    elif charges == "eqeq":
        q = eqeq_charges(mof.structure, mof.id)
    elif charges != "cif":
        raise OracleError(f"unknown charge model {charges!r}: use 'auto', 'cif', 'eqeq' or 'none'")
    elif mof.charges is None:
        raise OracleError(f"{mof.id}: the structure carries no charges; use charges='none'")
    else:
        q = mof.charges
    return neutral_charges(mof, q, error=OracleError).charges


def simulation_box(mof: MOF, charges: Charges | np.ndarray, cutoff: float = CUTOFF_A,
                   pockets: Sequence = (), skip: tuple[str, ...] = (),
                   findings: dict[str, str] | None = None) -> Box:
    """The smallest valid supercell of ``mof`` with its charges (and blocked pockets, if given).

    ``pockets`` are ``discovery.oracle.geometry.pockets.Pocket``s (``inaccessible_pockets``) or (fractional centre in the
    unit cell, radius A) pairs; every periodic image inside the box is blocked. Elements and charges are
    checked (``charges.neutral_charges``: ForceFieldError, OracleError) before any simulation.
    """
    if isinstance(charges, str):
        q = framework_charges(mof, charges)
    else:
        q = neutral_charges(mof, charges, error=OracleError).charges
    _check_atoms(mof, skip, findings)
    return build_box(mof, q, cutoff, pockets)


def _check_atoms(mof: MOF, skip: tuple[str, ...] = (), findings: dict[str, str] | None = None) -> None:
    """OracleError for a degenerate cell or overlapping atoms: RASPA would simulate them without a word.
    ``skip`` ("overlap"): simulate a structure with overlapping atoms anyway, on request (a curated database's
    CIF as published); the finding goes to ``findings``."""
    from discovery.structures.bonds import bond_graph
    from discovery.structures.validity import check_cell, check_overlap

    cell = check_cell(mof.structure)
    if not cell.passed:
        raise OracleError(f"{mof.id}: {cell.name}: {cell.message}")
    found = check_overlap(mof.structure, bond_graph(mof.structure))
    if found.passed:
        return
    if "overlap" not in skip:
        raise OracleError(f"{mof.id}: {found.name}: {found.message} (`--skip-check overlap` simulates it anyway)")
    if findings is not None:
        findings["overlap"] = found.message


def adaptive_henry(mof: MOF, guest: Guest = CO2, *, charges: Charges = "cif", target: float = 0.05,
                   first_cycles: int = 500, max_cycles: int = 5000, seed: int = 0, temperature: float = 298.0,
                   cutoff: float = CUTOFF_A, box: Box | None = None) -> HenryResult:
    """Widom K_H with as many cycles as needed for a 95 % half-width within ``target`` (relative), or
    ``max_cycles``: independent runs (seeds ``seed``, ``seed + 1``, ...) are pooled, weighted by their cycles,
    after each one, and more are run until the pooled interval meets the target or the cap is reached
    (``adaptive.run_until_target``). The result says which (``converged``)."""
    box = box or simulation_box(mof, charges, cutoff)
    kwargs = dict(charges=charges, temperature=temperature, cutoff=cutoff, box=box)
    done = run_until_target(lambda cycles, s: widom_henry(mof, guest, cycles=cycles, seed=s, **kwargs),
                            lambda runs: relative(*_pooled_kh(runs)), target=target, first_cycles=first_cycles,
                            max_cycles=max_cycles, seed=seed)
    (kh, ci), (w, _) = _pooled_kh(done.runs), pool([(r.cycles, r.rosenbluth_weight, 0.0) for r in done.runs])
    return replace(done.runs[0], kh=kh, kh_ci95=ci, rosenbluth_weight=w, cycles=sum(r.cycles for r in done.runs),
                   cpu_s=sum(r.cpu_s for r in done.runs), converged=done.converged, target=target,
                   runs=len(done.runs))


def _pooled_kh(runs: list[HenryResult]) -> tuple[float, float]:
    return pool([(r.cycles, r.kh, r.kh_ci95) for r in runs])


def widom_henry(mof: MOF, guest: Guest = CO2, *, charges: Charges = "cif", cycles: int = 2000, seed: int = 0,
                temperature: float = 298.0, cutoff: float = CUTOFF_A, box: Box | None = None) -> HenryResult:
    """Henry coefficient K_H = <W> / (R T rho_framework) from Widom insertions (``cycles`` cycles)."""
    rl = _raspalib()
    box = box or simulation_box(mof, charges, cutoff)
    t0 = time.process_time()
    done = _run(rl, box, [guest], cutoff, temperature, None, "widom", cycles, 0, seed)
    w, w_ci = done.components[0].average_rosenbluth_weights.result()
    rho = done.framework_mass() * 1e-3 / (AVOGADRO * box.structure.lattice.volume * 1e-30)  # kg m^-3
    to_kh = 1.0 / (GAS_CONSTANT * temperature * rho)
    return HenryResult(structure=mof.id, guest=guest.name, kh=w * to_kh, kh_ci95=w_ci * to_kh, rosenbluth_weight=w,
                       temperature=temperature, charges=charges if isinstance(charges, str) else "given",
                       cycles=cycles, seed=seed, box_copies=box.copies, cpu_s=time.process_time() - t0,
                       settings=protocol(cutoff))


def heat_of_adsorption(mof: MOF, guest: Guest = CO2, *, charges: Charges = "cif", cycles: int = 1000,
                       init_cycles: int = 100, seed: int = 0, temperature: float = 298.0, cutoff: float = CUTOFF_A,
                       box: Box | None = None) -> HeatResult:
    """Q_st at infinite dilution from one guest sampled by translation, rotation and reinsertion moves:
    Q_st = R (T - <U_host-guest>), the guest being rigid (no intramolecular energy)."""
    rl = _raspalib()
    box = box or simulation_box(mof, charges, cutoff)
    t0 = time.process_time()
    done = _run(rl, box, [guest], cutoff, temperature, None, "nvt", cycles, init_cycles, seed)
    mean, ci = done.average_energies.result()
    u, u_ci = mean.total_energy.energy, ci.total_energy.energy  # Kelvin
    to_kj = GAS_CONSTANT / 1000.0
    return HeatResult(guest=guest.name, qst_kj_mol=to_kj * (temperature - u), ci95=to_kj * u_ci, energy_K=u,
                      cycles=cycles, cpu_s=time.process_time() - t0)


def gcmc_uptake(mof: MOF, guests: Sequence[Guest], mole_fractions: Sequence[float], *, pressure_pa: float,
                temperature: float = 298.0, charges: Charges = "cif", cycles: int = 1000, init_cycles: int = 500,
                seed: int = 0, cutoff: float = CUTOFF_A, box: Box | None = None) -> UptakeResult:
    """Absolute uptakes of a gas (pure or mixture) at ``pressure_pa`` from grand-canonical Monte Carlo;
    fugacities from the Peng-Robinson equation of state of the mixture."""
    if len(guests) != len(mole_fractions) or abs(sum(mole_fractions) - 1.0) > 1e-9:
        raise OracleError(f"mole fractions {list(mole_fractions)} must match the guests and sum to 1")
    rl = _raspalib()
    box = box or simulation_box(mof, charges, cutoff)
    phi = fugacity_coefficients(guests, mole_fractions, temperature, pressure_pa)
    # raspalib gives each component P / n unless told otherwise: phi_i * y_i * n makes it phi_i * y_i * P
    coefficients = [p * y * len(guests) for p, y in zip(phi, mole_fractions)]
    t0 = time.process_time()
    done = _run(rl, box, guests, cutoff, temperature, pressure_pa, "gcmc", cycles, init_cycles, seed, coefficients)
    mean, ci = done.average_loadings.result()
    per_kg = 1000.0 / done.framework_mass()  # molecules per box -> mol per kg
    names = [g.name for g in guests]
    return UptakeResult(pressure_pa=pressure_pa, temperature=temperature,
                        mole_fractions=dict(zip(names, mole_fractions)),
                        uptake={n: mean.number_of_molecules[i] * per_kg for i, n in enumerate(names)},
                        ci95={n: ci.number_of_molecules[i] * per_kg for i, n in enumerate(names)},
                        cycles=cycles, init_cycles=init_cycles, cpu_s=time.process_time() - t0,
                        fugacity_coefficients=dict(zip(names, phi)))


def adaptive_uptake(mof: MOF, guests: Sequence[Guest], mole_fractions: Sequence[float], *, pressure_pa: float,
                    target: float = 0.05, first_cycles: int = 1000, max_cycles: int = 5000, seed: int = 0,
                    **kwargs) -> UptakeResult:
    """GCMC until the first guest's uptake has a 95 % half-width within ``target`` (relative) or
    ``max_cycles`` production cycles, as ``adaptive_henry``: independent runs, pooled by their cycles after
    each one; ``converged`` says whether the target was met."""
    done = run_until_target(lambda cycles, s: gcmc_uptake(mof, guests, mole_fractions, pressure_pa=pressure_pa,
                                                          cycles=cycles, seed=s, **kwargs),
                            lambda runs: relative(*_pooled_uptake(runs, guests[0].name)), target=target,
                            first_cycles=first_cycles, max_cycles=max_cycles, seed=seed)
    pooled = {n: _pooled_uptake(done.runs, n) for n in done.runs[0].uptake}
    return replace(done.runs[0], uptake={n: v[0] for n, v in pooled.items()},
                   ci95={n: v[1] for n, v in pooled.items()}, cycles=sum(r.cycles for r in done.runs),
                   cpu_s=sum(r.cpu_s for r in done.runs), converged=done.converged, target=target,
                   runs=len(done.runs))


def _pooled_uptake(runs: list[UptakeResult], guest: str) -> tuple[float, float]:
    return pool([(r.cycles, r.uptake[guest], r.ci95[guest]) for r in runs])


def protocol(cutoff: float = CUTOFF_A) -> dict:
    """The conventions every adsorption result is computed with (recorded with each result)."""
    return {"force_field": "UFF (openbabel-wheel UFF.prm) + TraPPE", "mixing": "Lorentz-Berthelot",
            "cutoff_A": cutoff, "shifted": True, "tail_corrections": False, "electrostatics": "Ewald",
            "box": "smallest supercell with perpendicular widths >= 2 x cutoff", "rigid_framework": True,
            "equation_of_state": "Peng-Robinson", "raspalib": version("raspalib")}


def _run(rl, box: Box, guests: Sequence[Guest], cutoff: float, temperature: float, pressure: float | None,
         mode: str, cycles: int, init_cycles: int, seed: int, coefficients: Sequence[float] | None = None):
    """Build the raspalib system for ``mode`` ('widom', 'nvt' with one guest, 'gcmc'), run it, and return
    the driver's copy of the system (where the results are)."""
    elements = sorted({site.specie.symbol for site in box.structure})
    force_field, types = _force_field(rl, elements, guests, cutoff)
    framework = _framework(rl, force_field, box, elements)
    moves = {"widom": dict(widom_probability=1.0),
             "nvt": dict(translation_probability=1.0, rotation_probability=1.0, reinsertion_cbmc_probability=1.0),
             "gcmc": dict(translation_probability=0.5, rotation_probability=0.5,
                          swap_cbmc_probability=1.0)}[mode]
    # No identity-change moves in mixtures: with raspalib 3.1.0 they abort the process (a C++ exception).
    components = [rl.Component(force_field, g.name, g.critical_temperature, g.critical_pressure, g.acentric_factor,
                               _guest_atoms(rl, g, types), particle_probabilities=rl.MCMoveProbabilities(**moves),
                               fugacity_coefficient=None if coefficients is None else coefficients[i],
                               blocking_pockets=[list(p) for p in box.blocking])
                  for i, g in enumerate(guests)]
    initial = [1 if mode == "nvt" else 0] * len(guests)
    system = rl.System(force_field, None, False, temperature, pressure, 0.0, framework, components, [], initial, 5)
    never = 10 * (cycles + init_cycles) + 1  # no printing or restart files
    mc = rl.MonteCarlo(cycles, init_cycles, 0, never, never, 1000, 100, [system], seed, 5, False)
    mc.run()
    return mc.systems[0]  # the driver's copy holds the results, not `system`


class MoleculeEnergies:
    """RASPA3's own energy (K) of one rigid ``guest`` molecule in ``box`` at given site positions: the
    framework-molecule Lennard-Jones and Coulomb (Ewald) energies raspalib computes for a system that holds
    that one molecule (``System.compute_total_energies``).

    This is the energy function RASPA3's Widom move samples, evaluated at configurations chosen elsewhere:
    ``exact.grid_check(..., energies=MoleculeEnergies(box, guest))`` puts the grid engine's K_H against
    RASPA3's energies on the same insertions, free of both engines' sampling noise. About 5 ms per
    configuration in a 1,150-atom box."""

    def __init__(self, box: Box, guest: Guest, cutoff: float = CUTOFF_A) -> None:
        self.rl, self.guest = _raspalib(), guest
        elements = sorted({site.specie.symbol for site in box.structure})
        self.force_field, self.types = _force_field(self.rl, elements, [guest], cutoff)
        self.framework = _framework(self.rl, self.force_field, box, elements)
        # raspalib builds its box from lengths and angles: a along x, b in the xy plane (LAMMPS's frame);
        # positions get there through the box's fractional coordinates
        lattice = box.structure.lattice
        self.to_raspa = np.linalg.inv(lattice.matrix) @ lammps_cell(lattice)

    def __call__(self, sites: np.ndarray) -> np.ndarray:
        """``sites``: (n, guest sites, 3) Cartesian positions in the box's frame -> the n energies (K)."""
        sites = np.asarray(sites, dtype=float)
        if sites.ndim != 3 or sites.shape[1:] != (len(self.guest.sites), 3):
            raise DiscoveryError(f"{self.guest.name}: positions must be (n, {len(self.guest.sites)}, 3), got "
                                 f"{sites.shape}")
        g, out = self.guest, np.empty(len(sites))
        for i, positions in enumerate(sites @ self.to_raspa):
            component = self.rl.Component(self.force_field, g.name, g.critical_temperature, g.critical_pressure,
                                          g.acentric_factor, _guest_atoms(self.rl, g, self.types),
                                          particle_probabilities=self.rl.MCMoveProbabilities(widom_probability=1.0))
            system = self.rl.System(self.force_field, None, False, 298.0, None, 0.0, self.framework, [component],
                                    [positions.tolist()], [0], 5)  # the molecule where given, none inserted
            energy = system.compute_total_energies()
            out[i] = (energy.framework_molecule_vdw + energy.coulomb_energy()) * RASPA_ENERGY_UNIT_K
        return out


def _raspalib():
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="OpenCL library not found")  # CPU runs need no OpenCL
        import raspalib
    return raspalib


def _force_field(rl, elements: list[str], guests: Sequence[Guest], cutoff: float):
    """Pseudo-atoms: one per framework element (indices follow ``elements``), then the guests' sites."""
    pseudo, params, guest_types = [], [], {}
    for el in elements:
        lj = framework_lj(el)
        pseudo.append(rl.PseudoAtom(f"{el}_fw", True, _mass(el), 0.0, 0.0, Element(el).Z, True, ""))
        params.append(rl.VDWParameters(lj.epsilon, lj.sigma))
    for site in (s for g in guests for s in g.sites):
        if site.name in guest_types:
            continue
        guest_types[site.name] = len(pseudo)
        z = Element(site.element).Z if site.element != "-" else 0
        pseudo.append(rl.PseudoAtom(site.name, False, _mass(site.element), site.charge, 0.0, z, True, ""))
        params.append(rl.VDWParameters(site.lj.epsilon, site.lj.sigma) if site.lj else rl.VDWParameters(0.0, 1.0))
    ff = rl.ForceField(pseudo, params, rl.ForceField.MixingRule.LORENTZ_BERTHELOT, cutoff, cutoff, cutoff,
                       True, False, True)  # shifted, no tail corrections, charges on
    return ff, guest_types


def _framework(rl, ff, box: Box, elements: list[str]):
    lat = box.structure.lattice
    sim_box = rl.SimulationBox(*lat.abc, *(math.radians(x) for x in lat.angles))  # radians: degrees give NaN
    atoms = [rl.Atom([float(x) for x in site.frac_coords], float(qi), 1.0, 0, elements.index(site.specie.symbol),
                     0, 0, 0) for site, qi in zip(box.structure, box.charges)]
    return rl.Framework(ff, "framework", sim_box, 1, atoms, [1, 1, 1])


def _guest_atoms(rl, guest: Guest, types: dict[str, int]) -> list:
    return [rl.Atom([0.0, 0.0, s.z], s.charge, 1.0, 0, types[s.name], 0, 0, 0) for s in guest.sites]


def _mass(element: str) -> float:
    return 0.0 if element == "-" else float(Element(element).atomic_mass)
