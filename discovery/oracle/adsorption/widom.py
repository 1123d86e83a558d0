"""Grid Widom insertion: Henry coefficients and heats of adsorption at infinite dilution from energy grids.

A rigid linear guest (TraPPE CO2, N2) is inserted at uniformly random positions of the unit cell with
uniformly random orientations; its energy is the sum over its sites of the interpolated Lennard-Jones grid
of the site's type and its charge times the interpolated Ewald potential. Then, as in RASPA3's Widom run:

    K_H = <W> / (R T rho_framework),  W = exp(-U / k_B T),    Q_st = R (T - <U W> / <W>).

An insertion is an overlap (W = 0) when a site's trilinear Lennard-Jones energy lies above ``overlap_K``
(inside an atom, where interpolation means nothing), or when the guest's centre lies in a
blocked pocket (the pockets a CO2 probe cannot reach, as RASPA3 is given them).

Importance sampling: half the centres are drawn uniformly, half where the grids say the guest binds
(``Sampler._importance``), each insertion weighted by the inverse of its density, which keeps the estimate
unbiased and cuts the insertions a 5 % interval needs where a few strong sites dominate.

Statistics: insertions come in independent, seeded blocks of ``block``; the 95 % interval is Student's t
over the block means (ratio estimator for Q_st). Adaptive: blocks are added until the relative half-width of
K_H reaches ``target`` or ``max_insertions`` is spent, never stopping in between; ``converged`` says which.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Literal

import numpy as np
import torch

from discovery.errors import DiscoveryError
from discovery.oracle.adsorption.forcefield import CO2, Guest
from discovery.oracle.adsorption.grid import EnergyGrids, Framework, GridSettings, energy_grids

GAS_CONSTANT = 8.314462618  # J / (mol K)
AVOGADRO = 6.02214076e23
MIN_BLOCKS = 5
IMPORTANCE_MIX = 0.5  # share of centres drawn where the grids say W is large (the rest: uniform)
IMPORTANCE_TEMPERING = 0.8  # g in exp(-g U / k_B T): flatter than Boltzmann, the guest is not a point

Interpolation = Literal["linear", "cubic"]


@dataclass(frozen=True)
class WidomSettings:
    """How insertions are made and when to stop. ``interpolation``: trilinear or Keys cubic convolution."""

    interpolation: Interpolation = "cubic"
    overlap_K: float = 1.0e4  # a site whose trilinear Lennard-Jones energy is above this overlaps
    block: int = 10_000
    target: float = 0.05
    max_insertions: int = 2_000_000
    temperature: float = 298.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.interpolation not in ("linear", "cubic"):
            raise DiscoveryError(f"interpolation must be 'linear' or 'cubic', got {self.interpolation!r}")
        if self.block < 100 or self.max_insertions < MIN_BLOCKS * self.block:
            raise DiscoveryError(f"need block >= 100 and max_insertions >= {MIN_BLOCKS} blocks, got "
                                 f"block={self.block}, max_insertions={self.max_insertions}")


@dataclass(frozen=True)
class GridHenryResult:
    """Grid Widom K_H (mol kg^-1 Pa^-1) with its 95 % half-width, and Q_st (kJ/mol) at infinite dilution."""

    guest: str
    kh: float
    kh_ci95: float
    qst_kj_mol: float
    qst_ci95: float
    insertions: int
    overlap_fraction: float
    converged: bool
    target: float
    temperature: float
    cpu_s: float
    grid_cpu_s: float
    settings: dict

    def to_dict(self) -> dict:
        return asdict(self)


def widom(grids: EnergyGrids, guest: Guest = CO2, settings: WidomSettings = WidomSettings()) -> GridHenryResult:
    """Adaptive grid Widom insertion of ``guest`` into the framework of ``grids``."""
    missing = [s.name for s in guest.sites if s.lj is not None and s.name not in grids.lj]
    if missing:
        raise DiscoveryError(f"the grids hold no Lennard-Jones grid for site type(s) {missing}")
    t0 = time.process_time()
    gen = torch.Generator(device=grids.settings.device).manual_seed(settings.seed)
    sampler = Sampler(grids, guest, settings, gen)
    sums: list[tuple[float, float, int]] = []  # per block: sum W, sum U W, overlaps
    while True:
        sums.append(sampler.block(settings.block))
        n = len(sums) * settings.block
        kh_rel = _relative_half_width(np.array([s[0] for s in sums]))
        if len(sums) >= MIN_BLOCKS and (kh_rel <= settings.target or n + settings.block > settings.max_insertions):
            break
    w, uw = np.array([s[0] for s in sums]) / settings.block, np.array([s[1] for s in sums]) / settings.block
    T = settings.temperature
    to_kh = kh_per_mean_weight(grids.framework, T)
    mean_w, half = float(w.mean()), _half_width(w)
    u_mean, u_half = _ratio(uw, w)
    to_kj = GAS_CONSTANT / 1000.0
    return GridHenryResult(guest=guest.name, kh=mean_w * to_kh, kh_ci95=half * to_kh,
                           qst_kj_mol=to_kj * (T - u_mean), qst_ci95=to_kj * u_half, insertions=n,
                           overlap_fraction=sum(s[2] for s in sums) / n, converged=kh_rel <= settings.target,
                           target=settings.target, temperature=T, cpu_s=time.process_time() - t0,
                           grid_cpu_s=grids.cpu_s, settings={**asdict(settings), **_grid_record(grids)})


def kh_per_mean_weight(fw: Framework, temperature: float) -> float:
    """K_H (mol kg^-1 Pa^-1) per unit of the mean Boltzmann weight <W>: 1 / (R T rho_framework)."""
    rho = fw.mass_amu * 1e-3 / (AVOGADRO * fw.volume_A3 * 1e-30)  # kg m^-3
    return 1.0 / (GAS_CONSTANT * temperature * rho)


def grid_henry(framework, guests=(CO2,), grid: GridSettings = GridSettings(),
               settings: WidomSettings = WidomSettings()) -> dict[str, GridHenryResult]:
    """Grids once for all ``guests``, then one adaptive Widom run per guest (seed, seed + 1, ...)."""
    grids = energy_grids(framework, [s for g in guests for s in g.sites], grid)
    return {g.name: widom(grids, g, replace(settings, seed=settings.seed + i)) for i, g in enumerate(guests)}


class Sampler:
    """Insertions of one guest into the grids: where (``draw``), at what interpolated energy (``energy``), and
    blocks of Boltzmann-weight sums (``block``)."""

    def __init__(self, grids: EnergyGrids, guest: Guest, settings: WidomSettings, gen: torch.Generator) -> None:
        self.s, self.gen = settings, gen
        fw = grids.framework
        self.dev, self.dt = torch.device(grids.settings.device), getattr(torch, grids.settings.dtype)
        as_t = lambda x: torch.as_tensor(np.asarray(x, dtype=float), dtype=self.dt, device=self.dev)  # noqa: E731
        self.lattice, self.inverse = as_t(fw.lattice), as_t(np.linalg.inv(fw.lattice))
        self.z = as_t([s.z for s in guest.sites])
        # one grid per site: its type's Lennard-Jones energy plus its charge times the potential, so that an
        # insertion costs one cubic interpolation per site
        self.site_grids = [grids.site_energy(site) for site in guest.sites]
        # overlap is judged on Lennard-Jones alone, as RASPA3 does: a charge's energy near an ion can be large
        # either way while the molecule's total is moderate (N2's massless centre against its N sites)
        self.lj_grids = [grids.lj.get(site.name) if site.lj is not None else None for site in guest.sites]
        self.pockets = as_t(fw.pockets) if len(fw.pockets) else None
        self._importance(grids.shape, settings)

    def block(self, n: int) -> tuple[float, float, int]:
        """Sum of W and of U W over ``n`` insertions, and how many overlapped."""
        centre_frac, axis, factor = self.draw(n)
        energy, overlap = self.energy(centre_frac, axis)
        zero = torch.zeros((), dtype=self.dt, device=self.dev)
        energy = torch.where(overlap, zero, energy).double()
        w = torch.where(overlap, zero.double(), torch.exp(-energy.clamp(min=-1e5) / self.s.temperature)) * factor
        return float(w.sum()), float((w * energy).sum()), int(overlap.sum())

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` insertions: fractional centres, unit axes, and each one's weight 1 / (N p) (float64)."""
        # drawn in double whatever the grids' precision, so that precisions compare on the same insertions
        opts = dict(generator=self.gen, dtype=torch.float64, device=self.dev)
        node = torch.searchsorted(self.cdf, torch.rand(n, **opts)).clamp_(max=len(self.cdf) - 1)
        factor = 1.0 / (len(self.cdf) * self.prob[node])  # W / (N p): unbiased for the cell average
        ijk = torch.stack([node // (self.shape[1] * self.shape[2]), (node // self.shape[2]) % self.shape[1],
                           node % self.shape[2]], -1).to(torch.float64)
        centre_frac = ((ijk + torch.rand((n, 3), **opts) - 0.5) / self.shape_t).to(self.dt)
        axis = torch.randn((n, 3), **opts).to(self.dt)
        return centre_frac, axis / axis.norm(dim=1, keepdim=True), factor

    def energy(self, centre_frac: torch.Tensor, axis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The guests' interpolated energies (K) and which insertions overlap (or sit in a blocked pocket)."""
        centre = centre_frac @ self.lattice
        energy = torch.zeros(len(centre), dtype=self.dt, device=self.dev)
        overlap = torch.zeros(len(centre), dtype=torch.bool, device=self.dev)
        for z, grid, lj in zip(self.z, self.site_grids, self.lj_grids):
            if grid is None:  # a site with neither Lennard-Jones nor charge (or an uncharged framework)
                continue
            frac = (centre + z * axis) @ self.inverse
            value, linear = interpolate(grid, frac, self.s.interpolation)
            energy += value
            if lj is not None:
                overlap |= (linear if lj is grid else interpolate(lj, frac, "linear")[0]) > self.s.overlap_K
        if self.pockets is not None:
            overlap |= self.in_pocket(centre_frac)
        return energy, overlap

    def _importance(self, shape: tuple[int, int, int], settings: WidomSettings) -> None:
        """Where centres are drawn: a voxel around each node with probability p = (1 - l) / N + l q, q
        proportional to exp(-g U_centre / k_B T), U_centre the guest's site energies all put at the node
        (a tempered guess of where W is large); half uniform (l = 0.5), so that no region is starved and
        the variance is at most twice that of uniform insertion. Each insertion is weighted 1 / (N p)."""
        grids = [g for g in self.site_grids if g is not None]
        energy = sum(g.double() for g in grids) if grids else torch.zeros(shape, dtype=torch.float64, device=self.dev)
        logits = (-IMPORTANCE_TEMPERING * energy.reshape(-1).clamp(-2e4, 2e4) / settings.temperature)
        q = torch.softmax(logits, dim=0)
        self.prob = (1.0 - IMPORTANCE_MIX) / q.numel() + IMPORTANCE_MIX * q
        self.cdf = torch.cumsum(self.prob, 0)
        self.cdf /= self.cdf[-1].clone()
        self.shape = shape
        self.shape_t = torch.tensor(shape, dtype=torch.float64, device=self.dev)

    def in_pocket(self, frac: torch.Tensor) -> torch.Tensor:
        d = frac[:, None, :] - self.pockets[None, :, :3]
        d = d - torch.round(d)
        r = (d @ self.lattice).norm(dim=-1)
        return (r < self.pockets[None, :, 3]).any(dim=1)


def interpolate(grid: torch.Tensor, frac: torch.Tensor, method: Interpolation = "cubic"
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Values of a periodic grid (nodes at i / n) at fractional positions, and their trilinear values (which
    never leave the range of their 8 nodes: the overlap test). ``linear``: trilinear; ``cubic``: Keys cubic
    convolution, a = -0.5 (64 nodes, third order, interpolating, local: a wall disturbs only its
    neighbourhood; measured against trilinear in docs/oracle.md)."""
    shape = torch.tensor(grid.shape, device=grid.device)
    x = frac * shape.to(frac.dtype)
    base = torch.floor(x)
    t = x - base
    base = base.long()
    offsets, weights = _stencil(t, method)
    flat = grid.reshape(-1)
    value = torch.zeros(len(frac), dtype=grid.dtype, device=grid.device)
    linear = torch.zeros_like(value)
    lin_w = [(1 - t[:, d], t[:, d]) for d in range(3)]
    n0, n1, n2 = grid.shape
    # flat node index = i n1 n2 + j n2 + k: each axis's wrapped part once per offset, not once per node
    ia = [((base[:, 0] + a) % n0) * (n1 * n2) for a in offsets]
    ib = [((base[:, 1] + b) % n1) * n2 for b in offsets]
    ic = [(base[:, 2] + c) % n2 for c in offsets]
    for a, wa, ia_ in zip(offsets, weights[0], ia):
        for b, wb, ib_ in zip(offsets, weights[1], ib):
            iab = ia_ + ib_
            wab = wa * wb
            for c, wc, ic_ in zip(offsets, weights[2], ic):
                node = torch.take(flat, iab + ic_)
                value += wab * wc * node
                if method == "cubic" and a in (0, 1) and b in (0, 1) and c in (0, 1):
                    linear += lin_w[0][a] * lin_w[1][b] * lin_w[2][c] * node
    return value, (value if method == "linear" else linear)


def _stencil(t: torch.Tensor, method: Interpolation):
    """Node offsets and, per axis, the weights of each offset at fractional offsets ``t`` (n, 3)."""
    if method == "linear":
        return (0, 1), [(1 - t[:, d], t[:, d]) for d in range(3)]
    weights = []
    for d in range(3):
        s = t[:, d]
        s2, s3 = s * s, s * s * s
        weights.append(((-s3 + 2 * s2 - s) / 2, (3 * s3 - 5 * s2 + 2) / 2, (-3 * s3 + 4 * s2 + s) / 2,
                        (s3 - s2) / 2))
    return (-1, 0, 1, 2), weights


def _half_width(x: np.ndarray) -> float:
    """95 % half-width of the mean of independent block values (Student's t)."""
    return _t95(len(x)) * float(x.std(ddof=1)) / math.sqrt(len(x))


def _relative_half_width(block_sums: np.ndarray) -> float:
    if len(block_sums) < 2 or block_sums.mean() <= 0:
        return math.inf
    return _half_width(block_sums) / float(block_sums.mean())


def _ratio(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """Ratio of means sum(num) / sum(den) and its 95 % half-width (delta method over blocks)."""
    if den.sum() <= 0:
        return math.nan, math.nan
    r = float(num.sum() / den.sum())
    resid = (num - r * den) / den.mean()
    return r, _half_width(resid)


def _t95(n: int) -> float:
    from scipy.special import stdtrit  # Student's t quantile, without scipy.stats' second of imports

    return float(stdtrit(n - 1, 0.975))


def _grid_record(grids: EnergyGrids) -> dict:
    s = grids.settings
    return {"engine": "grid", "grid_spacing_A": s.spacing_A, "grid_shape": list(grids.shape),
            "ewald_precision": s.ewald_precision, "device": s.device, "dtype": s.dtype}
