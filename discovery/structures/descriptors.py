"""Probe-energy descriptors: a spherical CO2-like probe's Lennard-Jones energy on a grid over the cell.

Adsorption at low loading is decided by the strongest binding sites, which pore diameters and surface areas
do not see. The probe's Boltzmann average over the grid, divided by the framework density, is a Henry
coefficient of a spherical molecule; with a histogram of the grid energies it is the kind of energy
descriptor that predicts simulated uptakes far better than geometry alone (Bucior et al., Mol. Syst. Des.
Eng. 2019). It costs ~0.1-1 CPU-s per MOF (numpy, pymatgen's periodic neighbour search), so it belongs
with the cheap geometry level, and the surrogate takes it as input.

Conventions: UFF framework Lennard-Jones (the oracle's), a one-site CO2 probe (sigma 3.941 A, epsilon/k
195.2 K; Bird, Stewart and Lightfoot), Lorentz-Berthelot mixing, 10 A cutoff, no electrostatics, grid
spacing ~0.8 A (coarsened for large cells so that no cell has more than ``max_points`` points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure
from pymatgen.optimization.neighbors import find_points_in_spheres

from discovery.oracle.adsorption.forcefield import LennardJones, framework_lj

PROBE = LennardJones(sigma=3.941, epsilon=195.2)
GAS_CONSTANT = 8.314462618
ENERGY_BINS_K = (-4000.0, -3000.0, -2500.0, -2000.0, -1500.0, -1000.0)  # lower edges: fraction of grid below


PROBE_KEYS = ("log10_kh_probe", "min_energy_K", *(f"frac_below_{int(-e)}K" for e in ENERGY_BINS_K))


@dataclass(frozen=True)
class ProbeDescriptors:
    log10_kh_probe: float  # log10 of the probe's Henry coefficient, mol/kg/Pa
    min_energy_K: float
    fractions_below: tuple[float, ...]  # fraction of grid points with energy below each ENERGY_BINS_K edge
    n_points: int

    def to_dict(self) -> dict:
        """Flat, keyed by PROBE_KEYS (plus ``n_points``)."""
        return dict(zip(PROBE_KEYS, (self.log10_kh_probe, self.min_energy_K, *self.fractions_below)),
                    n_points=self.n_points)


def probe_vector(d: dict) -> list[float]:
    """The descriptors as model inputs of order one (KeyError/TypeError/ValueError on a missing or bad one)."""
    fractions = [float(d[k]) for k in PROBE_KEYS[2:]]
    return [float(d["log10_kh_probe"]) + 5.0, float(d["min_energy_K"]) / 1000.0, *(math.sqrt(f) for f in fractions)]


def grid_energies(structure: Structure, probe: LennardJones = PROBE, spacing: float = 0.8, cutoff: float = 10.0,
                  max_points: int = 12000) -> np.ndarray:
    """The probe's energy (K) at each point of a uniform grid over the cell."""
    abc = np.array(structure.lattice.abc)
    n = np.maximum(1, np.ceil(abc / spacing)).astype(int)
    if n.prod() > max_points:
        n = np.maximum(1, np.floor(n * (max_points / n.prod()) ** (1 / 3))).astype(int)
    axes = [(np.arange(k) + 0.5) / k for k in n]
    frac = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    points = frac @ structure.lattice.matrix
    atoms = np.ascontiguousarray(structure.cart_coords, dtype=float)
    lattice = np.ascontiguousarray(structure.lattice.matrix, dtype=float)
    centre, neighbour, _, dist = find_points_in_spheres(atoms, np.ascontiguousarray(points), cutoff,
                                                        np.array([1, 1, 1], dtype=np.int64), lattice, tol=1e-8)
    lj = {el: framework_lj(el) for el in {s.specie.symbol for s in structure}}
    symbols = [s.specie.symbol for s in structure]
    sigma = np.array([(lj[s].sigma + probe.sigma) / 2 for s in symbols])[neighbour]
    eps = np.sqrt(np.array([lj[s].epsilon for s in symbols]) * probe.epsilon)[neighbour]
    x = (sigma / np.maximum(dist, 0.5 * sigma)) ** 6  # capped inside the atom: the point is blocked anyway
    energy = np.zeros(len(points))
    np.add.at(energy, centre, 4.0 * eps * (x * x - x))
    return energy


def probe_descriptors(structure: Structure, temperature: float = 298.0, **grid) -> ProbeDescriptors:
    u = grid_energies(structure, **grid)
    boltzmann = np.exp(-np.clip(u, -20000.0, 20000.0) / temperature).mean()
    density = structure.density * 1000.0  # kg/m3
    kh = boltzmann / (GAS_CONSTANT * temperature * density)  # mol/kg/Pa
    return ProbeDescriptors(log10_kh_probe=float(np.log10(max(kh, 1e-300))), min_energy_K=float(u.min()),
                            fractions_below=tuple(float((u < edge).mean()) for edge in ENERGY_BINS_K),
                            n_points=len(u))
