"""Orientations for ``cg_assembly``: rotations (and small shifts) of the beads that make every BB's
connection points (CPs) meet a CP of a neighbouring BB, after MOFDiff (Fu et al., 2023).

0. Guess: each bead's CPs pointed at its nearest neighbouring beads (as pormake's locator fits a BB to a
   net's node). This guess is restart 0; the other restarts start from random rotations.
1. Anneal (numpy, all restarts in one batch): each bead has a rotation (a unit quaternion) and
   a small translation, penalised, because sampled beads are noisy. A Gaussian overlap pulls CPs of
   different beads together over periodic images (every image within reach, so small cells work); its
   width shrinks from wide to narrow so that distant CPs feel each other first and the end is sharp.
   The overlap is saturated per CP, so three CPs in a cluster are no better than a pair.
2. Pair: CPs are matched one to one, greedily by distance, up to ``pair_threshold``. Configurations
   rank by unpaired CPs (each X is a bond), then whether the bonded net is 3-periodic (small cells admit
   pairings that make layers), then squared gaps plus squared bead movements. While the best has bad
   beads (an unpaired CP or a gap over ``repair_gap``), those beads and some neighbours are redrawn
   and annealed again (``repair_rounds``).
3. Refine: with the pairing fixed, alternating orthogonal Procrustes fits move each bead's CPs onto the
   midpoints of its pairs, so the X's coincide as in pormake's output.
3b. Once the atoms are placed, each node is turned, among the rotations that keep its CPs in place, to
   the one that clashes least (``_choose_node_symmetries``).

The settings are ``cg_assembly.CGAssemblySettings``; orientations are proper rotations unless
``allow_reflection`` lets a BB with a chiral CP set be mirrored (hand -1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pymatgen.core import Lattice

from ..elements import covalent_radius
from ..orient import SEARCH_MARGIN_A, _min_ratio, _neighbours
from .cg_beads import _Beads, _cp_symmetries, _frames, _Pairs

if TYPE_CHECKING:
    from .cg_assembly import CGAssemblySettings, _PlacedBB


SATURATION = 2.0  # a CP's overlap f scores 1 - exp(-2 f): 0.86 for one exact partner, 0.98 for two
MIRROR_MARGIN = 0.05  # the first guess mirrors a chiral BB only when its CPs then point this much better


# ---- 0. a first guess: CPs towards the neighbouring beads -----------------------------------------


def _locate(beads: _Beads, pairs: _Pairs, allow_reflection: bool) -> tuple[np.ndarray, np.ndarray]:
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
        ratio = np.linalg.norm(vectors[mine], axis=1) / (beads.arms[i] + beads.arms[other[mine]])
        u = vectors[mine][np.argsort(ratio)[: 2 * len(v) + 2]]
        rotation, score = _point_at(v, u)
        if allow_reflection and beads.chiral[i]:
            mirrored, mirrored_score = _point_at(v * np.array([1.0, 1.0, -1.0]), u)
            if mirrored_score > score + MIRROR_MARGIN:
                rotation, hand[i] = mirrored, -1.0
        q[i] = _matrix_quaternion(rotation)
    return q, hand


def _point_at(v: np.ndarray, u: np.ndarray, max_angle_mismatch: float = 0.5) -> tuple[np.ndarray, float]:
    """Rotation R maximising sum_k max_a cos(R v_k, u_a), over the rotations that take one CP exactly
    onto a direction and a second CP into the plane of another direction."""
    vh = v / np.linalg.norm(v, axis=1, keepdims=True)
    uh = u / np.linalg.norm(u, axis=1, keepdims=True)
    k1 = int(np.argmax(np.linalg.norm(v, axis=1)))
    partners = np.nonzero(np.linalg.norm(np.cross(vh[k1], vh), axis=1) > 0.1)[0]
    if not len(partners):  # collinear CPs (a linker): the spin about the axis is free, any frame will do
        frames_v = _frames(vh[[k1]], _perpendicular(vh[[k1]]))
        frames_u = _frames(uh, _perpendicular(uh))
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
        k2s, xs, ys = partners[which], a[pair], b[pair]
        frames_v = _frames(np.repeat(vh[[k1]], len(k2s), 0), vh[k2s])
        frames_u = _frames(uh[xs], uh[ys])
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
class _State:
    """A batch of configurations: unit quaternions (R x B x 4), hands (R x B, -1 = mirrored library BB)
    and translations (R x B x 3)."""

    q: np.ndarray
    hand: np.ndarray
    t: np.ndarray

    def orientations(self) -> np.ndarray:
        """Orthogonal R D per restart and bead, D = diag(1, 1, hand): the mirror acts in the library frame."""
        rot = _quaternion_matrix(self.q)
        return rot * np.stack([np.ones_like(self.hand), np.ones_like(self.hand), self.hand], -1)[:, :, None, :]


def _random_state(beads: _Beads, settings: CGAssemblySettings, rng: np.random.Generator) -> _State:
    n, b = settings.restarts, len(beads.bbs)
    q = rng.normal(size=(n, b, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)  # uniform random rotations
    hand = np.ones((n, b))
    if settings.allow_reflection:  # chiral BBs start in a random hand
        hand[beads.chiral[None] & (rng.random((n, b)) < 0.5)] = -1.0
    return _State(q, hand, np.zeros((n, b, 3)))


def _initial_state(beads: _Beads, pairs: _Pairs, settings: CGAssemblySettings, rng: np.random.Generator) -> _State:
    """Restart 0 starts from the neighbour-direction guess, the others from random orientations."""
    state = _random_state(beads, settings, rng)
    q, hand = _locate(beads, pairs, settings.allow_reflection)
    state.q[0], state.hand[0] = q, hand
    return state


class _Overlap:
    """The annealing loss of a batch of configurations and its gradient, written out by hand: on these
    small arrays numpy runs an optimisation step several times faster than torch's autograd (whose
    per-operation overhead dominated the assembly's CPU time)."""

    def __init__(self, beads: _Beads, pairs: _Pairs, hand: np.ndarray, translation_weight: float):
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


def _anneal(beads: _Beads, pairs: _Pairs, state: _State, steps: int, sigma_start: float,
            settings: CGAssemblySettings) -> _State:
    """Adam (as torch.optim.Adam with its defaults) on the Gaussian overlap of candidate CP pairs, its
    width shrinking geometrically."""
    loss = _Overlap(beads, pairs, state.hand, settings.translation_weight)
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
    return _State(q / np.linalg.norm(q, axis=-1, keepdims=True), state.hand, t)


@dataclass(frozen=True)
class _Fit:
    """One configuration with its greedy pairing."""

    q: np.ndarray  # B x 4
    hand: np.ndarray  # B
    t: np.ndarray  # B x 3
    orientation: np.ndarray  # B x 3 x 3
    chosen: np.ndarray  # indices into the candidate pairs
    n_unpaired: int
    flat: int  # 3 minus the periodic dimension of the bonded bead net (its least periodic component)
    misfit: float  # sum of squared pair distances plus squared bead movements (A^2)

    @property
    def score(self) -> tuple[int, int, float]:
        """Fewest unpaired CPs first, a net periodic in 3D next (small cells admit pairings that make
        layers), then the tightest pairs for the least movement of the beads."""
        return (self.n_unpaired, self.flat, self.misfit)


def _search(beads: _Beads, pairs: _Pairs, settings: CGAssemblySettings, rng: np.random.Generator) -> list[_Fit]:
    """Anneal a batch of restarts, then repair the best: its bad beads (see ``_bad_beads``) and some of
    their neighbours start again from random orientations while the rest keep theirs, until every CP
    is paired into a 3-periodic net with no pair wider than ``repair_gap``. Returns the distinct
    configurations found, best first."""
    state = _initial_state(beads, pairs, settings, rng)
    # The neighbour-direction guess competes as it is: annealing may trade a complete pairing with
    # uniform gaps (a linker slightly too long) for a tighter but incomplete one.
    fits = _evaluate(beads, pairs, _State(state.q[:1], state.hand[:1], state.t[:1]), settings.pair_threshold)
    for round_ in range(1 + settings.repair_rounds):
        first = round_ == 0
        state = _anneal(beads, pairs, state, settings.steps if first else settings.repair_steps,
                        settings.sigma_start if first else settings.repair_sigma_start, settings)
        fits = sorted(fits + _evaluate(beads, pairs, state, settings.pair_threshold), key=lambda f: f.score)
        if fits[0].score[:2] == (0, 0) and not _bad_beads(beads, pairs, fits[0], settings).any():
            break
        state = _repair_state(beads, pairs, fits[0], settings, rng)
    return _distinct(beads, fits)


def _distinct(beads: _Beads, fits: list[_Fit], tol: float = 0.3) -> list[_Fit]:
    """Drop configurations that put every bead's CPs where a better one already put them."""
    kept, positions = [], []
    for fit in fits:
        p = _cp_positions(beads, fit.orientation, fit.t)
        if not any(_same_cps(beads, p, q, tol) for q in positions):
            kept.append(fit)
            positions.append(p)
    return kept


def _same_cps(beads: _Beads, p: np.ndarray, q: np.ndarray, tol: float) -> bool:
    """Whether every bead's CPs in p lie within tol of its CPs in q, in any order."""
    table = beads.cp_table
    padded = np.where(table >= 0, table, len(p))
    pp = np.vstack([p, np.zeros(3)])[padded]  # B x K x 3
    qq = np.vstack([q, np.full(3, 1e9)])[padded]  # padding far away, never the nearest
    d = np.linalg.norm(pp[:, :, None] - qq[:, None], axis=-1).min(axis=2)  # each CP to the nearest of q
    return bool(np.where(table >= 0, d, 0.0).max() < tol)


def _evaluate(beads: _Beads, pairs: _Pairs, state: _State, threshold: float) -> list[_Fit]:
    fits = []
    n_cp = len(beads.cp_bead)
    for r, orientation in enumerate(state.orientations()):
        dist = _pair_distances(_cp_positions(beads, orientation, state.t[r]), pairs)
        chosen = _greedy_pairing(dist, pairs, n_cp, threshold)
        misfit = float((dist[chosen] ** 2).sum() + (state.t[r] ** 2).sum())
        flat = 3 - _net_dimension(len(beads.bbs), beads.cp_bead[pairs.a[chosen]], beads.cp_bead[pairs.b[chosen]],
                                  pairs.image[chosen])
        fits.append(_Fit(state.q[r], state.hand[r], state.t[r], orientation, chosen, n_cp - 2 * len(chosen), flat,
                         misfit))
    return fits


def _net_dimension(n_beads: int, i: np.ndarray, j: np.ndarray, image: np.ndarray) -> int:
    """Periodic dimension of the least periodic connected component of the net whose bonds join bead
    i to bead j translated by ``image`` (in lattice vectors): the rank of its cycles' net translations."""
    neighbours: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(n_beads)]
    for x, y, n in zip(i, j, image):
        neighbours[x].append((y, n))
        neighbours[y].append((x, -n))
    offset = np.full((n_beads, 3), np.iinfo(np.int64).min, dtype=np.int64)
    dimension = 3
    for root in range(n_beads):
        if offset[root, 0] != np.iinfo(np.int64).min:
            continue
        offset[root] = 0
        stack, cycles = [root], []
        while stack:
            x = stack.pop()
            for y, n in neighbours[x]:
                if offset[y, 0] == np.iinfo(np.int64).min:
                    offset[y] = offset[x] + n
                    stack.append(y)
                else:
                    cycles.append(offset[x] + n - offset[y])
        rank = int(np.linalg.matrix_rank(np.array(cycles))) if cycles else 0
        dimension = min(dimension, rank)
    return dimension


def _bad_beads(beads: _Beads, pairs: _Pairs, fit: _Fit, settings: CGAssemblySettings) -> np.ndarray:
    """Beads with an unpaired CP or a CP farther than ``repair_gap`` from its partner."""
    dist = _pair_distances(_cp_positions(beads, fit.orientation, fit.t), pairs)
    unpaired = np.ones(len(beads.cp_bead), dtype=bool)
    unpaired[pairs.a[fit.chosen]] = unpaired[pairs.b[fit.chosen]] = False
    strained = fit.chosen[dist[fit.chosen] > settings.repair_gap]
    bad = np.zeros(len(beads.bbs), dtype=bool)
    bad[beads.cp_bead[unpaired]] = True
    bad[beads.cp_bead[np.concatenate([pairs.a[strained], pairs.b[strained]])]] = True
    return bad


def _repair_state(beads: _Beads, pairs: _Pairs, best: _Fit, settings: CGAssemblySettings,
                  rng: np.random.Generator) -> _State:
    n, b = settings.restarts, len(beads.bbs)
    bad = _bad_beads(beads, pairs, best, settings)
    # A CP is often unpaired because a neighbour took its partner: beads with a CP near an unpaired one.
    dist = _pair_distances(_cp_positions(beads, best.orientation, best.t), pairs)
    near = (dist < settings.repair_reach) & (bad[beads.cp_bead[pairs.a]] | bad[beads.cp_bead[pairs.b]])
    neighbour = np.zeros(b, dtype=bool)
    neighbour[beads.cp_bead[np.concatenate([pairs.a[near], pairs.b[near]])]] = True
    neighbour &= ~bad
    q, hand, t = np.repeat(best.q[None], n, 0), np.repeat(best.hand[None], n, 0), np.repeat(best.t[None], n, 0)
    fresh = _random_state(beads, settings, rng)
    for r in range(n):
        # The first restart redraws only the bad beads, the others also about half of their neighbours.
        # With no bad beads (a complete pairing that makes a layered net), or all of them bad, redraw
        # about half of all beads.
        if bad.any() and not bad.all():
            redo = bad | (neighbour & (rng.random(b) < (0.0 if r == 0 else 0.5)))
        else:
            redo = rng.random(b) < 0.5
        q[r, redo] = fresh.q[r, redo]
        hand[r, redo & beads.chiral] = rng.choice([-1.0, 1.0], int((redo & beads.chiral).sum())) \
            if settings.allow_reflection else 1.0
    return _State(q, hand, t)


# ---- 2. pairing ------------------------------------------------------------------------------------


def _cp_positions(beads: _Beads, orientation: np.ndarray, t: np.ndarray) -> np.ndarray:
    k = beads.cp_bead
    return beads.centres[k] + t[k] + np.einsum("mij,mj->mi", orientation[k], beads.cp_vectors)


def _pair_distances(p: np.ndarray, pairs: _Pairs) -> np.ndarray:
    return np.linalg.norm(p[pairs.b] + pairs.shift - p[pairs.a], axis=1)


def _greedy_pairing(dist: np.ndarray, pairs: _Pairs, n_cp: int, threshold: float) -> np.ndarray:
    """Indices of chosen pairs: closest first, each CP at most once, none beyond the threshold."""
    used = np.zeros(n_cp, dtype=bool)
    chosen = []
    close = np.where(dist <= threshold)[0]
    for k in close[np.argsort(dist[close], kind="stable")]:
        a, b = pairs.a[k], pairs.b[k]
        if not (used[a] or used[b]):
            used[a] = used[b] = True
            chosen.append(k)
    return np.array(chosen, dtype=int)


# ---- 3. refinement ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Bonds:
    """The fixed pairing: CP ``a`` meets CP ``b`` translated by ``shift``."""

    a: np.ndarray
    b: np.ndarray
    shift: np.ndarray

    def gaps(self, p: np.ndarray) -> np.ndarray:
        return np.linalg.norm(p[self.b] + self.shift - p[self.a], axis=1)

    def relabel(self, new_index: np.ndarray) -> "_Bonds":
        return _Bonds(new_index[self.a], new_index[self.b], self.shift)


def _refine(beads: _Beads, orientation: np.ndarray, t: np.ndarray, bonds: _Bonds,
            settings: CGAssemblySettings) -> tuple[np.ndarray, np.ndarray]:
    """Alternating Procrustes: every bead fits its paired CPs onto the midpoints of their pairs."""
    a, b, shift = bonds.a, bonds.b, bonds.shift
    n_cp = len(beads.cp_bead)
    weight = np.zeros(n_cp)
    weight[a] = weight[b] = 1.0
    table = np.where(beads.cp_table >= 0, beads.cp_table, n_cp)  # padding points at a zero-weight dummy
    w = np.append(weight, 0.0)[table]  # B x K
    v = np.vstack([beads.cp_vectors, np.zeros(3)])[table]  # B x K x 3
    w_sum = w.sum(1)
    v_mean = (w[..., None] * v).sum(1) / np.maximum(w_sum, 1e-12)[:, None]
    may_reflect = beads.chiral & settings.allow_reflection
    # A little pull towards the current orientation picks, among equally good fits, the nearest one:
    # a linker's spin about its axis is not fixed by its two CPs.
    keep_close = 1e-3 * (w[..., None] * v ** 2).sum((1, 2))
    p = _cp_positions(beads, orientation, t)
    for _ in range(settings.refine_iterations):
        target = np.zeros((n_cp + 1, 3))
        mid = 0.5 * (p[a] + p[b] + shift)
        target[a], target[b] = mid, mid - shift
        y = target[table]  # B x K x 3
        y_mean = (w[..., None] * y).sum(1) / np.maximum(w_sum, 1e-12)[:, None]
        h = np.einsum("bk,bki,bkj->bij", w, y - y_mean[:, None], v - v_mean[:, None])
        orientation = _procrustes(h + keep_close[:, None, None] * orientation, may_reflect, orientation)
        # Best translation for this orientation, penalised towards the sampled bead position.
        placed = beads.centres[:, None] + np.einsum("bij,bkj->bki", orientation, v)
        t = (w[..., None] * (y - placed)).sum(1) / (w_sum + settings.refine_translation_weight)[:, None]
        new = _cp_positions(beads, orientation, t)
        moved = np.abs(new - p).max()
        p = new
        if moved < settings.refine_tolerance:
            break
    return orientation, t


def _procrustes(h: np.ndarray, may_reflect: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Orthogonal O maximising tr(O^T h) per bead: proper unless the bead may reflect (then the better hand)."""
    u, _, vt = np.linalg.svd(h)
    d = np.where(np.linalg.det(u @ vt) < 0, -1.0, 1.0)
    d = np.where(may_reflect, 1.0, d)  # 1: the unconstrained best; d: Kabsch's proper correction
    fix = np.ones((len(h), 3))
    fix[:, 2] = d
    out = np.einsum("bij,bj,bjk->bik", u, fix, vt)
    # Beads without paired CPs (h == 0) keep their orientation; proper ones stay proper.
    dead = np.abs(h).sum((1, 2)) < 1e-12
    out[dead] = current[dead]
    return out


# ---- 3b. nodes whose CP set is more symmetric than their atoms ------------------------------------


def _choose_node_symmetries(beads: _Beads, placed: list["_PlacedBB"], orientation: np.ndarray,
                            t: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """For each node, among the rotations that leave its CPs in place, the one whose atoms keep
    farthest (relative to covalent radii) from every other atom, as orient.py spins linkers.
    Returns the new orientations, the CP relabelling (old CP index -> new) and how many nodes turned."""
    lat = Lattice(beads.lattice)
    real = [np.array([s != "X" for s in bb.symbols]) for bb in beads.bbs]
    radii = [np.array([covalent_radius(s) for s in bb.atom_symbols]) for bb in beads.bbs]
    orientation = orientation.copy()
    relabel = np.arange(len(beads.cp_bead))
    turned = 0
    for i, bb in enumerate(beads.bbs):
        symmetries = _cp_symmetries(bb)
        if len(symmetries) < 2:
            continue
        env = np.concatenate([np.asarray(pb.atoms.positions)[r] for pb, r in zip(placed, real)])
        owner = np.concatenate([np.full(r.sum(), k) for k, r in enumerate(real)])
        local = (bb.positions - bb.centroid)[real[i]]
        options = [local @ (orientation[i] @ s).T + beads.centres[i] + t[i] for s, _ in symmetries]
        near, near_r = _neighbours(lat, env, np.concatenate(radii), owner == i, np.concatenate(options),
                                   SEARCH_MARGIN_A)
        if len(near) == 0:
            continue
        scores = [_min_ratio(x, radii[i], near, near_r) for x in options]
        best = int(np.argmax(np.round(scores, 3)))  # ties keep the current orientation
        if best == 0:
            continue
        s, perm = symmetries[best]
        orientation[i] = orientation[i] @ s
        # CP k now sits where CP perm[k] was, so it takes over that CP's partner.
        cps = beads.cp_table[i][: len(perm)]
        relabel[cps[perm]] = cps
        placed[i].atoms.positions = (bb.positions - bb.centroid) @ orientation[i].T + beads.centres[i] + t[i]
        turned += 1
    return orientation, relabel, turned
