"""Guest-site energies by direct summation at any point, and the grid engine checked against them.

The grid engine (``grid``, ``widom``) interpolates energies stored on nodes. ``grid_check`` measures what
that costs in K_H without RASPA3's sampling noise: the same insertions, weighted the same way, once with the
interpolated energies and once with energies summed directly at the sites, so that any difference is the
grids' alone. The direct sums share no code with the grids: Lennard-Jones over every periodic image within
the cutoff (a k-d tree), and Ewald with a different splitting parameter (real-space cutoff 8 A instead of
5 A, reciprocal space summed over k-vectors at the points instead of by FFT at the nodes), at precision 1e-8.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from discovery.oracle.adsorption.forcefield import Guest, Site, framework_lj
from discovery.oracle.adsorption.grid import COULOMB_K_A, MIN_DISTANCE_A, EnergyGrids, Framework, ewald_alpha
from discovery.oracle.adsorption.widom import Sampler, WidomSettings, kh_per_mean_weight
from discovery.oracle.box import CUTOFF_A

REAL_CUTOFF_A = 8.0
PRECISION = 1e-8
CHUNK = 2000  # points per vectorised step (memory: CHUNK x neighbours)


class DirectSums:
    """Lennard-Jones energy (K) of a guest site and the framework's Ewald potential (K / e) at any points."""

    def __init__(self, fw: Framework, cutoff: float = CUTOFF_A) -> None:
        from scipy.spatial import cKDTree

        from discovery.structures.supercell import perpendicular_widths

        self.fw, self.cutoff = fw, cutoff
        reach = max(cutoff, REAL_CUTOFF_A)
        m = [int(math.ceil(reach / w)) + 1 for w in perpendicular_widths(fw.lattice)]
        shifts = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in m], indexing="ij"), -1).reshape(-1, 3)
        self.cart = ((fw.frac[None] + shifts[:, None]).reshape(-1, 3)) @ fw.lattice
        self.atom = np.tile(np.arange(len(fw.frac)), len(shifts))
        self.tree = cKDTree(self.cart)
        self.alpha = ewald_alpha(REAL_CUTOFF_A, PRECISION)
        self._kvectors()

    def lj(self, site: Site, points: np.ndarray) -> np.ndarray:
        """Shifted Lorentz-Berthelot Lennard-Jones energy of ``site`` at each point, every image within the cutoff."""
        params = [framework_lj(el) for el in self.fw.elements]
        eps = np.array([math.sqrt(site.lj.epsilon * p.epsilon) for p in params])
        sig = np.array([0.5 * (site.lj.sigma + p.sigma) for p in params])
        shift = 4 * eps * ((sig / self.cutoff) ** 12 - (sig / self.cutoff) ** 6)

        def pair(atoms: np.ndarray, r: np.ndarray) -> np.ndarray:
            sr6 = (sig[atoms] / r) ** 6
            return 4 * eps[atoms] * (sr6 * sr6 - sr6) - shift[atoms]
        return self._pair_sums(points, self.cutoff, pair)

    def potential(self, points: np.ndarray) -> np.ndarray:
        """Ewald potential of the framework's charges at each point (K / e)."""
        q, a = self.fw.charges, self.alpha
        real = self._pair_sums(points, REAL_CUTOFF_A, lambda atoms, r: q[atoms] * _erfc(a * r) / r)
        recip = np.concatenate([(np.exp(1j * (points[i:i + CHUNK] @ self.k.T)) @ self.coef).real
                                for i in range(0, len(points), CHUNK)]) if len(points) else np.zeros(0)
        return (real + recip) * COULOMB_K_A

    def _pair_sums(self, points: np.ndarray, reach: float, pair) -> np.ndarray:
        out = np.zeros(len(points))
        for start in range(0, len(points), CHUNK):
            chunk = points[start:start + CHUNK]
            lists = self.tree.query_ball_point(chunk, reach)
            counts = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
            if counts.sum() == 0:
                continue
            which = np.repeat(np.arange(len(chunk)), counts)
            images = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])
            r = np.maximum(np.linalg.norm(self.cart[images] - chunk[which], axis=1), MIN_DISTANCE_A)
            out[start:start + len(chunk)] = np.bincount(which, pair(self.atom[images], r), minlength=len(chunk))
        return out

    def _kvectors(self) -> None:
        fw, a = self.fw, self.alpha
        kmax = 2.0 * a * math.sqrt(-math.log(PRECISION))
        recip = 2.0 * math.pi * np.linalg.inv(fw.lattice).T
        hmax = [int(math.floor(kmax * np.linalg.norm(v) / (2.0 * math.pi))) + 1 for v in fw.lattice]
        h = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in hmax], indexing="ij"), -1).reshape(-1, 3)
        k = h @ recip
        k2 = (k * k).sum(1)
        keep = (k2 > 0) & (k2 <= kmax * kmax)
        self.k, k2 = k[keep], k2[keep]
        structure_factor = np.exp(-1j * (self.k @ (fw.frac @ fw.lattice).T)) @ fw.charges
        self.coef = 4.0 * np.pi / fw.volume_A3 * np.exp(-k2 / (4 * a * a)) / k2 * structure_factor


def _erfc(x: np.ndarray) -> np.ndarray:
    from scipy.special import erfc

    return erfc(x)


@dataclass(frozen=True)
class GridCheck:
    """K_H from the same insertions with interpolated (``kh_grid``) and directly summed (``kh_direct``)
    energies; ``ratio`` = grid / direct; the energy error (K) weighted by each insertion's share of K_H."""

    guest: str
    kh_grid: float
    kh_direct: float
    ratio: float
    weighted_abs_error_K: float
    p95_abs_error_K: float
    insertions: int
    summed: int
    cpu_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def grid_check(grids: EnergyGrids, guest: Guest, settings: WidomSettings = WidomSettings(),
               insertions: int = 50_000, share: float = 0.999, sample: int = 5_000) -> GridCheck:
    """``insertions`` seeded insertions of ``guest`` (the engine's own sampling), their K_H from the grids and
    from direct sums. Direct sums are computed for the insertions that carry ``share`` of the grid's weight
    and for a random ``sample`` of the rest (weighted up), which is where a difference could hide."""
    t0 = time.process_time()
    sampler = Sampler(grids, guest, settings, torch.Generator(device=grids.settings.device).manual_seed(settings.seed))
    centre_frac, axis, factor = sampler.draw(insertions)
    energy, overlap = sampler.energy(centre_frac, axis)
    T = settings.temperature
    weight = np.where(overlap.cpu().numpy(), 0.0, np.exp(-np.maximum(energy.double().cpu().numpy(), -1e5) / T))
    weight *= factor.cpu().numpy()
    chosen, scale = _carriers(weight, share, sample, settings.seed)
    direct = np.zeros(len(chosen))
    sums = DirectSums(grids.framework, grids.settings.cutoff_A)
    centre = (centre_frac.double() @ torch.as_tensor(grids.framework.lattice, dtype=torch.float64,
                                                     device=centre_frac.device)).cpu().numpy()[chosen]
    unit = axis.double().cpu().numpy()[chosen]
    potential_needed = grids.framework.charged and any(s.charge for s in guest.sites)
    for site in guest.sites:
        points = centre + site.z * unit
        if site.lj is not None:
            direct += sums.lj(site, points)
        if potential_needed and site.charge:
            direct += site.charge * sums.potential(points)
    blocked = sampler.in_pocket(centre_frac[chosen]).cpu().numpy() if sampler.pockets is not None else False
    w_direct = np.where(blocked, 0.0, np.exp(-np.maximum(direct, -1e5) / T)) * factor.cpu().numpy()[chosen]
    to_kh = kh_per_mean_weight(grids.framework, T)
    kh_grid = float(weight.sum()) / insertions * to_kh
    kh_direct = float((w_direct * scale).sum()) / insertions * to_kh
    carried = weight[chosen] * scale
    error = np.abs(energy.double().cpu().numpy()[chosen] - direct)
    valid = carried > 0
    return GridCheck(guest=guest.name, kh_grid=kh_grid, kh_direct=kh_direct,
                     ratio=kh_grid / kh_direct if kh_direct > 0 else math.nan,
                     weighted_abs_error_K=float((carried * error).sum() / max(carried.sum(), 1e-300)),
                     p95_abs_error_K=float(np.percentile(error[valid], 95)) if valid.any() else math.nan,
                     insertions=insertions, summed=len(chosen), cpu_s=time.process_time() - t0)


def _carriers(weight: np.ndarray, share: float, sample: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the insertions holding ``share`` of the total weight, plus a random ``sample`` of the
    others, and the factor each counts for (1, or the rest's size over the sample's)."""
    order = np.argsort(-weight)
    total = weight.sum()
    n_top = int(np.searchsorted(np.cumsum(weight[order]), share * total)) + 1 if total > 0 else 0
    top, rest = order[:n_top], order[n_top:]
    picked = np.random.default_rng(seed).choice(rest, size=min(sample, len(rest)), replace=False)
    scale = np.concatenate([np.ones(len(top)), np.full(len(picked), len(rest) / max(len(picked), 1))])
    return np.concatenate([top, picked]), scale
