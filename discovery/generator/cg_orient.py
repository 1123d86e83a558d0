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
   the one that clashes least (``choose_node_symmetries``).

The settings are ``cg_assembly.CGAssemblySettings``; orientations are proper rotations unless
``allow_reflection`` lets a BB with a chiral CP set be mirrored (hand -1). Steps 0 and 1 (the guess and the
annealing) are in ``cg_anneal``; this module holds the search with its pairing and repair, and steps 2-3b.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
from pymatgen.core import Lattice

from discovery.structures.elements import covalent_radius
from discovery.library.orient import SEARCH_MARGIN_A, min_ratio, environment_images
from discovery.generator.cg_beads import Beads, cp_symmetries, Pairs
from discovery.generator.cg_anneal import State, anneal, initial_state, random_state

if TYPE_CHECKING:
    from discovery.generator.cg_assembly import CGAssemblySettings, PlacedBB


@dataclass(frozen=True)
class Fit:
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


def search(beads: Beads, pairs: Pairs, settings: CGAssemblySettings, rng: np.random.Generator,
           hints: Sequence[np.ndarray | None] | None = None) -> list[Fit]:
    """Anneal a batch of restarts, then repair the best: its bad beads (see ``_bad_beads``) and some of
    their neighbours start again from random orientations while the rest keep theirs, until every CP
    is paired into a 3-periodic net with no pair wider than ``repair_gap``. Returns the distinct
    configurations found, best first."""
    state = initial_state(beads, pairs, settings, rng, hints)
    # The neighbour-direction guess competes as it is: annealing may trade a complete pairing with
    # uniform gaps (a linker slightly too long) for a tighter but incomplete one.
    fits = _evaluate(beads, pairs, State(state.q[:1], state.hand[:1], state.t[:1]), settings.pair_threshold)
    for round_ in range(1 + settings.repair_rounds):
        first = round_ == 0
        state = anneal(beads, pairs, state, settings.steps if first else settings.repair_steps,
                        settings.sigma_start if first else settings.repair_sigma_start, settings)
        fits = sorted(fits + _evaluate(beads, pairs, state, settings.pair_threshold), key=lambda f: f.score)
        if fits[0].score[:2] == (0, 0) and not _bad_beads(beads, pairs, fits[0], settings).any():
            break
        state = _repair_state(beads, pairs, fits[0], settings, rng)
    return _distinct(beads, fits)


def _distinct(beads: Beads, fits: list[Fit], tol: float = 0.3) -> list[Fit]:
    """Drop configurations that put every bead's CPs where a better one already put them."""
    kept, positions = [], []
    for fit in fits:
        p = cp_positions(beads, fit.orientation, fit.t)
        if not any(_same_cps(beads, p, q, tol) for q in positions):
            kept.append(fit)
            positions.append(p)
    return kept


def _same_cps(beads: Beads, p: np.ndarray, q: np.ndarray, tol: float) -> bool:
    """Whether every bead's CPs in p lie within tol of its CPs in q, in any order."""
    table = beads.cp_table
    padded = np.where(table >= 0, table, len(p))
    pp = np.vstack([p, np.zeros(3)])[padded]  # B x K x 3
    qq = np.vstack([q, np.full(3, 1e9)])[padded]  # padding far away, never the nearest
    d = np.linalg.norm(pp[:, :, None] - qq[:, None], axis=-1).min(axis=2)  # each CP to the nearest of q
    return bool(np.where(table >= 0, d, 0.0).max() < tol)


def _evaluate(beads: Beads, pairs: Pairs, state: State, threshold: float) -> list[Fit]:
    fits = []
    n_cp = len(beads.cp_bead)
    for r, orientation in enumerate(state.orientations()):
        dist = _pair_distances(cp_positions(beads, orientation, state.t[r]), pairs)
        chosen = _greedy_pairing(dist, pairs, n_cp, threshold)
        misfit = float((dist[chosen] ** 2).sum() + (state.t[r] ** 2).sum())
        flat = 3 - _net_dimension(len(beads.bbs), beads.cp_bead[pairs.a[chosen]], beads.cp_bead[pairs.b[chosen]],
                                  pairs.image[chosen])
        fits.append(Fit(state.q[r], state.hand[r], state.t[r], orientation, chosen, n_cp - 2 * len(chosen), flat,
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


def _bad_beads(beads: Beads, pairs: Pairs, fit: Fit, settings: CGAssemblySettings) -> np.ndarray:
    """Beads with an unpaired CP or a CP farther than ``repair_gap`` from its partner."""
    dist = _pair_distances(cp_positions(beads, fit.orientation, fit.t), pairs)
    unpaired = np.ones(len(beads.cp_bead), dtype=bool)
    unpaired[pairs.a[fit.chosen]] = unpaired[pairs.b[fit.chosen]] = False
    strained = fit.chosen[dist[fit.chosen] > settings.repair_gap]
    bad = np.zeros(len(beads.bbs), dtype=bool)
    bad[beads.cp_bead[unpaired]] = True
    bad[beads.cp_bead[np.concatenate([pairs.a[strained], pairs.b[strained]])]] = True
    return bad


def _repair_state(beads: Beads, pairs: Pairs, best: Fit, settings: CGAssemblySettings,
                  rng: np.random.Generator) -> State:
    n, b = settings.restarts, len(beads.bbs)
    bad = _bad_beads(beads, pairs, best, settings)
    # A CP is often unpaired because a neighbour took its partner: beads with a CP near an unpaired one.
    dist = _pair_distances(cp_positions(beads, best.orientation, best.t), pairs)
    near = (dist < settings.repair_reach) & (bad[beads.cp_bead[pairs.a]] | bad[beads.cp_bead[pairs.b]])
    neighbour = np.zeros(b, dtype=bool)
    neighbour[beads.cp_bead[np.concatenate([pairs.a[near], pairs.b[near]])]] = True
    neighbour &= ~bad
    q, hand, t = np.repeat(best.q[None], n, 0), np.repeat(best.hand[None], n, 0), np.repeat(best.t[None], n, 0)
    fresh = random_state(beads, settings, rng)
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
    return State(q, hand, t)


# ---- 2. pairing ------------------------------------------------------------------------------------


def cp_positions(beads: Beads, orientation: np.ndarray, t: np.ndarray) -> np.ndarray:
    k = beads.cp_bead
    return beads.centres[k] + t[k] + np.einsum("mij,mj->mi", orientation[k], beads.cp_vectors)


def _pair_distances(p: np.ndarray, pairs: Pairs) -> np.ndarray:
    return np.linalg.norm(p[pairs.b] + pairs.shift - p[pairs.a], axis=1)


def _greedy_pairing(dist: np.ndarray, pairs: Pairs, n_cp: int, threshold: float) -> np.ndarray:
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
class Bonds:
    """The fixed pairing: CP ``a`` meets CP ``b`` translated by ``shift``."""

    a: np.ndarray
    b: np.ndarray
    shift: np.ndarray

    def gaps(self, p: np.ndarray) -> np.ndarray:
        return np.linalg.norm(p[self.b] + self.shift - p[self.a], axis=1)

    def relabel(self, new_index: np.ndarray) -> "Bonds":
        return Bonds(new_index[self.a], new_index[self.b], self.shift)


def refine(beads: Beads, orientation: np.ndarray, t: np.ndarray, bonds: Bonds,
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
    p = cp_positions(beads, orientation, t)
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
        new = cp_positions(beads, orientation, t)
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


def choose_node_symmetries(beads: Beads, placed: list["PlacedBB"], orientation: np.ndarray,
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
        symmetries = cp_symmetries(bb)
        if len(symmetries) < 2:
            continue
        env = np.concatenate([np.asarray(pb.atoms.positions)[r] for pb, r in zip(placed, real)])
        owner = np.concatenate([np.full(r.sum(), k) for k, r in enumerate(real)])
        local = (bb.positions - bb.centroid)[real[i]]
        options = [local @ (orientation[i] @ s).T + beads.centres[i] + t[i] for s, _ in symmetries]
        near, near_r = environment_images(lat, env, np.concatenate(radii), owner == i, np.concatenate(options),
                                   SEARCH_MARGIN_A)
        if len(near) == 0:
            continue
        scores = [min_ratio(x, radii[i], near, near_r) for x in options]
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
