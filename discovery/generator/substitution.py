"""Isoreticular edits of a parent whose atoms are known unit by unit: a real MOF cut by ``decompose``.

Why: the CG assembler finds orientations from bead positions alone. It was tuned on pormake's nets and on
real nets it rarely succeeds (docs/real_mofs.md), so edits of real parents almost never assembled. A real
parent already has every unit placed, so its edit keeps the cell, the net and every bead, and swaps units:
every instance of one of the parent's units for another unit that fits its slot, as a chemist makes an
isoreticular analogue (another linker of the same length and connectivity, another metal cluster).

A unit's *slot* is where it bonds to its neighbours: per connection point, its anchor (the unit's own atom
bonded across the cut) and a point 1 A from it along that bond. A unit fits another's slot when its anchors,
element for element, and its bond directions can be laid onto the other's by one orthogonal map within
``SubstitutionSettings.max_rmsd``: the neighbours' atoms then stay where they were, bonded at the new unit's
own bond lengths. The diffusion model decides which unit (``choose_swaps``): for each parent unit, the one
nearest in the embedding to what it denoised for that unit's beads, among the units that fit; the parent's
own unit when it is nearer than any that fits. A linear unit's spin about its axis is free: it is chosen,
as pormake chooses a linker's, to keep the farthest from the atoms around it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from pymatgen.core import Lattice, Structure

from discovery.errors import DiscoveryError
from discovery.library.assembly import orthogonal_fit
from discovery.library.building_blocks import BuildingBlock
from discovery.structures.mof import MOF, Bead, CGView

TIP_A = 1.0  # the direction point's distance from its anchor
PERMUTATION_LIMIT = 5  # up to this many connection points every correspondence is tried


@dataclass(frozen=True)
class SubstitutionSettings:
    max_rmsd: float = 0.35  # A, over anchors and direction points: a fit worse than this is not a fit
    candidates: int = 40  # units tried per parent unit, nearest in the embedding first
    spin_angles: int = 36  # a linear unit's spins tried about its axis
    max_connection_points: int = 12  # a unit with more (a rod, a sheet) is never swapped
    # a swapped unit's atoms (its anchors aside) must stay this far, relative to the sum of covalent radii,
    # from every other atom: the bond rule's tolerance (structures.bonds), so the swap makes no new bond
    clearance: float = 1.25
    clash_tries: int = 8  # fitting units tried per parent unit before giving up on clashes


DEFAULT_SETTINGS = SubstitutionSettings()


@dataclass(frozen=True)
class Slot:
    """A unit's bonds to its neighbours, in its own frame: anchors (k x 3), direction points (k x 3), elements."""

    anchors: np.ndarray
    tips: np.ndarray
    elements: tuple[str, ...]
    anchor_atoms: tuple[int, ...] = ()  # the anchors' indices among the unit's real atoms (X left out)

    @property
    def points(self) -> np.ndarray:
        return np.vstack([self.anchors, self.tips])

    @property
    def signature(self) -> tuple[str, ...]:
        """What any unit that fits must share: its anchors' elements (sorted), hence their number."""
        return tuple(sorted(self.elements))

    @property
    def linear(self) -> bool:
        """All points on one line: a spin about it leaves the slot unchanged."""
        p = self.points - self.points.mean(axis=0)
        s = np.linalg.svd(p, compute_uv=False)
        return bool(s[1] < 1e-3 * max(s[0], 1e-9) + 1e-6)


def slot_of(bb: BuildingBlock) -> Slot | None:
    """``bb``'s slot; None when a connection point is not bonded to exactly one real atom."""
    cps = list(bb.connection_point_indices)
    bonds = np.asarray(bb.bonds).reshape(-1, 2)
    anchors, tips, elements, index = [], [], [], []
    real = np.cumsum([sym != "X" for sym in bb.symbols]) - 1  # block index -> index among real atoms
    for c in cps:
        partners = [int(j) for i, j in bonds if i == c] + [int(i) for i, j in bonds if j == c]
        partners = [j for j in partners if bb.symbols[j] != "X"]
        if len(partners) != 1:
            return None
        a = bb.positions[partners[0]]
        direction = bb.positions[c] - a
        norm = np.linalg.norm(direction)
        if norm < 1e-6:
            return None
        anchors.append(a)
        tips.append(a + direction / norm * TIP_A)
        elements.append(bb.symbols[partners[0]])
        index.append(int(real[partners[0]]))
    if not cps:
        return None
    return Slot(np.array(anchors), np.array(tips), tuple(elements), tuple(index))


@dataclass(frozen=True)
class SlotFit:
    """How a unit lies on another's slot, both in their own frames: p -> (p - centre_from) @ rotation.T + centre_to."""

    rotation: np.ndarray
    centre_from: np.ndarray
    centre_to: np.ndarray
    rmsd: float

    def apply(self, p: np.ndarray) -> np.ndarray:
        return (p - self.centre_from) @ self.rotation.T + self.centre_to


def fit_slot(new: Slot, old: Slot, max_rmsd: float = DEFAULT_SETTINGS.max_rmsd) -> SlotFit | None:
    """The best one-to-one lay of ``new``'s slot onto ``old``'s (anchors element for element), or None when
    none comes within ``max_rmsd``."""
    if new.signature != old.signature:
        return None
    # a cheap necessary condition: the anchors' distances to their centroid, sorted, must agree
    if np.abs(np.sort(_radii(new.anchors)) - np.sort(_radii(old.anchors))).max() > 2 * max_rmsd + 0.5:
        return None
    best = None
    for order in _correspondences(new, old):
        fit = _kabsch(new.points, np.vstack([old.anchors[order], old.tips[order]]))
        if best is None or fit.rmsd < best.rmsd:
            best = fit
    return best if best is not None and best.rmsd <= max_rmsd else None


def base_id(bb_id: str) -> str:
    """A unit's id without its conformer number (``U...~2`` -> ``U...``): the same chemistry, another shape."""
    return bb_id.split("~", 1)[0]


def _radii(p: np.ndarray) -> np.ndarray:
    return np.linalg.norm(p - p.mean(axis=0), axis=1)


def _correspondences(new: Slot, old: Slot):
    """Orders of ``old``'s connection points to match ``new``'s, element for element: all of them up to
    ``PERMUTATION_LIMIT`` points; beyond, each pairing of new's two farthest anchors seeds a nearest-point
    assignment."""
    from scipy.optimize import linear_sum_assignment

    k = len(new.elements)
    el_new, el_old = np.array(new.elements), np.array(old.elements)
    if k <= PERMUTATION_LIMIT:
        for order in itertools.permutations(range(k)):
            if all(el_old[list(order)] == el_new):
                yield np.array(order)
        return
    d = np.linalg.norm(new.anchors[:, None] - new.anchors[None], axis=-1)
    a, b = np.unravel_index(np.argmax(d), d.shape)
    big = 1e6 * (el_new[:, None] != el_old[None, :])
    for i, j in itertools.permutations(range(k), 2):
        if el_old[i] != el_new[a] or el_old[j] != el_new[b]:
            continue
        seed = _kabsch(np.vstack([new.anchors[[a, b]], new.tips[[a, b]]]),
                       np.vstack([old.anchors[[i, j]], old.tips[[i, j]]]))
        placed = seed.apply(new.anchors)
        cost = np.linalg.norm(placed[:, None] - old.anchors[None], axis=-1) + big
        rows, cols = linear_sum_assignment(cost)
        yield cols[np.argsort(rows)]


def _kabsch(p: np.ndarray, q: np.ndarray) -> SlotFit:
    cp, cq = p.mean(axis=0), q.mean(axis=0)
    rotation = orthogonal_fit(p - cp, q - cq)  # reflections allowed, as the decomposition fits units
    rmsd = float(np.sqrt((((p - cp) @ rotation.T + cq - q) ** 2).sum(axis=1).mean()))
    return SlotFit(rotation, cp, cq, rmsd)


# ---- a parent and its children ---------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """A MOF known unit by unit: its CG view with every bead's orientation, and its units' geometry."""

    id: str
    cg: CGView
    blocks: Mapping[str, BuildingBlock]

    def __post_init__(self) -> None:
        missing = sorted({b.bb_id for b in self.cg.beads} - set(self.blocks))
        if missing or any(b.orientation is None for b in self.cg.beads):
            raise DiscoveryError(f"{self.id}: a frame needs every bead's orientation and unit "
                                 f"(missing units: {missing[:3]})")

    def structure(self) -> Structure:
        from discovery.library.decompose import reassemble

        return reassemble(self.cg, self.blocks)

    def atom_bead(self) -> np.ndarray:
        return np.concatenate([np.full(_n_real(self.blocks[b.bb_id]), i) for i, b in enumerate(self.cg.beads)])


@dataclass(frozen=True)
class Child:
    """An isoreticular edit: the child's frame, the beads that got another unit, and what was swapped."""

    frame: Frame
    swapped: tuple[int, ...]
    swaps: dict[str, str] = field(default_factory=dict)  # parent unit -> its replacement

    @property
    def mutation(self) -> str:
        return "; ".join(f"{a}->{b}" for a, b in sorted(self.swaps.items())) or "none"


def _n_real(bb: BuildingBlock) -> int:
    return sum(s != "X" for s in bb.symbols)


def substitute(parent: Frame, swaps: Mapping[str, tuple[BuildingBlock, SlotFit]], child_id: str | None = None,
               settings: SubstitutionSettings = DEFAULT_SETTINGS) -> Child:
    """``parent`` with every instance of each swapped unit (parent id -> new block and its fit onto the
    parent unit's slot) replaced; linear replacements spun to keep clear of the atoms around them."""
    lattice = Lattice(parent.cg.lattice)
    beads, blocks, swapped = list(parent.cg.beads), dict(parent.blocks), []
    for i, bead in enumerate(parent.cg.beads):
        if bead.bb_id not in swaps:
            continue
        new, fit = swaps[bead.bb_id]
        old = parent.blocks[bead.bb_id]
        # new frame -> old frame (fit) -> placed (the parent bead's orientation and position)
        orientation = np.asarray(bead.orientation) @ fit.rotation
        centre_in_old = fit.apply(new.centroid[None])[0] - old.centroid
        cart = centre_in_old @ np.asarray(bead.orientation).T + lattice.get_cartesian_coords(bead.frac_coords)
        beads[i] = Bead(bb_id=new.id, role=new.kind, frac_coords=lattice.get_fractional_coords(cart),
                        orientation=orientation)
        blocks[new.id] = new
        swapped.append(i)
    used = {b.bb_id for b in beads}
    frame = Frame(child_id or parent.id, CGView(parent.cg.lattice, tuple(beads), parent.cg.topology),
                  {k: v for k, v in blocks.items() if k in used})
    for _ in range(2):  # a second pass: each spin saw the others' first choice
        frame = _spin_linear(frame, [i for i in swapped if _slot(frame, i).linear], settings.spin_angles)
    return Child(frame, tuple(swapped), {a: b.id for a, (b, _) in swaps.items()})


def _slot(frame: Frame, i: int) -> Slot:
    return slot_of(frame.blocks[frame.cg.beads[i].bb_id])


def _surroundings(frame: Frame, i: int):
    """Bead ``i``'s atoms (cartesian), their radii, the mask of its anchors, and the atoms near it (periodic
    images; its own only in other cells) with their radii."""
    from discovery.library.orient import SEARCH_MARGIN_A, environment_images
    from discovery.structures.elements import covalent_radius

    structure = frame.structure()
    own = frame.atom_bead() == i
    radii = np.array([covalent_radius(site.specie.symbol) for site in structure])
    mine = structure.cart_coords[own]
    anchor = np.zeros(len(mine), dtype=bool)
    anchor[list(_slot(frame, i).anchor_atoms)] = True
    near, near_r = environment_images(Lattice(frame.cg.lattice), structure.cart_coords, radii, own, mine,
                                      SEARCH_MARGIN_A)
    return mine, radii[own], anchor, near, near_r


def clearance(frame: Frame, beads: Sequence[int]) -> float:
    """The smallest distance / (r_i + r_j) from an atom of ``beads`` (anchors aside: they bond across the cut)
    to any atom of another unit or of an image: below ``SubstitutionSettings.clearance`` a swap made a bond."""
    from discovery.library.orient import min_ratio

    worst = np.inf
    for i in beads:
        mine, radii, anchor, near, near_r = _surroundings(frame, i)
        if len(near) and (~anchor).any():
            worst = min(worst, min_ratio(mine[~anchor], radii[~anchor], near, near_r))
    return float(worst)


def _spin_linear(frame: Frame, beads: Sequence[int], n_angles: int) -> Frame:
    """Each of ``beads`` turned about its slot's axis to the angle that keeps its atoms off the axis farthest
    (relative to covalent radii) from every other atom, as pormake spins a linker."""
    from discovery.library.orient import ON_AXIS_A, min_ratio
    from scipy.spatial.transform import Rotation

    lattice = Lattice(frame.cg.lattice)
    out = list(frame.cg.beads)
    angles = np.linspace(0.0, 2 * np.pi, n_angles, endpoint=False)
    for i in beads:
        now = Frame(frame.id, CGView(frame.cg.lattice, tuple(out), frame.cg.topology), frame.blocks)
        mine, radii, _, near, near_r = _surroundings(now, i)
        bead = out[i]
        slot = _slot(now, i)
        axis = (slot.points[-1] - slot.points[0]) @ np.asarray(bead.orientation).T
        axis /= np.linalg.norm(axis)
        centre = lattice.get_cartesian_coords(bead.frac_coords)  # on the axis: the X's centroid
        rel = mine - centre
        off = np.linalg.norm(rel - np.outer(rel @ axis, axis), axis=1) > ON_AXIS_A
        if len(near) == 0 or not off.any():
            continue
        turns = [Rotation.from_rotvec(axis * a).as_matrix() for a in angles]
        scores = [min_ratio(rel[off] @ t.T + centre, radii[off], near, near_r) for t in turns]
        best = int(np.argmax(np.round(scores, 3)))  # ties keep the fitted spin
        out[i] = Bead(bead.bb_id, bead.role, bead.frac_coords, turns[best] @ np.asarray(bead.orientation))
    return Frame(frame.id, CGView(frame.cg.lattice, tuple(out), frame.cg.topology), frame.blocks)


def child_mof(child: Child, mof_id: str, parent: str) -> MOF:
    """The child's atoms as a record: CG view with orientations, atom-to-bead map, its units beyond pormake's."""
    from discovery.library.units import block_row, is_pormake

    frame = child.frame
    units = {i: block_row(bb) for i, bb in frame.blocks.items() if not is_pormake(i)} or None
    return MOF(id=mof_id, structure=frame.structure(), cg=frame.cg, atom_bead=frame.atom_bead(), units=units,
               provenance={"builder": "substitution", "parent": parent, "swaps": dict(child.swaps)})


# ---- the generator's choice ------------------------------------------------------------------------


class SlotIndex:
    """The units a generator knows, by slot signature, for finding the units that fit a slot."""

    def __init__(self, ids: Sequence[str], get, settings: SubstitutionSettings = DEFAULT_SETTINGS) -> None:
        self.settings, self.ids, self.get = settings, list(ids), get
        self._slots, self._by_signature = {}, {}
        for k, bb_id in enumerate(ids):
            slot = self.slot(bb_id)
            if slot is not None and len(slot.elements) <= settings.max_connection_points:
                self._by_signature.setdefault(slot.signature, []).append(k)

    def slot(self, bb_id: str) -> Slot | None:
        if bb_id not in self._slots:
            try:
                self._slots[bb_id] = slot_of(self.get(bb_id))
            except DiscoveryError:  # a unit the library cannot give: it never fits anything
                self._slots[bb_id] = None
        return self._slots[bb_id]

    def same_signature(self, slot: Slot) -> list[int]:
        """Indices (into the ids given) of the units whose anchors' elements match ``slot``'s."""
        return self._by_signature.get(slot.signature, [])


def choose_swaps(parent: Frame, wanted: np.ndarray, vectors: np.ndarray,
                 index: SlotIndex) -> dict[str, tuple[BuildingBlock, SlotFit]]:
    """For each of the parent's units, the unit nearest (in the embedding) to the mean of what was denoised for
    its beads (``wanted``: beads x dim, normalised as ``vectors``, which has a row per id of ``index``) among
    those that fit its slot, or none when the parent's own unit is nearer than any that fits."""
    settings, ids = index.settings, index.ids
    swaps: dict[str, tuple[BuildingBlock, SlotFit]] = {}
    for bb_id in sorted({b.bb_id for b in parent.cg.beads}):
        old = slot_of(parent.blocks[bb_id])
        if old is None or len(old.elements) > settings.max_connection_points:
            continue
        rows = [i for i, b in enumerate(parent.cg.beads) if b.bb_id == bb_id]
        target = wanted[rows].mean(axis=0)
        options = index.same_signature(old)
        if not options:
            continue
        distance = np.linalg.norm(vectors[options] - target, axis=1)
        tries = 0
        for k in np.argsort(distance)[:settings.candidates]:
            candidate = ids[options[k]]
            if base_id(candidate) == base_id(bb_id) or tries == settings.clash_tries:
                break  # the parent's own unit (or another conformer of it) is the nearest that fits: keep it
            # a unit the parent already has keeps the parent's geometry (its other beads were fitted to it)
            new = parent.blocks[candidate] if candidate in parent.blocks else index.get(candidate)
            fit = fit_slot(slot_of(new) if candidate in parent.blocks else index.slot(candidate), old,
                           settings.max_rmsd)
            if fit is None:
                continue
            tries += 1
            swap = {bb_id: (new, fit)}
            child = substitute(parent, swap, settings=settings)
            if clearance(child.frame, child.swapped) >= settings.clearance:
                swaps.update(swap)
                break
    return swaps
