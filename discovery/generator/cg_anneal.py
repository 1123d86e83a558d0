"""Steps 0 and 1 of ``cg_orient``'s orientation search (its module docstring describes all the steps): a
first guess that points each bead's connection points (CPs) at its nearest neighbouring beads, and the
annealing of a batch of restarts, each bead a rotation (unit quaternion), a hand and a small translation,
on a saturated Gaussian overlap of CPs whose width shrinks (Adam, gradients written out in numpy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from discovery.generator.cg_beads import Beads, cp_frames, Pairs

if TYPE_CHECKING:
    from discovery.generator.cg_assembly import CGAssemblySettings


SATURATION = 2.0  # a CP's overlap f scores 1 - exp(-2 f): 0.86 for one exact partner, 0.98 for two
MIRROR_MARGIN = 0.05  # the first guess mirrors a chiral BB only when its CPs then point this much better


# ---- 0. a first guess: CPs towards the neighbouring beads -----------------------------------------


def _locate(beads: Beads, pairs: Pairs, allow_reflection: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per bead, the rotation (unit quaternion, w first) and hand that point its CPs best at the
    directions of its nearest neighbouring beads, as pormake's locator fits a BB to a net's node."""
    c = beads.centres
    to_j = c[pairs.bead_j] + pairs.bead_shift - c[pairs.bead_i]
    owner = np.concatenate([pairs.bead_i, pairs.bead_j])
    other = np.concatenate([pairs.bead_j, pairs.bead_i])
    vectors = np.concatenate([to_j, -to_j])
    q = np.tile([1.0, 0.0, 0.0, 0.0], (len(c), 1))
    hand = np.ones(len(c))
    for i in range(len(c)):
        v = beads.cp_vectors[beads.cp_table[i][beads.cp_table[i] >= 0]]
        mine = owner == i
        if not mine.any():
            continue
        # The nearest neighbours relative to how far the two beads' arms reach.
        # (floored: two one-point units of a real MOF have arms of zero)
        ratio = np.linalg.norm(vectors[mine], axis=1) / np.maximum(beads.arms[i] + beads.arms[other[mine]], 1e-6)
        u = vectors[mine][np.argsort(ratio)[: 2 * len(v) + 2]]
        rotation, score = _point_at(v, u)
        if allow_reflection and beads.chiral[i]:
            mirrored, mirrored_score = _point_at(v * np.array([1.0, 1.0, -1.0]), u)
            if mirrored_score > score + MIRROR_MARGIN:
                rotation, hand[i] = mirrored, -1.0
        q[i] = _matrix_quaternion(rotation)
    return q, hand


MAX_SCORED = 20_000_000  # candidate frames x CPs x directions scored by the neighbour-direction guess


def _point_at(v: np.ndarray, u: np.ndarray, max_angle_mismatch: float = 0.5) -> tuple[np.ndarray, float]:
    """Rotation R maximising sum_k max_a cos(R v_k, u_a), over the rotations that take one CP exactly
    onto a direction and a second CP into the plane of another direction."""
    v, u = v[np.linalg.norm(v, axis=1) > 1e-8], u[np.linalg.norm(u, axis=1) > 1e-8]
    if not len(v) or not len(u):  # a one-point unit of a real MOF (its CP is its centre): any rotation will do
        return np.eye(3), 0.0
    vh = v / np.linalg.norm(v, axis=1, keepdims=True)
    uh = u / np.linalg.norm(u, axis=1, keepdims=True)
    k1 = int(np.argmax(np.linalg.norm(v, axis=1)))
    partners = np.nonzero(np.linalg.norm(np.cross(vh[k1], vh), axis=1) > 0.1)[0]
    if not len(partners):  # collinear CPs (a linker): the spin about the axis is free, any frame will do
        frames_v = cp_frames(vh[[k1]], _perpendicular(vh[[k1]]))
        frames_u = cp_frames(uh, _perpendicular(uh))
    else:
        na = len(uh)
        a, b = np.nonzero(~np.eye(na, dtype=bool))
        ok = np.linalg.norm(np.cross(uh[a], uh[b]), axis=1) > 0.1
        a, b = a[ok], b[ok]
        # only direction pairs that make about the same angle as the two CPs
        angle_u = np.arccos(np.clip((uh[a] * uh[b]).sum(1), -1, 1))
        angle_v = np.arccos(np.clip(vh[partners] @ vh[k1], -1, 1))
        which, pair = np.nonzero(np.abs(angle_v[:, None] - angle_u[None, :]) < max_angle_mismatch)
        if not len(which):
            return np.eye(3), -np.inf
        # a real MOF's rod unit has ~100 CPs and as many neighbour directions: ~10^6 candidate frames, whose
        # scoring below would need hundreds of GB. An evenly spaced subset bounds the work (the guess only
        # seeds the annealing) and keeps it deterministic
        most = max(64, MAX_SCORED // (len(vh) * len(uh)))
        if len(which) > most:
            keep = np.linspace(0, len(which) - 1, most).astype(int)
            which, pair = which[keep], pair[keep]
        k2s, xs, ys = partners[which], a[pair], b[pair]
        frames_v = cp_frames(np.repeat(vh[[k1]], len(k2s), 0), vh[k2s])
        frames_u = cp_frames(uh[xs], uh[ys])
    rotations = np.einsum("cji,cjk->cik", frames_u, frames_v)  # F_u^T F_v: v frame onto u frame
    cosines = np.einsum("ckj,aj->cka", np.einsum("cij,kj->cki", rotations, vh), uh)
    scores = cosines.max(axis=2).sum(axis=1)
    best = int(np.argmax(scores))
    return rotations[best], float(scores[best])


def _perpendicular(x: np.ndarray) -> np.ndarray:
    """A vector perpendicular to each row of x (N x 3)."""
    helper = np.eye(3)[np.argmin(np.abs(x), axis=1)]
    return np.cross(x, helper)


def _matrix_quaternion(rotation: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(rotation).as_quat()
    return np.array([w, x, y, z])


# ---- 1. annealed Gaussian overlap -----------------------------------------------------------------


def _quaternion_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (... x 3 x 3) of quaternions (... x 4, w first; normalised here)."""
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return np.stack(rows, -1).reshape(q.shape[:-1] + (3, 3))


def _quaternion_matrix_jacobian(u: np.ndarray) -> np.ndarray:
    """d R_ij / d u_c at unit quaternions ``u`` (... x 4): ... x 3 x 3 x 4, from the entries above."""
    w, x, y, z = np.moveaxis(2 * u, -1, 0)
    jac = np.zeros(u.shape[:-1] + (9, 4))
    for row, entries in enumerate([((2, -2 * y), (3, -2 * z)), ((0, -z), (1, y), (2, x), (3, -w)),
                                   ((0, y), (1, z), (2, w), (3, x)), ((0, z), (1, y), (2, x), (3, w)),
                                   ((1, -2 * x), (3, -2 * z)), ((0, -x), (1, -w), (2, z), (3, y)),
                                   ((0, -y), (1, z), (2, -w), (3, x)), ((0, x), (1, w), (2, z), (3, y)),
                                   ((1, -2 * x), (2, -2 * y))]):
        for c, value in entries:
            jac[..., row, c] = value
    return jac.reshape(u.shape[:-1] + (3, 3, 4))


@dataclass(frozen=True)
class State:
    """A batch of configurations: unit quaternions (R x B x 4), hands (R x B, -1 = mirrored library BB)
    and translations (R x B x 3)."""

    q: np.ndarray
    hand: np.ndarray
    t: np.ndarray

    def orientations(self) -> np.ndarray:
        """Orthogonal R D per restart and bead, D = diag(1, 1, hand): the mirror acts in the library frame."""
        rot = _quaternion_matrix(self.q)
        return rot * np.stack([np.ones_like(self.hand), np.ones_like(self.hand), self.hand], -1)[:, :, None, :]


def random_state(beads: Beads, settings: CGAssemblySettings, rng: np.random.Generator) -> State:
    n, b = settings.restarts, len(beads.bbs)
    q = rng.normal(size=(n, b, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)  # uniform random rotations
    hand = np.ones((n, b))
    if settings.allow_reflection:  # chiral BBs start in a random hand
        hand[beads.chiral[None] & (rng.random((n, b)) < 0.5)] = -1.0
    return State(q, hand, np.zeros((n, b, 3)))


def initial_state(beads: Beads, pairs: Pairs, settings: CGAssemblySettings, rng: np.random.Generator,
                  hints: Sequence[np.ndarray | None] | None = None) -> State:
    """Restart 0 starts from the neighbour-direction guess, the others from random orientations.
    ``hints``: per bead a known orientation (3 x 3, library frame -> placed; None: unknown), e.g. a decomposed
    MOF's own: restart 0 takes them in place of the guess for those beads."""
    state = random_state(beads, settings, rng)
    q, hand = _locate(beads, pairs, settings.allow_reflection)
    for i, rotation in enumerate(hints or ()):
        if rotation is None:
            continue
        rotation = np.asarray(rotation, dtype=float)
        if np.linalg.det(rotation) < 0:  # a mirrored unit: orientation = R diag(1, 1, -1), see State
            rotation, hand[i] = rotation * np.array([1.0, 1.0, -1.0]), -1.0
        q[i] = _matrix_quaternion(rotation)
    state.q[0], state.hand[0] = q, hand
    return state


class Overlap:
    """The annealing loss of a batch of configurations and its gradient, written out by hand: on these
    small arrays numpy runs an optimisation step several times faster than torch's autograd (whose
    per-operation overhead dominated the assembly's CPU time)."""

    def __init__(self, beads: Beads, pairs: Pairs, hand: np.ndarray, translation_weight: float):
        self.cp_bead, self.a, self.b, self.shift = beads.cp_bead, pairs.a, pairs.b, pairs.shift
        self.centres = beads.centres[beads.cp_bead]
        mirror = np.ones(hand.shape + (3,))
        mirror[..., 2] = hand
        self.vectors = beads.cp_vectors * mirror[:, beads.cp_bead]  # R x M x 3
        self.starts = np.searchsorted(beads.cp_bead, np.arange(len(beads.bbs)))  # cp_bead is sorted
        self.weight = translation_weight

    def __call__(self, q: np.ndarray, t: np.ndarray, sigma: float) -> tuple[float, np.ndarray, np.ndarray]:
        """Loss (minus the saturated overlap plus the translation penalty) and its gradients in q and t."""
        norm = np.linalg.norm(q, axis=-1, keepdims=True)
        u = q / norm
        rot = _quaternion_matrix(u)  # R x B x 3 x 3
        p = self.centres + t[:, self.cp_bead] + np.einsum("rmij,rmj->rmi", rot[:, self.cp_bead], self.vectors)
        d = p[:, self.b] + self.shift - p[:, self.a]  # R x P x 3
        g = np.exp(-(d * d).sum(-1) / (2 * sigma ** 2))
        # Overlap per CP, saturated: a CP gains little from a second partner, so a cluster of three CPs
        # scores no better per CP than a pair, and one-to-one pairings win.
        f = np.zeros(p.shape[:2])
        for end in (self.a, self.b):
            f += _scatter(g, end, p.shape[1])
        saturated = np.exp(-SATURATION * f)
        # Restarts are independent, so one summed loss optimises them all.
        loss = -(1 - saturated).sum() + self.weight * (t * t).sum()
        df = -SATURATION * saturated  # R x M
        dd = ((df[:, self.a] + df[:, self.b]) * g * (-1 / sigma ** 2))[..., None] * d  # R x P x 3
        dp = _scatter(dd, self.b, p.shape[1]) - _scatter(dd, self.a, p.shape[1])  # R x M x 3
        dt = np.add.reduceat(dp, self.starts, axis=1) + 2 * self.weight * t
        drot = np.add.reduceat(dp[..., :, None] * self.vectors[..., None, :], self.starts, axis=1)  # R x B x 3 x 3
        du = np.einsum("rbij,rbijc->rbc", drot, _quaternion_matrix_jacobian(u))
        dq = (du - u * (u * du).sum(-1, keepdims=True)) / norm  # through the normalisation
        return float(loss), dq, dt


def _scatter(x: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    """out[:, index[k]] += x[:, k] for x of shape R x P (x 3), out of shape R x n (x 3)."""
    r = x.shape[0]
    flat = (np.arange(r)[:, None] * n + index).ravel()
    columns = x.reshape(r * len(index), -1).T
    out = np.stack([np.bincount(flat, weights=c, minlength=r * n) for c in columns], -1)
    return out.reshape((r, n) + x.shape[2:])


def anneal(beads: Beads, pairs: Pairs, state: State, steps: int, sigma_start: float,
            settings: CGAssemblySettings) -> State:
    """Adam (as torch.optim.Adam with its defaults) on the Gaussian overlap of candidate CP pairs, its
    width shrinking geometrically."""
    loss = Overlap(beads, pairs, state.hand, settings.translation_weight)
    params = [state.q.copy(), state.t.copy()]
    moments = [[np.zeros_like(x), np.zeros_like(x)] for x in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step, sigma in enumerate(np.geomspace(sigma_start, settings.sigma_end, steps), start=1):
        _, *grads = loss(*params, sigma)
        for x, grad, (m, v) in zip(params, grads, moments):
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad * grad
            denom = np.sqrt(v) / math.sqrt(1 - beta2 ** step) + eps
            x -= settings.learning_rate / (1 - beta1 ** step) * m / denom
    q, t = params
    return State(q / np.linalg.norm(q, axis=-1, keepdims=True), state.hand, t)
