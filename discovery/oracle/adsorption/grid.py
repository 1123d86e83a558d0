"""Energy grids of a rigid framework: what the grid Widom engine (``widom``) inserts guests into.

Per structure, once: the Lennard-Jones energy of each guest site type and the electrostatic potential of the
framework's charges on a periodic grid over the unit cell (fractional nodes i/n). The protocol is RASPA3's
(``raspa.protocol``): UFF + TraPPE, Lorentz-Berthelot, 12.8 A cutoff, shifted, no tail corrections, Ewald.

- Lennard-Jones: each pair potential is split at ``near_A`` (5 A). The near part is a direct sum on the fine
  grid, one dense block of nodes against the atoms near it (a k-d tree finds them), written as matrix
  products so that BLAS (or CUDA) does the work. The far part is smooth by construction, so it is summed
  over every image within the cutoff on a coarse grid and Fourier-resampled (``energy_grids``).
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
BLOCK_A = 4.5  # edge of the blocks of coarse-grid points summed at once (fine grid: near_A / 2.5)


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
    far_spacing_A: float = 0.5  # the smooth rest of the Lennard-Jones sum: on a coarse grid, Fourier-resampled
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
    return tuple(int(math.ceil(np.linalg.norm(v) / spacing)) for v in lattice)  # type: ignore[return-value]


def site_types(sites: Sequence[Site]) -> dict[str, Site]:
    """The distinct Lennard-Jones site types of the guests (a massless charge site has none)."""
    return {s.name: s for s in sites if s.lj is not None}


def energy_grids(fw: Framework, sites: Sequence[Site], settings: GridSettings = GridSettings()) -> EnergyGrids:
    """The grids of ``fw`` for every Lennard-Jones site type among ``sites`` (and the potential when charged).

    Cost is what a screening engine cannot afford to waste: each pair potential is split at ``near_A`` into
    a near part (exact, fine grid, few neighbours) and a far part that is smooth by construction (the
    potential beyond ``near_A``, continued inside it by a quadratic in r^2 matching its value and slope),
    summed over every image within the cutoff on a coarse grid and Fourier-resampled onto the fine one.
    The Coulomb potential splits the same way, Ewald's own way: erfc near, reciprocal space by FFT."""
    t0 = time.process_time()
    dev, dt = torch.device(settings.device), getattr(torch, settings.dtype)
    shape = grid_shape(fw.lattice, settings.spacing_A)
    far_shape = grid_shape(fw.lattice, max(settings.spacing_A, settings.far_spacing_A))
    types = site_types(sites)
    near = min(settings.near_A, settings.cutoff_A)
    alpha = ewald_alpha(near, settings.ewald_precision)
    pair = _PairTables(fw, types, settings.cutoff_A, near, dt, dev)
    lj_near, real = _sum_on_grid(fw, pair, shape, near, near / 2.5, alpha if fw.charged else 0.0, "near")
    lj_far, _ = _sum_on_grid(fw, pair, far_shape, settings.cutoff_A, BLOCK_A, 0.0, "far")
    lj = {name: (lj_near[..., k] + _resample(lj_far[..., k], shape)).clamp_(max=CAP_K)
          for k, name in enumerate(types)}
    potential = None
    if fw.charged:
        potential = real + reciprocal_potential(fw, shape, alpha, settings.ewald_precision, dt, dev)
    return EnergyGrids(fw, settings, shape, lj, potential, time.process_time() - t0)


def _sum_on_grid(fw: Framework, pair: "_PairTables", shape: tuple[int, int, int], reach: float, block: float,
                 alpha: float, part: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(nodes..., types) Lennard-Jones ``part`` and, when ``alpha``, the real-space Ewald potential."""
    lj = torch.empty((*shape, len(pair.types)), dtype=pair.dtype, device=pair.device)
    real = torch.zeros(shape, dtype=pair.dtype, device=pair.device) if alpha else None
    images = _ImageAtoms(fw, reach + block)
    for sl, points in _blocks(fw.lattice, shape, block, pair.dtype, pair.device):
        nearby = images.near(points, reach)
        energies, phi = pair.block(points, images.cart[nearby], images.atom[nearby], part, alpha)
        lj[sl] = energies.reshape(*lj[sl].shape)
        if real is not None:
            real[sl] = phi.reshape(real[sl].shape)
    return lj, real


def _resample(grid: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """A smooth periodic grid on a finer one: its Fourier coefficients, zero-padded (exact for a field with
    no higher frequencies; the far part has none to speak of). Real FFTs: half the spectrum, half the cost."""
    if tuple(grid.shape) == tuple(shape):
        return grid
    coef = torch.fft.rfftn(grid)
    out = torch.zeros((*shape[:2], shape[2] // 2 + 1), dtype=coef.dtype, device=grid.device)
    keep = [(n - 1) // 2 for n in grid.shape]  # frequencies -k..k of each axis (an even grid's Nyquist dropped)
    for corner in np.ndindex(2, 2):
        src = tuple(slice(0, k + 1) if c == 0 else slice(n - k, n) for c, k, n in zip(corner, keep, grid.shape))
        dst = tuple(slice(0, k + 1) if c == 0 else slice(m - k, m) for c, k, m in zip(corner, keep, shape))
        out[(*dst, slice(0, keep[2] + 1))] = coef[(*src, slice(0, keep[2] + 1))]
    scale = float(np.prod(shape)) / float(np.prod(grid.shape))
    return torch.fft.irfftn(out, s=shape) * scale


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
    # S(h) = sum_j q_j exp(-2 pi i h.f_j) for every h in the box |h_0|, |h_1| <= hmax, 0 <= h_2 <= hmax_2 (the
    # potential is real: the other half is the complex conjugate, which the inverse real FFT supplies), as
    # two matrix products over separable phases (the k-vectors are many when the real-space part is short)
    ranges = [np.arange(-hmax[0], hmax[0] + 1), np.arange(-hmax[1], hmax[1] + 1), np.arange(0, hmax[2] + 1)]
    e = [np.exp(-2j * np.pi * np.outer(r, fw.frac[:, d])) for d, r in enumerate(ranges)]
    ab = (e[0][:, None, :] * e[1][None, :, :] * fw.charges).reshape(-1, len(fw.charges))
    S = (ab @ e[2].T).reshape(*(len(r) for r in ranges))
    H = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1)
    k = H @ recip
    k2 = np.einsum("...i,...i->...", k, k)
    keep = (k2 > 0) & (k2 <= kmax * kmax)
    H, k2, S = H[keep], k2[keep], S[keep]
    coef = np.zeros((shape[0], shape[1], shape[2] // 2 + 1), dtype=complex)
    coef[H[:, 0] % shape[0], H[:, 1] % shape[1], H[:, 2]] = (
        4.0 * np.pi / fw.volume_A3 * np.exp(-k2 / (4 * alpha * alpha)) / k2 * S)
    # phi(x_n) = sum_k c_k exp(+2 pi i h.n / N) = N * ifftn(c); the real inverse FFT reads the h_2 >= 0 half
    complex_dtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    half = torch.as_tensor(coef, dtype=complex_dtype, device=device)
    return torch.fft.irfftn(half, s=shape) * (float(np.prod(shape)) * COULOMB_K_A)


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

    def near(self, points: torch.Tensor, cutoff: float) -> np.ndarray:
        """Indices of the image atoms within ``cutoff`` of any of ``points`` (a compact block)."""
        p = points.detach().cpu().numpy()
        centre = 0.5 * (p.min(axis=0) + p.max(axis=0))
        radius = float(np.linalg.norm(p - centre, axis=1).max())
        return np.asarray(self.tree.query_ball_point(centre, cutoff + radius), dtype=np.int64)


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
        self.a12, self.b6, self.shift, self.c0, self.c1 = map(as_t, (a12, b6, shift, c0, c1))
        self.q = torch.as_tensor(fw.charges, dtype=dtype, device=device)
        self.types, self.cutoff2, self.near2 = list(types), cutoff * cutoff, near * near
        self.dtype, self.device = dtype, device

    def block(self, points: torch.Tensor, cart: np.ndarray, atom: np.ndarray, part: str, alpha: float = 0.0
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(points, types) Lennard-Jones energies (K), ``part`` "near" or "far", and with ``alpha`` the
        real-space Ewald potential (K / e) of the pairs within ``near``."""
        zeros = lambda *shape: torch.zeros(shape, dtype=self.dtype, device=self.device)  # noqa: E731
        if len(atom) == 0:
            return zeros(len(points), len(self.types)), (zeros(len(points)) if alpha else None)
        # centred on the block, so that float32 keeps its digits whatever the cell's size
        centre = points.mean(0)
        points = points - centre
        x = torch.as_tensor(cart, dtype=self.dtype, device=self.device) - centre
        idx = torch.as_tensor(atom, device=self.device)
        # |p - x|^2 through one matrix product (what cdist does); the clamp also absorbs its rounding
        d2 = ((points * points).sum(1)[:, None] + (x * x).sum(1)[None, :] - 2.0 * points @ x.T)
        d2 = d2.clamp_(min=MIN_DISTANCE_A ** 2)
        close = (d2 < self.near2).to(self.dtype)
        inside = (d2 < self.cutoff2).to(self.dtype) - close if part == "far" else close
        inv2 = d2.reciprocal().mul_(inside)
        inv6 = inv2 * inv2 * inv2
        lj = (inv6 * inv6) @ self.a12[idx] - inv6 @ self.b6[idx] - inside @ self.shift[idx]
        quadratic = close @ self.c0[idx] + (d2 * close) @ self.c1[idx]
        lj = lj + quadratic if part == "far" else lj - quadratic
        if not alpha:
            return lj, None
        r = d2.sqrt_()
        kernel = torch.erfc(r * alpha).div_(r).mul_(close)
        return lj, (kernel @ self.q[idx]) * COULOMB_K_A


def _blocks(lattice: np.ndarray, shape: tuple[int, int, int], edge: float, dtype, device):
    """(slice of the grid, Cartesian positions of its nodes) for blocks of about ``edge`` A per side."""
    lat = torch.as_tensor(lattice, dtype=dtype, device=device)
    steps = [max(1, int(round(edge / (np.linalg.norm(v) / n)))) for v, n in zip(lattice, shape)]
    for i in range(0, shape[0], steps[0]):
        for j in range(0, shape[1], steps[1]):
            for k in range(0, shape[2], steps[2]):
                sl = (slice(i, min(i + steps[0], shape[0])), slice(j, min(j + steps[1], shape[1])),
                      slice(k, min(k + steps[2], shape[2])))
                axes = [torch.arange(s.start, s.stop, dtype=dtype, device=device) / n for s, n in zip(sl, shape)]
                frac = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
                yield sl, frac @ lat
