"""Guest-site energies by direct summation at any point, and the grid engine checked against them.

The grid engine (``grid``, ``widom``) interpolates energies stored on nodes. ``grid_check`` measures what
that costs in K_H without RASPA3's sampling noise: the same insertions, weighted the same way, once with the
interpolated energies and once with energies summed directly at the sites, so that any difference is the
grids' alone. The direct sums share no code with the grids: Lennard-Jones over every periodic image within
the cutoff (a k-d tree), and Ewald with a different splitting parameter (real-space cutoff 12 A instead of
5 A, reciprocal space summed over k-vectors at the points instead of by FFT at the nodes), at precision 1e-7.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from scipy.special import erfc

from discovery.oracle.adsorption.forcefield import Guest, Site, framework_lj
from discovery.oracle.adsorption.grid import COULOMB_K_A, MIN_DISTANCE_A, EnergyGrids, Framework, ewald_alpha
from discovery.oracle.adsorption.widom import Sampler, WidomSettings, kh_per_mean_weight
from discovery.oracle.box import CUTOFF_A

REAL_CUTOFF_A = 12.0  # long: fewer k-vectors, which cost most at arbitrary points in large cells
PRECISION = 1e-7
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
        real = self._pair_sums(points, REAL_CUTOFF_A, lambda atoms, r: q[atoms] * erfc(a * r) / r)
        return (real + self._reciprocal(points)) * COULOMB_K_A

    def _reciprocal(self, points: np.ndarray) -> np.ndarray:
        """sum_h c_h exp(2 pi i h.f) at each point's fractional f: the phase factorises over the three axes,
        so the sum is three contractions (matrix products) instead of an exponential per k-vector."""
        frac = points @ np.linalg.inv(self.fw.lattice)
        out = np.empty(len(points))
        n0, n1, n2 = self.coef.shape
        flat = self.coef.reshape(n0 * n1, n2)
        for start in range(0, len(points), CHUNK):
            f = frac[start:start + CHUNK]
            e0, e1, e2 = (np.exp(2j * np.pi * np.outer(f[:, d], h)) for d, h in enumerate(self.h))
            inner = (e2 @ flat.T).reshape(len(f), n0, n1)  # sum over h2
            out[start:start + len(f)] = np.einsum("pi,pj,pij->p", e0, e1, inner).real
        return out

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
        """Ewald coefficients c_h on the box |h_d| <= hmax_d of reciprocal-lattice vectors (zero outside the
        sphere |k| <= kmax): (4 pi / V) exp(-k^2 / 4 alpha^2) / k^2 S(k)."""
        fw, a = self.fw, self.alpha
        kmax = 2.0 * a * math.sqrt(-math.log(PRECISION))
        recip = 2.0 * math.pi * np.linalg.inv(fw.lattice).T
        hmax = [int(math.floor(kmax * np.linalg.norm(v) / (2.0 * math.pi))) + 1 for v in fw.lattice]
        self.h = [np.arange(-m, m + 1) for m in hmax]
        h = np.stack(np.meshgrid(*self.h, indexing="ij"), -1).reshape(-1, 3)
        k = h @ recip
        k2 = (k * k).sum(1)
        keep = (k2 > 0) & (k2 <= kmax * kmax)
        structure_factor = np.exp(-2j * np.pi * (h[keep] @ fw.frac.T)) @ fw.charges
        coef = np.zeros(len(h), dtype=complex)
        coef[keep] = 4.0 * np.pi / fw.volume_A3 * np.exp(-k2[keep] / (4 * a * a)) / k2[keep] * structure_factor
        self.coef = coef.reshape(*(len(r) for r in self.h))


@dataclass(frozen=True)
class GridCheck:
    """K_H with interpolated (``kh_grid``) and directly summed (``kh_direct``) energies on the same
    insertions; ``ratio`` = grid / direct with its 95 % half-width (over the insertions: what another seed
    could give); the energy error (K) averaged over the
    insertions in proportion to their share of K_H, and its 95th percentile."""

    guest: str
    kh_grid: float
    kh_direct: float
    ratio: float
    ratio_ci95: float
    weighted_abs_error_K: float
    p95_abs_error_K: float
    insertions: int
    summed: int
    cpu_s: float
    reference: str = "direct sums"  # or "raspa3": RASPA3's own energies (``raspa.MoleculeEnergies``)

    def to_dict(self) -> dict:
        return asdict(self)


Energies = Callable[[np.ndarray], np.ndarray]  # (n, guest sites, 3) Cartesian positions -> n energies (K)


def grid_check(grids: EnergyGrids, guest: Guest, settings: WidomSettings = WidomSettings(),
               insertions: int = 50_000, picks: int = 4_000, overlaps: int = 1_000,
               sums: DirectSums | None = None, energies: Energies | None = None,
               reference: str = "direct sums") -> GridCheck:
    """``insertions`` seeded insertions of ``guest`` (the engine's own sampling) and their K_H from the
    grids; the same K_H from direct sums, estimated without summing them all: ``picks`` insertions drawn
    in proportion to their grid weight give sum(W_direct) / sum(W_grid) as the mean of W_direct / W_grid
    (unbiased, and precise where the two agree), and a uniform sample of ``overlaps`` of the insertions the
    grid calls overlaps adds what the direct sums give those. ``sums``: the framework's direct sums, when
    several guests are checked on the same grids (their k-vectors are set up once). ``energies``: another
    reference energy of the whole guest at its sites' positions (Cartesian, the framework's frame), named
    ``reference`` in the result; RASPA3's own is ``raspa.MoleculeEnergies``."""
    t0 = time.process_time()
    sampler = Sampler(grids, guest, settings, torch.Generator(device=grids.settings.device).manual_seed(settings.seed))
    centre_frac, axis, factor = sampler.draw(insertions)
    energy, overlap = sampler.energy(centre_frac, axis)
    T, rng = settings.temperature, np.random.default_rng(settings.seed)
    factor_np, energy_np, overlap_np = factor.cpu().numpy(), energy.double().cpu().numpy(), overlap.cpu().numpy()
    w_grid = np.where(overlap_np, 0.0, np.exp(-np.maximum(energy_np, -1e5) / T)) * factor_np
    total = float(w_grid.sum())
    weighted = rng.choice(insertions, size=picks, p=w_grid / total) if total > 0 else np.zeros(0, dtype=int)
    zero = np.flatnonzero(w_grid == 0)
    sampled_zero = rng.choice(zero, size=min(overlaps, len(zero)), replace=False)
    chosen = np.unique(np.concatenate([weighted, sampled_zero]))
    if energies is None:
        energies = direct_energies(sums or DirectSums(grids.framework, grids.settings.cutoff_A), guest)
    found = _reference_energies(energies, guest, sampler, grids.framework.lattice, centre_frac[chosen], axis[chosen])
    direct = dict(zip(chosen, found))
    w_direct = lambda i: math.exp(-max(direct[i], -1e5) / T) * factor_np[i]  # noqa: E731
    ratios = np.array([w_direct(i) / w_grid[i] for i in weighted])
    missed = sum(w_direct(i) for i in sampled_zero) * len(zero) / max(len(sampled_zero), 1)
    direct_total = total * float(ratios.mean()) + missed if len(ratios) else missed
    to_kh = kh_per_mean_weight(grids.framework, T) / insertions
    ratio = total / direct_total if direct_total > 0 else math.nan
    # the ratio's interval over the insertions themselves (delta method: sum of (W_grid - ratio W_direct)^2
    # over the insertions, over (sum W_direct)^2), each sum estimated from the picks and the overlap sample
    wg_picked = w_grid[weighted]
    squares = total * float(np.mean(wg_picked * (1.0 - ratio * ratios) ** 2)) if len(ratios) else 0.0
    squares += ratio * ratio * sum(w_direct(i) ** 2 for i in sampled_zero) * len(zero) / max(len(sampled_zero), 1)
    error = np.array([abs(energy_np[i] - direct[i]) for i in weighted])
    return GridCheck(guest=guest.name, kh_grid=total * to_kh, kh_direct=direct_total * to_kh, ratio=ratio,
                     ratio_ci95=1.96 * math.sqrt(squares) / direct_total if direct_total > 0 else math.nan,
                     weighted_abs_error_K=float(error.mean()) if len(error) else math.nan,
                     p95_abs_error_K=float(np.percentile(error, 95)) if len(error) else math.nan,
                     insertions=insertions, summed=len(chosen), cpu_s=time.process_time() - t0, reference=reference)


def direct_energies(sums: DirectSums, guest: Guest) -> Energies:
    """The guest's energy (K) by direct summation: Lennard-Jones of each site plus its charge times the
    framework's potential."""
    with_charges = sums.fw.charged and any(s.charge for s in guest.sites)

    def energy(sites: np.ndarray) -> np.ndarray:
        total = np.zeros(len(sites))
        for k, site in enumerate(guest.sites):
            if site.lj is not None:
                total += sums.lj(site, sites[:, k])
            if with_charges and site.charge:
                total += site.charge * sums.potential(sites[:, k])
        return total
    return energy


def _reference_energies(energies: Energies, guest: Guest, sampler: Sampler, lattice: np.ndarray,
                        centre_frac: torch.Tensor, axis: torch.Tensor) -> np.ndarray:
    """``energies`` at the given insertions; blocked pockets as the grid engine blocks them (+inf)."""
    centre = centre_frac.double().cpu().numpy() @ lattice
    unit = axis.double().cpu().numpy()
    sites = centre[:, None, :] + np.array([s.z for s in guest.sites])[None, :, None] * unit[:, None, :]
    energy = np.array(energies(sites), dtype=float)
    if sampler.pockets is not None:
        energy[sampler.in_pocket(centre_frac).cpu().numpy()] = math.inf
    return energy
