"""Energy grids of a rigid framework: what the grid Widom engine (``widom``) inserts guests into.

Per structure, once: the Lennard-Jones energy of each guest site type and the electrostatic potential of the
framework's charges on a periodic grid over the unit cell (fractional nodes i/n). The protocol is RASPA3's
(``raspa.protocol``): UFF + TraPPE, Lorentz-Berthelot, 12.8 A cutoff, shifted, no tail corrections, Ewald.

- Lennard-Jones: each pair potential is split at ``near_A`` (5 A). The near part is a direct sum on the fine
  grid, one dense block of nodes against the atoms near it (a k-d tree finds them), written as matrix
  products so that BLAS (or CUDA) does the work. The far part is smooth by construction, so its periodic
  sum is a short Fourier series: per site type, the far pair potential's 3D Fourier transform times the
  atoms' structure factor, summed at the nodes by one inverse FFT (``far_lj``), as Ewald's reciprocal part
  is. It used to be a direct sum over every image within the cutoff on a 0.5 A grid: 40 % of a grid's
  cost, where the series costs a few per cent (docs/oracle.md).
- Electrostatics: Ewald. The real-space part (erfc, within ``near_A``) is summed with the near blocks. The
  reciprocal part is exact at the nodes through one inverse FFT, because exp(i k.x) at fractional nodes is
  a DFT kernel. The total potential does not depend on the split, so the splitting parameter is chosen for
  cost: a short real-space cutoff and more k-vectors, which cost nothing extra on the FFT grid. Precision is
  1e-6 in both parts.

Energies are in Kelvin (energy / k_B), the potential in K per elementary charge. Grid values are capped at
``CAP_K``: nodes inside atoms only ever count as overlap (``widom`` rejects an insertion when a site's
trilinear Lennard-Jones energy exceeds its overlap threshold), and the cap keeps them finite.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from discovery.errors import DiscoveryError
from discovery.oracle.adsorption.forcefield import Site, framework_lj
from discovery.oracle.box import CUTOFF_A, Box

COULOMB_K_A = 167101.00  # e^2 / (4 pi eps0 k_B), in K * Angstrom
CAP_K = 1.0e7  # grid energies above this are stored as this (inside an atom: overlap whatever the value)
MIN_DISTANCE_A = 0.5  # closer pairs are evaluated at this distance (overlap anyway; keeps floats finite)
FAR_QUADRATURE = 600  # Gauss-Legendre nodes on each piece of the far potential, for its Fourier transform
FAR_TABLE_STEP = 5e-3  # 1/A: the transforms are tabulated in |k| at this step and interpolated linearly


@dataclass(frozen=True)
class Framework:
    """The unit cell as the grid engine sees it: lattice rows (A), fractional positions, elements, charges
    (e, neutral), blocked pocket spheres (fractional centre in the unit cell, radius A) and mass (amu)."""

    lattice: np.ndarray
    frac: np.ndarray
    elements: tuple[str, ...]
    charges: np.ndarray
    pockets: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    mass_amu: float = 0.0

    @property
    def volume_A3(self) -> float:
        return float(abs(np.linalg.det(self.lattice)))

    @property
    def charged(self) -> bool:
        return bool(np.any(self.charges != 0.0))

    @classmethod
    def from_box(cls, box: Box) -> "Framework":
        """The unit cell of the simulation box the RASPA3 engine would use: the same atoms, charges and
        blocked pockets (the box holds each unit-cell atom's copies together, in the unit cell's order)."""
        copies = box.copies
        unit = np.asarray(box.unit_cell_A, dtype=float)
        cart = box.structure.cart_coords[::copies]
        frac = cart @ np.linalg.inv(unit)
        spheres = np.array(box.blocking, dtype=float).reshape(-1, 4)
        centres = spheres[:, :3] @ box.structure.lattice.matrix @ np.linalg.inv(unit)
        pockets = np.column_stack([centres - np.floor(centres), spheres[:, 3]])
        elements = tuple(box.elements[::copies])
        mass = float(sum(site.specie.atomic_mass for site in box.structure)) / copies
        return cls(unit, frac - np.floor(frac), elements, np.asarray(box.charges[::copies], dtype=float),
                   np.unique(np.round(pockets, 6), axis=0) if len(pockets) else pockets, mass)


@dataclass(frozen=True)
class GridSettings:
    """How the grids are made. ``spacing_A``: largest node spacing along each cell vector."""

    spacing_A: float = 0.2  # the oracle's default (grid_spacing)
    cutoff_A: float = CUTOFF_A
    ewald_precision: float = 1e-6
    near_A: float = 5.0  # pairs closer than this are summed on the fine grid (and the Ewald real-space cutoff)
    far_spacing_A: float = 0.5  # the smooth rest of the Lennard-Jones sum: its Fourier series to |k| <= pi / this
    dtype: str = "float32"  # the same K_H as float64 to four digits (docs/oracle.md), in less time
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not (0.01 <= self.spacing_A <= 1.0):
            raise DiscoveryError(f"grid spacing must be in [0.01, 1] A, got {self.spacing_A}")
        if not (0 < self.ewald_precision < 1e-2):
            raise DiscoveryError(f"Ewald precision must be in (0, 0.01), got {self.ewald_precision}")


@dataclass
class EnergyGrids:
    """Per site type: Lennard-Jones energy (K) on the nodes; ``potential``: Ewald potential (K / e), None for
    an uncharged framework. ``shape``: nodes along a, b, c."""

    framework: Framework
    settings: GridSettings
    shape: tuple[int, int, int]
    lj: dict[str, torch.Tensor]
    potential: torch.Tensor | None
    cpu_s: float = 0.0

    def site_energy(self, site: Site) -> torch.Tensor | None:
        """A guest site's energy (K) on the nodes: its type's Lennard-Jones grid plus its charge times the
        potential; None when it has neither."""
        lj = self.lj.get(site.name) if site.lj is not None else None
        coulomb = site.charge * self.potential if (site.charge and self.potential is not None) else None
        if lj is None or coulomb is None:
            return lj if coulomb is None else coulomb
        return lj + coulomb


def grid_shape(lattice: np.ndarray, spacing: float) -> tuple[int, int, int]:
    """Nodes along each cell vector: at most ``spacing`` apart, rounded up to a product of 2, 3, 5 and 7,
    for which FFTs are fast (a prime such as 293 nodes made each inverse FFT of a large cell 2x slower)."""
    return tuple(_smooth(int(math.ceil(np.linalg.norm(v) / spacing))) for v in lattice)  # type: ignore[return-value]


def _smooth(n: int) -> int:
    """The smallest integer >= n with no prime factor above 7."""
    while True:
        m = n
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def site_types(sites: Sequence[Site]) -> dict[str, Site]:
    """The distinct Lennard-Jones site types of the guests (a massless charge site has none)."""
    return {s.name: s for s in sites if s.lj is not None}


def energy_grids(fw: Framework, sites: Sequence[Site], settings: GridSettings = GridSettings()) -> EnergyGrids:
    """The grids of ``fw`` for every Lennard-Jones site type among ``sites`` (and the potential when charged).

    Cost is what a screening engine cannot afford to waste: each pair potential is split at ``near_A`` into
    a near part (exact, fine grid, few neighbours) and a far part that is smooth by construction (the
    potential beyond ``near_A``, continued inside it by a quadratic in r^2 matching its value and slope),
    whose periodic sum is a Fourier series cut at |k| = pi / ``far_spacing_A`` (``far_lj``).
    The Coulomb potential splits the same way, Ewald's own way: erfc near, reciprocal space by FFT."""
    t0 = time.process_time()
    dev, dt = torch.device(settings.device), getattr(torch, settings.dtype)
    shape = grid_shape(fw.lattice, settings.spacing_A)
    types = site_types(sites)
    near = min(settings.near_A, settings.cutoff_A)
    alpha = ewald_alpha(near, settings.ewald_precision)
    pair = _PairTables(fw, types, settings.cutoff_A, near, dt, dev)
    lj_near, real = _sum_on_grid(fw, pair, shape, near, near / 2.0, alpha if fw.charged else 0.0)
    lj_far = far_lj(fw, pair, shape, math.pi / settings.far_spacing_A)
    lj = {name: (lj_near[..., k] + lj_far[k]).clamp_(max=CAP_K) for k, name in enumerate(types)}
    potential = None
    if fw.charged:
        potential = real + reciprocal_potential(fw, shape, alpha, settings.ewald_precision, dt, dev)
    return EnergyGrids(fw, settings, shape, lj, potential, time.process_time() - t0)


def _sum_on_grid(fw: Framework, pair: "_PairTables", shape: tuple[int, int, int], reach: float, block: float,
                 alpha: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(nodes..., types) near Lennard-Jones part and, when ``alpha``, the real-space Ewald potential."""
    lj = torch.empty((*shape, len(pair.types)), dtype=pair.dtype, device=pair.device)
    real = torch.zeros(shape, dtype=pair.dtype, device=pair.device) if alpha else None
    tiles = _Tiles(fw.lattice, shape, block, pair.dtype, pair.device)
    # every image a block's query can reach (a skewed cell's blocks are wider than ``block`` across)
    images = _ImageAtoms(fw, reach + float(tiles.radii.max()))
    # the atoms near every block in one vectorised query: per block, Python does little else
    nearby = images.tree.query_ball_point(tiles.centres, reach + tiles.radii)
    for sl, centre, offsets, atoms in zip(tiles.slices, tiles.centres, tiles.offsets, nearby):
        atoms = np.asarray(atoms, dtype=np.int64)
        energies, phi = pair.block(offsets, images.cart[atoms] - centre, images.atom[atoms], alpha)
        lj[sl] = energies.reshape(*lj[sl].shape)
        if real is not None:
            real[sl] = phi.reshape(real[sl].shape)
    return lj, real


def far_lj(fw: Framework, pair: "_PairTables", shape: tuple[int, int, int], kmax: float) -> list[torch.Tensor]:
    """Per site type, the far Lennard-Jones part at the nodes (K): the periodic sum over every atom and image

        E_t(x) = (1 / V) sum_k [F12(|k|) S_t^12(k) + F6(|k|) S_t^6(k)] exp(i k.x),

    S_t^12(k) = sum_j 4 eps_tj sigma_tj^12 exp(-i k.r_j) (S_t^6 likewise with sigma^6), and F12, F6 the 3D
    Fourier transforms of the far potential per unit coefficient (``_far_transforms``: the potential is
    linear in them, shift and quadratic continuation included). Exact up to the cut at ``kmax``: the far
    part's transform falls as k^-4 (its second derivative jumps at ``near``), so the terms left out are
    a few tenths of a Kelvin at a node (tests/test_grid.py holds it to direct sums)."""
    hmax = [min(int(math.floor(kmax * np.linalg.norm(v) / (2.0 * math.pi))), (n - 1) // 2)
            for v, n in zip(fw.lattice, shape)]
    weights = torch.cat([pair.a12, pair.b6], dim=1).to(torch.float64)  # (atoms, 2 types)
    S, H = _structure_factors(fw.frac, weights, hmax, pair.device)
    k = torch.linalg.norm(H @ torch.as_tensor(2.0 * math.pi * np.linalg.inv(fw.lattice).T, device=pair.device),
                          dim=-1)
    table_k, f12, f6 = (torch.as_tensor(x, device=pair.device) for x in _far_transforms(pair.near, pair.cutoff,
                                                                                        kmax))
    inside = k <= kmax
    F12, F6 = (_interp(k, table_k, f).where(inside, torch.zeros_like(k)) for f in (f12, f6))
    n = len(pair.types)
    return [_series_at_nodes((F12 * S[..., t] + F6 * S[..., n + t]) / fw.volume_A3, H, shape, pair.dtype)
            for t in range(n)]


@functools.lru_cache(maxsize=8)
def _far_transforms(near: float, cutoff: float, kmax: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """|k| table and the Fourier transforms 4 pi int r^2 g(r) sin(kr) / (kr) dr of the far potential per unit
    4 eps sigma^12 (g12) and per unit 4 eps sigma^6 (g6): shifted at the cutoff, and inside ``near`` the
    quadratic c0 + c1 r^2 of ``_PairTables`` (value and slope continuous), each piece by Gauss-Legendre."""
    x, w = np.polynomial.legendre.leggauss(FAR_QUADRATURE)
    pieces = [(0.5 * (b - a) * x + 0.5 * (a + b), 0.5 * (b - a) * w) for a, b in ((0.0, near), (near, cutoff))]
    r, wr = np.concatenate([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces])
    inner = r < near
    g12 = np.where(inner, 7.0 * near ** -12 - cutoff ** -12 - 6.0 * near ** -14 * r * r, r ** -12.0 - cutoff ** -12)
    g6 = np.where(inner, cutoff ** -6 - 4.0 * near ** -6 + 3.0 * near ** -8 * r * r, cutoff ** -6 - r ** -6.0)
    k = np.arange(0.0, kmax + 2 * FAR_TABLE_STEP, FAR_TABLE_STEP)
    kernel = 4.0 * np.pi * wr * r * r * np.sinc(np.outer(k, r) / np.pi)  # np.sinc(x) = sin(pi x) / (pi x)
    return k, kernel @ g12, kernel @ g6


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Linear interpolation in a table of uniform step starting at 0 (torch has no np.interp)."""
    step = float(xp[1] - xp[0])
    i = (x / step).floor().long().clamp_(0, len(xp) - 2)
    t = x / step - i
    return fp[i] * (1 - t) + fp[i + 1] * t


def _structure_factors(frac: np.ndarray, weights: torch.Tensor, hmax: Sequence[int], device
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """S_c(h) = sum_j w_jc exp(-2 pi i h.f_j) for every h with |h_0| <= hmax_0, |h_1| <= hmax_1, 0 <= h_2 <=
    hmax_2 (the other half is the complex conjugate: the fields are real), and the h themselves (float64).
    Separable phases: exp(-2 pi i h.f) is a product over the three axes, so S is a few matrix products,
    taken a slab of h_0 at a time to bound the memory (large cells have many k-vectors and atoms)."""
    ranges = [torch.arange(-hmax[0], hmax[0] + 1), torch.arange(-hmax[1], hmax[1] + 1), torch.arange(0, hmax[2] + 1)]
    f = torch.as_tensor(frac, dtype=torch.float64, device=device)
    e = [torch.exp(-2j * math.pi * torch.outer(r.to(device, torch.float64), f[:, d])) for d, r in enumerate(ranges)]
    w = weights.to(device=device, dtype=torch.complex128)  # (atoms, columns)
    n0, n1, n2 = (len(r) for r in ranges)
    slab = max(1, int(2 ** 22 // max(1, n1 * len(frac))))  # h_0 rows per product: ~64 MB of phases
    S = torch.empty((n0, n1, n2, w.shape[1]), dtype=torch.complex128, device=device)
    for i in range(0, n0, slab):
        ab = e[0][i:i + slab, None, :] * e[1][None, :, :]  # (rows, n1, atoms)
        # sum_j ab_j w_jc e2_hj for every column: (rows n1, atoms) x (atoms, n2 columns)
        prod = ab.reshape(-1, len(frac)) @ (e[2].T[:, :, None] * w[:, None, :]).reshape(len(frac), -1)
        S[i:i + slab] = prod.reshape(ab.shape[0], n1, n2, w.shape[1])
    H = torch.stack(torch.meshgrid(*ranges, indexing="ij"), dim=-1).to(device, torch.float64)
    return S, H


def _series_at_nodes(coef: torch.Tensor, H: torch.Tensor, shape: tuple[int, int, int], dtype) -> torch.Tensor:
    """sum_h c(h) exp(2 pi i h.n / N) at every node n, given c on the half |h_0|, |h_1| <= .., h_2 >= 0 of a
    real field (the inverse real FFT supplies the conjugate half)."""
    # in the grids' precision: float32 grids need no double FFT, which costs twice the time and memory
    complex_dtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    half = torch.zeros((shape[0], shape[1], shape[2] // 2 + 1), dtype=complex_dtype, device=coef.device)
    idx = H.long()
    half[idx[..., 0] % shape[0], idx[..., 1] % shape[1], idx[..., 2]] = (coef * float(np.prod(shape))).to(complex_dtype)
    return torch.fft.irfftn(half, s=shape)


def ewald_alpha(real_cutoff: float, precision: float) -> float:
    """Splitting parameter for which erfc(alpha r_c) / r_c is below ``precision`` (relative)."""
    return math.sqrt(-math.log(precision)) / real_cutoff


def reciprocal_potential(fw: Framework, shape: tuple[int, int, int], alpha: float, precision: float,
                         dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Ewald reciprocal-space potential (K / e) at the nodes: (4 pi / V) sum_k exp(-k^2 / 4 alpha^2) / k^2
    Re[S(k) exp(i k.x)], S(k) = sum_j q_j exp(-i k.r_j), over the k-vectors whose Gaussian factor exceeds
    ``precision``; exact at the nodes by one inverse FFT."""
    kmax = 2.0 * alpha * math.sqrt(-math.log(precision))
    recip = 2.0 * math.pi * np.linalg.inv(fw.lattice).T  # rows: b_i with a_i . b_j = 2 pi delta_ij
    hmax = [int(math.floor(kmax * np.linalg.norm(v) / (2.0 * math.pi))) for v in fw.lattice]
    if any(2 * h + 1 > n for h, n in zip(hmax, shape)):
        raise DiscoveryError(f"grid {shape} too coarse for the Ewald k-vectors (|h| <= {hmax}); use a finer "
                             "spacing or a longer near_A")
    S, H = _structure_factors(fw.frac, torch.as_tensor(fw.charges[:, None], dtype=torch.float64), hmax, device)
    k2 = (H @ torch.as_tensor(recip, device=device)).square().sum(-1)
    keep = (k2 > 0) & (k2 <= kmax * kmax)
    coef = torch.where(keep, 4.0 * math.pi / fw.volume_A3 * torch.exp(-k2 / (4 * alpha * alpha))
                       / k2.clamp(min=1e-12), torch.zeros_like(k2)) * S[..., 0]
    return _series_at_nodes(coef * COULOMB_K_A, H, shape, dtype)


class _ImageAtoms:
    """Every periodic image of the unit cell's atoms that can lie within ``reach`` of a point of the cell,
    in a k-d tree."""

    def __init__(self, fw: Framework, reach: float) -> None:
        from scipy.spatial import cKDTree

        from discovery.structures.supercell import perpendicular_widths

        widths = perpendicular_widths(fw.lattice)
        m = [int(math.ceil(reach / w)) + 1 for w in widths]
        shifts = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in m], indexing="ij"), -1).reshape(-1, 3)
        frac = (fw.frac[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
        self.cart = frac @ fw.lattice
        self.atom = np.tile(np.arange(len(fw.frac)), len(shifts))
        self.tree = cKDTree(self.cart)


class _PairTables:
    """Per (site type, framework atom): Lorentz-Berthelot 4 eps sigma^12, 4 eps sigma^6, the shift at the
    cutoff and the far part's quadratic continuation c0 + c1 r^2 inside ``near``, so that a block's energies
    are a few matrix products."""

    def __init__(self, fw: Framework, types: dict[str, Site], cutoff: float, near: float, dtype, device) -> None:
        params = {el: framework_lj(el) for el in set(fw.elements)}
        eps = np.array([[math.sqrt(s.lj.epsilon * params[el].epsilon) for el in fw.elements] for s in types.values()])
        sig = np.array([[0.5 * (s.lj.sigma + params[el].sigma) for el in fw.elements] for s in types.values()])
        a12, b6 = 4.0 * eps * sig ** 12, 4.0 * eps * sig ** 6
        shift = a12 / cutoff ** 12 - b6 / cutoff ** 6
        u_near = a12 / near ** 12 - b6 / near ** 6 - shift
        slope = -12.0 * a12 / near ** 13 + 6.0 * b6 / near ** 7
        c1 = slope / (2.0 * near)
        c0 = u_near - c1 * near * near
        as_t = lambda x: torch.as_tensor(x.T, dtype=dtype, device=device)  # noqa: E731  (atoms, types)
        self.a12, self.b6, self.shift_c0, self.c1 = map(as_t, (a12, b6, shift + c0, c1))
        self.q = torch.as_tensor(fw.charges, dtype=dtype, device=device)
        self.types, self.cutoff, self.near, self.near2 = list(types), cutoff, near, near * near
        self.dtype, self.device = dtype, device

    def block(self, points: torch.Tensor, cart: np.ndarray, atom: np.ndarray, alpha: float = 0.0
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(points, types) near Lennard-Jones energies (K) and, with ``alpha``, the real-space Ewald
        potential (K / e) of the pairs within ``near``. ``points`` and the atoms' ``cart`` are relative to
        the block's centre, so that float32 keeps its digits whatever the cell's size."""
        zeros = lambda *shape: torch.zeros(shape, dtype=self.dtype, device=self.device)  # noqa: E731
        if len(atom) == 0:
            return zeros(len(points), len(self.types)), (zeros(len(points)) if alpha else None)
        x = torch.as_tensor(cart, dtype=self.dtype, device=self.device)
        idx = torch.as_tensor(atom, device=self.device)
        # |p - x|^2 through one matrix product (what cdist does); the clamp also absorbs its rounding
        d2 = ((points * points).sum(1)[:, None] + (x * x).sum(1)[None, :] - 2.0 * points @ x.T)
        d2 = d2.clamp_(min=MIN_DISTANCE_A ** 2)
        close = (d2 < self.near2).to(self.dtype)
        inv2 = d2.reciprocal().mul_(close)
        inv6 = inv2 * inv2 * inv2
        # the pair potential less its shift and less the far part's quadratic continuation c0 + c1 r^2
        lj = (inv6 * inv6) @ self.a12[idx] - inv6 @ self.b6[idx] - close @ self.shift_c0[idx] \
            - (d2 * close) @ self.c1[idx]
        if not alpha:
            return lj, None
        r = d2.sqrt_()
        kernel = torch.erfc(r * alpha).div_(r).mul_(close)
        return lj, (kernel @ self.q[idx]) * COULOMB_K_A


class _Tiles:
    """The grid cut into blocks of about ``edge`` A per side: per block its slice of the grid, its centre
    (Cartesian, float64), its nodes' offsets from that centre and its radius. Blocks of one size share one
    tensor of offsets: the grid is regular, so only the centre moves."""

    def __init__(self, lattice: np.ndarray, shape: tuple[int, int, int], edge: float, dtype, device) -> None:
        steps = [max(1, int(round(edge / (np.linalg.norm(v) / n)))) for v, n in zip(lattice, shape)]
        starts = [range(0, n, step) for n, step in zip(shape, steps)]
        local: dict[tuple[int, int, int], tuple[torch.Tensor, np.ndarray, float]] = {}
        self.slices, self.offsets, centres, radii = [], [], [], []
        for corner in np.stack(np.meshgrid(*starts, indexing="ij"), -1).reshape(-1, 3):
            size = tuple(int(min(st, n - c)) for st, n, c in zip(steps, shape, corner))
            if size not in local:
                ijk = np.stack(np.meshgrid(*[np.arange(m) for m in size], indexing="ij"), -1).reshape(-1, 3)
                cart = (ijk / np.array(shape)) @ lattice
                mid = cart.mean(0)
                local[size] = (torch.as_tensor(cart - mid, dtype=dtype, device=device), mid,
                               float(np.linalg.norm(cart - mid, axis=1).max()))
            offsets, mid, radius = local[size]
            self.slices.append(tuple(slice(int(c), int(c) + m) for c, m in zip(corner, size)))
            self.offsets.append(offsets)
            centres.append((corner / np.array(shape)) @ lattice + mid)
            radii.append(radius)
        self.centres, self.radii = np.array(centres), np.array(radii)
