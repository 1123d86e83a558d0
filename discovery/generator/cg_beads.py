"""The coarse-grained sample behind ``cg_assembly``: its beads and connection points (CPs) as flat arrays,
the symmetry of a building block's CP set, and the CP pairs that may bond under periodic images.

A BB's CP set may be chiral (no proper rotation maps it onto its mirror image; see ``cg_assembly`` on
reflections), and a node's CP set may be more symmetric than its atoms: ``cp_symmetries`` lists the
proper rotations that keep the CPs in place, which ``cg_orient`` chooses among by the atoms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from discovery.library.building_blocks import BuildingBlock


SYMMETRY_TOL = 0.25  # A: CPs that land within this of each other count as the same


# ---- beads ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Beads:
    """The sample as flat arrays: bead centres (wrapped into the cell) and their CPs."""

    lattice: np.ndarray  # 3 x 3 rows
    centres: np.ndarray  # B x 3, Cartesian
    bbs: tuple[BuildingBlock, ...]
    cp_vectors: np.ndarray  # M x 3: library CP minus library CP centroid
    cp_bead: np.ndarray  # M: bead of each CP
    cp_table: np.ndarray  # B x K: CP indices per bead, -1 padded
    arms: np.ndarray  # B: longest CP arm
    chiral: np.ndarray  # B: CP set has no proper rotation onto its mirror image
    is_edge: np.ndarray  # B


_CHIRAL: dict[str, bool] = {}


def chiral_cp_set(bb: BuildingBlock, tol: float = 0.1) -> bool:
    """Whether no proper rotation (with any relabelling) maps the BB's CPs onto their mirror image."""
    if bb.id not in _CHIRAL:
        v = bb.connection_points - bb.centroid
        _CHIRAL[bb.id] = not _congruent_by_rotation(v, v * np.array([1.0, 1.0, -1.0]), tol)
    return _CHIRAL[bb.id]


def _congruent_by_rotation(v: np.ndarray, w: np.ndarray, tol: float) -> bool:
    """Is there a proper rotation R with v R^T equal to w as point sets (within tol)?"""
    return next(_rotations_onto(v, w, tol), None) is not None


def _rotations_onto(v: np.ndarray, w: np.ndarray, tol: float) -> Iterator[np.ndarray]:
    """Proper rotations R with v R^T equal to w as point sets (within tol): tries every rotation that
    maps an ordered pair of v onto a fixed non-collinear pair of w (collinear w: one rotation)."""
    norms = np.linalg.norm(w, axis=1)
    a = int(np.argmax(norms))
    cross = np.linalg.norm(np.cross(w[a], w), axis=1)
    b = int(np.argmax(cross))
    if cross[b] <= 1e-3 * norms[a] ** 2:  # (<=: CPs all at the centre, a one-point unit of a real MOF)
        yield np.eye(3)  # collinear points: the mirror image is a rotation away, and the spin is free
        return
    target = _frame(w[a], w[b])
    vn = np.linalg.norm(v, axis=1)
    for i in np.where(np.abs(vn - norms[a]) < tol)[0]:
        for j in np.where(np.abs(vn - norms[b]) < tol)[0]:
            if i == j or np.linalg.norm(np.cross(v[i], v[j])) < 1e-6:
                continue
            rotation = target.T @ _frame(v[i], v[j])
            if np.linalg.norm((v @ rotation.T)[:, None] - w[None], axis=2).min(axis=1).max() < tol:
                yield rotation


_SYMMETRIES: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}


def cp_symmetries(bb: BuildingBlock, tol: float = SYMMETRY_TOL) -> list[tuple[np.ndarray, np.ndarray]]:
    """Proper rotations s of a node's CP set, with their permutations (s v_k ~ v_perm[k]); identity first.
    The CPs alone cannot tell these apart, the BB's atoms can. Linkers: identity only (their spin is
    optimised separately)."""
    if bb.id not in _SYMMETRIES:
        v = bb.connection_points - bb.centroid
        found = [(np.eye(3), np.arange(len(v)))]
        if bb.kind != "edge":
            for rotation in _rotations_onto(v, v, tol):
                perm = np.argmin(np.linalg.norm((v @ rotation.T)[:, None] - v[None], axis=2), axis=1)
                if len(set(perm)) == len(v) and not any(np.abs(rotation - r).max() < 1e-3 for r, _ in found):
                    found.append((rotation, perm))
        _SYMMETRIES[bb.id] = found
    return _SYMMETRIES[bb.id]


def _frame(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rows: a right-handed orthonormal frame with x along the first axis and y in the first plane."""
    return cp_frames(x[None], y[None])[0]


def cp_frames(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``_frame`` of each row pair of x and y (N x 3 each): N x 3 x 3."""
    e1 = x / np.linalg.norm(x, axis=1, keepdims=True)
    e2 = y - e1 * (e1 * y).sum(1, keepdims=True)
    e2 = e2 / np.linalg.norm(e2, axis=1, keepdims=True)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=1)


# ---- candidate CP pairs under periodic images ----------------------------------------------------


@dataclass(frozen=True)
class Pairs:
    """CP pairs that may bond: CP ``a`` meets CP ``b`` translated by ``shift`` (Cartesian)."""

    a: np.ndarray
    b: np.ndarray
    shift: np.ndarray  # P x 3
    image: np.ndarray  # P x 3 integers: shift = image @ lattice
    # the bead pairs they come from: bead i meets bead j translated by bead_shift
    bead_i: np.ndarray
    bead_j: np.ndarray
    bead_shift: np.ndarray


def candidate_pairs(beads: Beads, margin: float, edge_edge: bool) -> Pairs:
    lat = beads.lattice
    reach = 2 * beads.arms.max() + margin
    # Lattice planes are |det| / |b x c| apart; wrapped centres differ by less than one cell.
    spacing = abs(np.linalg.det(lat)) / np.linalg.norm(np.cross(lat[[1, 2, 0]], lat[[2, 0, 1]]), axis=1)
    n = np.ceil(reach / spacing).astype(int) + 1
    images = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in n], indexing="ij"), -1).reshape(-1, 3)
    shifts = images @ lat
    c = beads.centres
    dist = np.linalg.norm(c[None, :, None] + shifts[None, None] - c[:, None, None], axis=-1)  # B x B x S
    i, j, s = np.nonzero(dist <= beads.arms[:, None, None] + beads.arms[None, :, None] + margin)
    # Each unordered pair once: i < j with every image, or a bead with its own images on one side.
    positive = np.array([tuple(x) > (0, 0, 0) for x in images])
    keep = (i < j) | ((i == j) & positive[s])
    if not edge_edge:
        keep &= ~(beads.is_edge[i] & beads.is_edge[j])
    i, j, s = i[keep], j[keep], s[keep]
    ka, kb = beads.cp_table[i][:, :, None], beads.cp_table[j][:, None, :]  # T x K x 1, T x 1 x K
    ka, kb = np.broadcast_arrays(ka, kb)
    ss = np.broadcast_to(s[:, None, None], ka.shape)
    ok = (ka >= 0) & (kb >= 0) & (ka != kb)
    return Pairs(a=ka[ok], b=kb[ok], shift=shifts[ss[ok]], image=images[ss[ok]], bead_i=i, bead_j=j,
                  bead_shift=shifts[s])
