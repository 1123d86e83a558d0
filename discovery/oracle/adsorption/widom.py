"""Grid Widom insertion: Henry coefficients and heats of adsorption at infinite dilution from energy grids.

A rigid linear guest (TraPPE CO2, N2) is inserted at uniformly random positions of the unit cell with
uniformly random orientations; its energy is the sum over its sites of the interpolated Lennard-Jones grid
of the site's type and its charge times the interpolated Ewald potential. Then, as in RASPA3's Widom run:

    K_H = <W> / (R T rho_framework),  W = exp(-U / k_B T),    Q_st = R (T - <U W> / <W>).

An insertion is an overlap (W = 0) when a site's trilinear Lennard-Jones energy lies above ``overlap_K``
(inside an atom, where interpolation means nothing), or when the guest's centre lies in a
blocked pocket (the pockets a CO2 probe cannot reach, as RASPA3 is given them).

Importance sampling, in two stages, each mixed with uniform draws so that nothing is starved and the
estimate stays unbiased (every insertion is weighted by the inverse of its density, known exactly):

- where (``Sampler._proposal``): half the centres uniformly, half in proportion to a tempered Boltzmann
  factor of the guest averaged over the 13 axes of a cube, from the site grids at every second node;
- how (``Sampler._pick_axes``): ``orientation_trials`` random axes per centre, ranked by their nearest-node
  energies (a few look-ups each), one of them picked in proportion to its Boltzmann factor (10 % uniformly)
  and only that one interpolated.

Where a few narrow, strongly binding sites decide K_H (CO2 near charged metals), uniform insertion needs
millions of insertions for a 5 % interval; these two stages cut the CPU an interval costs up to ~145x, and
little on open cells (docs/oracle.md, "Fewer insertions").

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
IMPORTANCE_TEMPERING = 0.8  # g in exp(-g U / k_B T): flatter than Boltzmann, the proposal is approximate
PROPOSAL_STRIDE = 2  # the centres' proposal is made on every 2nd node along each axis: 8x fewer nodes
ORIENTATION_MIX = 0.1  # share of each trial pick made uniformly: a trial's weight is at most 1 / 0.1
# the 13 axes of a cube (faces, edges, corners): the directions the centres' proposal averages a linear
# guest over (a guest is symmetric enough that an axis and its opposite count once)
CUBE_AXES = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -1, 0], [1, 0, 1], [1, 0, -1], [0, 1, 1],
                      [0, 1, -1], [1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]], dtype=float)

Interpolation = Literal["linear", "cubic"]


@dataclass(frozen=True)
class WidomSettings:
    """How insertions are made and when to stop. ``interpolation``: trilinear or Keys cubic convolution;
    ``orientation_trials``: axes ranked per centre (1: one uniformly random axis)."""

    interpolation: Interpolation = "cubic"
    overlap_K: float = 1.0e4  # a site whose trilinear Lennard-Jones energy is above this overlaps
    block: int = 5_000
    orientation_trials: int = 8
    target: float = 0.05
    max_insertions: int = 2_000_000
    temperature: float = 298.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.interpolation not in ("linear", "cubic"):
            raise DiscoveryError(f"interpolation must be 'linear' or 'cubic', got {self.interpolation!r}")
        if self.orientation_trials < 1:
            raise DiscoveryError(f"orientation_trials must be >= 1, got {self.orientation_trials}")
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
    """Insertions of one guest into the grids: where and how (``draw``, ``block``), at what interpolated
    energy (``energy``), and blocks of Boltzmann-weight sums (``block``)."""

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
        # a guest whose sites all sit at its centre has no orientation to choose
        self.trials = settings.orientation_trials if bool((self.z != 0).any()) else 1
        self.shape = grids.shape
        self._proposal()

    def block(self, n: int) -> tuple[float, float, int]:
        """Sum of W and of U W over ``n`` insertions (each weighted by the inverse of its density), and how
        many overlapped."""
        centre_frac, axis, factor = self.draw(n)
        energy, overlap = self.energy(centre_frac, axis)
        zero = torch.zeros((), dtype=self.dt, device=self.dev)
        energy = torch.where(overlap, zero, energy).double()
        w = torch.where(overlap, zero.double(), torch.exp(-energy.clamp(min=-1e5) / self.s.temperature)) * factor
        return float(w.sum()), float((w * energy).sum()), int(overlap.sum())

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` insertions: fractional centres, unit axes, and each one's weight 1 / (N p) (float64), N the
        nodes, p the probability of the insertion's voxel and axis against uniform."""
        # drawn in double whatever the grids' precision, so that precisions compare on the same insertions
        opts = dict(generator=self.gen, dtype=torch.float64, device=self.dev)
        cell = torch.searchsorted(self.cdf, torch.rand(n, **opts)).clamp_(max=len(self.cdf) - 1)
        m0, m1, m2 = self.cells
        index = (cell // (m1 * m2), (cell // m2) % m1, cell % m2)
        count = [self.counts[d][index[d]] for d in range(3)]  # fine nodes of the cell along each axis
        u = torch.rand((n, 3), **opts)
        ijk = torch.stack([index[d] * PROPOSAL_STRIDE + torch.floor(u[:, d] * count[d]) for d in range(3)], -1)
        factor = count[0] * count[1] * count[2] / (self.nodes * self.prob[cell])
        centre_frac = ((ijk + torch.rand((n, 3), **opts) - 0.5) / self.shape_t).to(self.dt)
        axes = torch.randn((n, self.trials, 3), **opts).to(self.dt)
        axes = axes / axes.norm(dim=-1, keepdim=True)
        if self.trials == 1:
            return centre_frac, axes[:, 0], factor
        pick, p_pick = self._pick_axes(centre_frac @ self.lattice, axes)
        return centre_frac, axes[torch.arange(n, device=self.dev), pick], factor / (self.trials * p_pick)

    def _pick_axes(self, centre: torch.Tensor, axes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One of each centre's trial axes, drawn in proportion to exp(-U / k_B T) on the nearest nodes (mixed
        with uniform), and its probability. Weighting W by 1 / (k p_pick) keeps <W> unbiased whatever
        the ranking: the sum over picks of p_pick W / (k p_pick) is the trials' mean W."""
        cheap = torch.zeros(axes.shape[:2], dtype=self.dt, device=self.dev)
        for z, grid in zip(self.z, self.site_grids):
            if grid is not None:
                cheap += _nearest(grid, (centre[:, None, :] + z * axes) @ self.inverse)
        logits = -cheap.double().clamp(-2e4, 2e4) / self.s.temperature
        p = torch.softmax(logits, dim=1) * (1.0 - ORIENTATION_MIX) + ORIENTATION_MIX / self.trials
        pick = torch.multinomial(p, 1, generator=self.gen).squeeze(1)
        return pick, p[torch.arange(len(p), device=self.dev), pick]

    def energy(self, centre_frac: torch.Tensor, axis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The guests' interpolated energies (K) and which insertions overlap (or sit in a blocked pocket)."""
        centre = centre_frac @ self.lattice
        energy = torch.zeros(len(centre), dtype=self.dt, device=self.dev)
        overlap = torch.zeros(len(centre), dtype=torch.bool, device=self.dev)
        for site, z in enumerate(self.z):
            if self.site_grids[site] is None:  # neither Lennard-Jones nor charge (or an uncharged framework)
                continue
            value, clash = self.site_energy(site, (centre + z * axis) @ self.inverse)
            energy += value
            overlap |= clash
        if self.pockets is not None:
            overlap |= self.in_pocket(centre_frac)
        return energy, overlap

    def site_energy(self, site: int, frac: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One guest site's interpolated energy (K) at fractional positions, and whether it overlaps (its
        trilinear Lennard-Jones above ``overlap_K``)."""
        grid, lj = self.site_grids[site], self.lj_grids[site]
        if grid is None:
            zeros = torch.zeros(len(frac), dtype=self.dt, device=self.dev)
            return zeros, zeros.bool()
        value, linear = interpolate(grid, frac, self.s.interpolation)
        if lj is None:
            return value, torch.zeros(len(frac), dtype=torch.bool, device=self.dev)
        return value, (linear if lj is grid else interpolate(lj, frac, "linear")[0]) > self.s.overlap_K

    def _proposal(self) -> None:
        """Where centres are drawn: cells of ``PROPOSAL_STRIDE``^3 nodes with probability p = (1 - l) / M + l q
        (M cells, l = ``IMPORTANCE_MIX``), q proportional to the guest's tempered Boltzmann factor averaged
        over the cube's 13 axes, with every site shifted to its nearest coarse node (a guess of where W is
        large; its quality costs efficiency, never bias). Blocked pockets get no share of q. Within a cell,
        a node and a point in its voxel are uniform."""
        shape, st, temp = self.shape, PROPOSAL_STRIDE, self.s.temperature
        coarse = [(float(z), g[::st, ::st, ::st].contiguous()) for z, g in zip(self.z, self.site_grids)
                  if g is not None]
        self.cells = tuple(-(-n // st) for n in shape)
        self.counts = [torch.tensor([min(st, n - b) for b in range(0, n, st)], dtype=torch.float64,
                                    device=self.dev) for n in shape]
        self.nodes = float(np.prod(shape))
        self.shape_t = torch.tensor(shape, dtype=torch.float64, device=self.dev)
        logits = torch.zeros(self.cells, dtype=self.dt, device=self.dev)
        if coarse:
            to_cells = np.linalg.inv(self.lattice.double().cpu().numpy()) * np.array(self.cells)
            axes = CUBE_AXES / np.linalg.norm(CUBE_AXES, axis=1, keepdims=True)
            per_axis = [-IMPORTANCE_TEMPERING / temp * _shifted_sum(coarse, a, to_cells).clamp(-2e4, 2e4)
                        for a in axes]
            logits = torch.logsumexp(torch.stack(per_axis), dim=0)
        logits = logits.reshape(-1).double()
        if self.pockets is not None:
            centres = torch.stack(torch.meshgrid(*[torch.arange(m, device=self.dev) * st / n
                                                   for m, n in zip(self.cells, shape)], indexing="ij"), -1)
            blocked = self.in_pocket(centres.reshape(-1, 3).to(self.dt))
            if not bool(blocked.all()):  # (every cell blocked: q stays as it is, W is 0 everywhere anyway)
                logits = logits.masked_fill(blocked, -math.inf)
        q = torch.softmax(logits, dim=0)
        self.prob = (1.0 - IMPORTANCE_MIX) / q.numel() + IMPORTANCE_MIX * q
        self.cdf = torch.cumsum(self.prob, 0)
        self.cdf /= self.cdf[-1].clone()

    def in_pocket(self, frac: torch.Tensor) -> torch.Tensor:
        inside = torch.zeros(len(frac), dtype=torch.bool, device=frac.device)
        for pocket in self.pockets:  # one pocket at a time: proposal cells are a million points
            d = frac - pocket[:3]
            d = d - torch.round(d)
            inside |= (d @ self.lattice).norm(dim=-1) < pocket[3]
        return inside


def _shifted_sum(coarse: list[tuple[float, torch.Tensor]], axis: np.ndarray, to_cells: np.ndarray) -> torch.Tensor:
    """The guest's energy at every coarse node with its axis along ``axis``: each site's coarse grid rolled
    by the site's offset, rounded to whole cells."""
    total = None
    for z, grid in coarse:
        shift = np.round((z * axis) @ to_cells).astype(int)
        rolled = torch.roll(grid, shifts=tuple(int(-x) for x in shift), dims=(0, 1, 2)) if shift.any() else grid
        total = rolled if total is None else total + rolled
    return total


def _nearest(grid: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
    """A periodic grid's value at the node nearest to each fractional position (any leading shape)."""
    n0, n1, n2 = grid.shape
    idx = torch.round(frac * torch.tensor(grid.shape, dtype=frac.dtype, device=frac.device)).long()
    flat = ((idx[..., 0] % n0) * n1 + idx[..., 1] % n1) * n2 + idx[..., 2] % n2
    return torch.take(grid.reshape(-1), flat)


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
