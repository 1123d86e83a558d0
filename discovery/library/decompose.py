"""Real MOFs as building units and a coarse-grained view: ``decompose`` and its inverse ``reassemble``.

Cutting is mofstructure's (MIT; pinned, installed by the Makefile, docs/real_mofs.md says why):
guests (molecules not bonded to the framework) are removed, then ``secondary_building_units`` cuts between
a carboxylate's C and its ring (the metal cluster keeps the carboxylate C, as pormake's nodes do) and at
metal-N bonds. Every framework atom ends in exactly one unit.

Each unit becomes a ``BuildingBlock`` as pormake's are: its atoms unwrapped along its own bonds, an ``X`` at
each cut bond's partner atom, its bonds plus one per ``X``. A rod (a unit bonded to its own periodic image)
also gets an ``X`` at each such image atom, so its graph says that it continues. Its id comes from its
content (``discovery.library.units``): a pormake id when pormake has the same bond graph.

The CG view is the design space's (``discovery.structures.mof.CGView``): a bead per unit where the library
block's frame origin lands (the centroid of its connection points), with the orthogonal matrix that maps the
library block onto this instance (fitted over the atoms matched by graph isomorphism, then by nearest atoms
of each element; reflections allowed). ``reassemble`` places every block back: on the structure it came
from it must give the same framework, which ``check_reassembly`` measures.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Mapping

import networkx as nx
import numpy as np
from pymatgen.core import Lattice, Structure

from discovery.errors import DiscoveryError
from discovery.library.assembly import orthogonal_fit
from discovery.library.building_blocks import BuildingBlock
from discovery.library.units import block_row, content_id, is_pormake, unit_graph
from discovery.structures.mof import MOF, Bead, CGView

MAX_ISOMORPHISMS = 200  # graph matches tried per instance before the best geometric fit is kept
CONFORMER_RMSD_A = 0.3  # a worse fit to every known geometry of an id makes a new conformer
GOOD_FIT_A = 0.05  # RMSD at which the search stops
REFINE_PASSES = 3


class DecompositionError(DiscoveryError):
    """A structure that cannot be cut into building units."""


@dataclass(frozen=True)
class Placement:
    """One unit of the structure: its block, and the framework's atoms in the block's order (``X`` excluded)."""

    bb_id: str
    atoms: tuple[int, ...]
    rmsd_A: float  # of the library block's atoms placed on this instance's
    periodic: bool  # a rod or sheet: bonded to its own periodic image


@dataclass(frozen=True)
class Decomposition:
    name: str
    cg: CGView
    placements: tuple[Placement, ...]
    blocks: dict[str, BuildingBlock]
    framework: Structure  # the input without its guests
    framework_atoms: tuple[int, ...]  # the input's index of each framework atom
    guests_removed: int
    topology_method: str | None
    cpu_s: float

    def atom_bead(self) -> np.ndarray:
        """The bead of each framework atom."""
        out = np.full(len(self.framework), -1, dtype=int)
        for i, p in enumerate(self.placements):
            out[list(p.atoms)] = i
        return out

    def units(self) -> list[dict[str, Any]]:
        """One row per distinct unit: id, formula, kind, connection points, count, pormake or new."""
        counts = Counter(p.bb_id for p in self.placements)
        periodic = {p.bb_id for p in self.placements if p.periodic}
        return [{"id": i, "formula": self.blocks[i].formula, "kind": self.blocks[i].kind,
                 "metal": self.blocks[i].has_metal, "connection_points": self.blocks[i].n_connection_points,
                 "count": n, "periodic": i in periodic, "library": "pormake" if is_pormake(i) else "extended"}
                for i, n in sorted(counts.items())]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "formula": self.framework.composition.formula.replace(" ", ""),
                "topology": self.cg.topology, "topology_method": self.topology_method,
                "guests_removed": self.guests_removed, "units": self.units(), "cg": self.cg.to_dict(),
                "max_fit_rmsd_A": round(max((p.rmsd_A for p in self.placements), default=0.0), 4),
                "cpu_s": round(self.cpu_s, 2)}


def decompose(structure: Structure, name: str = "structure", library: Mapping[str, BuildingBlock] | None = None,
              topology: bool = True) -> Decomposition:
    """Cut ``structure`` into units; ``library`` (id -> block) supplies geometry for ids already known."""
    from pymatgen.io.ase import AseAtomsAdaptor

    t0 = time.process_time()
    atoms = AseAtomsAdaptor.get_atoms(structure)
    keep, gf, comps, cuts, kept, offsets = _cut(atoms, name)
    images = _images(comps, kept, offsets)
    blocks: dict[str, BuildingBlock] = dict(library or {})
    beads, placements = [], []
    for c, comp in enumerate(comps):
        block, xyz, periodic = _unit(gf, comp, images[c], cuts, kept, offsets)
        known, order, rotation, rmsd = _place(replace(block, id=content_id(block)), blocks)
        real = [i for i, s in enumerate(known.symbols) if s != "X"]
        local = known.positions[real] - known.centroid
        origin = xyz[order].mean(axis=0) - local.mean(axis=0) @ rotation.T
        beads.append(Bead(bb_id=known.id, role=known.kind, orientation=rotation,
                          frac_coords=structure.lattice.get_fractional_coords(origin)))
        placements.append(Placement(known.id, tuple(int(comp[k]) for k in order), rmsd, periodic))
    used = {p.bb_id for p in placements}
    net, method = topology_of(gf) if topology else (None, None)
    return Decomposition(name=name, cg=CGView(lattice=structure.lattice.matrix.copy(), beads=tuple(beads),
                                              topology=net),
                         placements=tuple(placements), blocks={i: blocks[i] for i in sorted(used)},
                         framework=Structure.from_sites([structure[int(i)] for i in keep]),
                         framework_atoms=tuple(int(i) for i in keep), guests_removed=len(structure) - len(keep),
                         topology_method=method,
                         cpu_s=time.process_time() - t0)


def decomposed_mof(mof: MOF, dec: Decomposition) -> MOF:
    """``mof``'s framework as a record with its CG view, atom-to-bead map and the geometry of its units that
    are not pormake's: what the surrogate and the generator read."""
    charges = None if mof.charges is None else mof.charges[list(dec.framework_atoms)]
    info = {"topology": dec.cg.topology, "topology_method": dec.topology_method,
            "guests_removed": dec.guests_removed, "units": [u["id"] for u in dec.units()]}
    return MOF(id=mof.id, structure=dec.framework, charges=charges, cg=dec.cg, atom_bead=dec.atom_bead(),
               provenance={**mof.provenance, "decomposition": info},
               units={i: block_row(bb) for i, bb in dec.blocks.items() if not is_pormake(i)} or None)


def _place(block: BuildingBlock, blocks: dict[str, BuildingBlock]):
    """The library block this instance is (the best-fitting conformer of its id, or a new conformer when
    none fits within CONFORMER_RMSD_A: a rigid block in another conformation would not reassemble into the
    framework), its atoms in the block's order, the orientation and the fit's RMSD. ``blocks`` grows."""
    identity = (np.arange(sum(s != "X" for s in block.symbols)), np.eye(3), 0.0)
    if block.id not in blocks:
        blocks[block.id] = _library_block(block)
        if blocks[block.id] is block:
            return block, *identity
    fits = [(blocks[k], *_fit(blocks[k], block)) for k in _conformers(block.id, blocks)]
    best = min(fits, key=lambda f: f[3])
    if best[3] <= CONFORMER_RMSD_A:
        return best
    conformer = replace(block, id=f"{block.id}~{len(fits)}")
    blocks[conformer.id] = conformer
    return conformer, *identity


def _conformers(bb_id: str, blocks: Mapping[str, BuildingBlock]) -> list[str]:
    return [k for k in blocks if k == bb_id or k.startswith(bb_id + "~")]


def _library_block(block: BuildingBlock) -> BuildingBlock:
    """The geometry an id stands for: pormake's for a pormake id (so that orientations mean what they mean
    in design-space CG views), else this first instance's."""
    if is_pormake(block.id):
        from discovery.library.building_blocks import BuildingBlockLibrary

        return BuildingBlockLibrary().get(block.id)
    return block


def _mofstructure():
    """mofstructure's modules, imported without the root-logger set-up they do on import (``basicConfig``
    at INFO would make every library's INFO lines print)."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from mofstructure import generate_cgd, mofdeconstructor, topology

    root.handlers[:], root.level = handlers, level
    logging.getLogger("mofstructure").setLevel(logging.WARNING)
    return mofdeconstructor, generate_cgd, topology


def _cut(atoms, name: str):
    md, cgd, _ = _mofstructure()
    try:
        keep = np.asarray(md.remove_unbound_guest(atoms), dtype=int)
        gf = atoms[keep]
        comps, _, _, _, cuts = md.secondary_building_units(gf)
        kept, offsets = cgd.kept_bond_graph(gf, cuts)
    except Exception as exc:  # mofstructure raises plain errors (e.g. on some phosphonates)
        raise DecompositionError(f"{name}: mofstructure could not cut the framework into units: "
                                 f"{type(exc).__name__}: {exc}") from exc
    if not len(keep):
        raise DecompositionError(f"{name}: no framework atoms left after removing unbound molecules")
    return keep, gf, [sorted(int(a) for a in comp) for comp in comps], cuts, kept, offsets


def _images(comps, kept, offsets) -> list[dict[int, np.ndarray]]:
    images = _mofstructure()[1].component_atom_images(comps, kept, offsets)
    return [{int(a): np.asarray(images[c][a], dtype=int) for a in comp} for c, comp in enumerate(comps)]


def _unit(gf, comp: list[int], image: dict[int, np.ndarray], cuts, kept, offsets):
    """The unit as a block in its own frame (X at partner atoms), its atoms' unwrapped positions, rod flag."""
    cell, pos, symbols = gf.cell.array, gf.positions, gf.get_chemical_symbols()
    index = {a: k for k, a in enumerate(comp)}
    xyz = np.array([pos[a] + image[a] @ cell for a in comp])
    bonds, xs = [], []
    for a in comp:  # bonds kept inside the unit; one to an image of the unit itself is a connection
        for b in kept.get(a, ()):
            for shift in offsets.get((a, b), [(0, 0, 0)]):
                if b in index and np.allclose(image[b], image[a] + np.asarray(shift)):
                    if a < b:
                        bonds.append((index[a], index[b]))
                else:
                    xs.append((index[a], pos[b] + (image[a] + np.asarray(shift)) @ cell))
    periodic = bool(xs)  # every X so far is a bond to the unit's own image: a rod or a sheet
    for i, j, *shift in cuts:  # each cut bond: an X at the partner atom, on both sides
        for a, b, s in ((int(i), int(j), np.asarray(shift)), (int(j), int(i), -np.asarray(shift))):
            if a in index:
                xs.append((index[a], pos[b] + (image[a] + s) @ cell))
    x_pos = np.array([p for _, p in xs]).reshape(-1, 3)
    centre = x_pos.mean(axis=0) if len(xs) else xyz.mean(axis=0)
    n = len(comp)
    block = BuildingBlock(id="", symbols=tuple(symbols[a] for a in comp) + ("X",) * len(xs),
                          positions=np.vstack([xyz, x_pos]) - centre,
                          connection_point_indices=tuple(range(n, n + len(xs))),
                          bonds=np.array(bonds + [(k, n + m) for m, (k, _) in enumerate(xs)], int).reshape(-1, 2))
    return block, xyz, periodic


def _fit(known: BuildingBlock, block: BuildingBlock) -> tuple[np.ndarray, np.ndarray, float]:
    """How ``known`` (the library's geometry) lies on ``block`` (this instance): for each of known's real
    atoms the instance atom it lands on, the orthogonal matrix, and the RMSD."""
    real_k = [i for i, s in enumerate(known.symbols) if s != "X"]
    real_b = {i for i, s in enumerate(block.symbols) if s != "X"}
    p = known.positions[real_k] - known.centroid
    q_all = block.positions
    matcher = nx.algorithms.isomorphism.GraphMatcher(unit_graph(known), unit_graph(block),
                                                     node_match=lambda u, v: u["el"] == v["el"])
    best = (None, None, np.inf)
    for k, mapping in enumerate(matcher.isomorphisms_iter()):
        order = np.array([mapping[i] for i in real_k])
        if not set(order.tolist()) <= real_b:
            continue
        order, rotation, rmsd = _refine(p, q_all, order, [known.symbols[i] for i in real_k])
        if rmsd < best[2]:
            best = (order, rotation, rmsd)
        if rmsd < GOOD_FIT_A or k + 1 >= MAX_ISOMORPHISMS:
            break
    if best[0] is None:
        raise DecompositionError(f"unit {known.id}: the instance's bond graph does not match the library's")
    return best


def _refine(p: np.ndarray, q_all: np.ndarray, order: np.ndarray, symbols: list[str]):
    """Kabsch on the matched atoms, then re-match each element's atoms by nearest position, a few passes:
    a graph match of a symmetric unit need not be the geometric one."""
    from scipy.optimize import linear_sum_assignment

    symbols = np.array(symbols)
    for _ in range(REFINE_PASSES):
        rotation, placed = _kabsch(p, q_all[order])
        new = order.copy()
        for el in np.unique(symbols):
            rows = np.flatnonzero(symbols == el)
            cand = order[rows]
            cost = np.linalg.norm(placed[rows, None] - q_all[cand][None], axis=-1)
            _, cols = linear_sum_assignment(cost)
            new[rows] = cand[cols]
        if np.array_equal(new, order):
            break
        order = new
    rotation, placed = _kabsch(p, q_all[order])
    return order, rotation, float(np.sqrt(((placed - q_all[order]) ** 2).sum(axis=1).mean()))


def _kabsch(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The orthogonal matrix that best turns ``p`` onto ``q`` (centroids matched), and ``p`` so placed."""
    rotation = orthogonal_fit(p - p.mean(axis=0), q - q.mean(axis=0))
    return rotation, (p - p.mean(axis=0)) @ rotation.T + q.mean(axis=0)


def topology_of(atoms) -> tuple[str | None, str | None]:
    """The net's name (RCSR, or another archive mofstructure ships) and the method that found it: all atoms
    of a unit as one node first (``auto``), then metal clusters only (``sbus``, which names some rod MOFs)."""
    analyse = _mofstructure()[2].analyse
    for method in ("auto", "sbus"):
        try:
            result = analyse(atoms, method=method, timeout=None)  # its timeout uses SIGALRM: main thread only
        except Exception:  # an unstable or unidentifiable net: try the next method
            continue
        if result.get("topology") not in (None, "", "error", "unknown"):
            return str(result["topology"]), method
    return None, None


def reassemble(cg: CGView, blocks: Mapping[str, BuildingBlock]) -> Structure:
    """The framework a CG view describes: every bead's block placed at its position and orientation."""
    lattice = Lattice(cg.lattice)
    species, coords = [], []
    for bead in cg.beads:
        if bead.bb_id not in blocks:
            raise DecompositionError(f"bead {bead.bb_id}: no such unit in the library given")
        bb = blocks[bead.bb_id]
        real = [i for i, s in enumerate(bb.symbols) if s != "X"]
        rotation = np.eye(3) if bead.orientation is None else np.asarray(bead.orientation)
        coords.append((bb.positions[real] - bb.centroid) @ rotation.T + lattice.get_cartesian_coords(bead.frac_coords))
        species += [bb.symbols[i] for i in real]
    return Structure(lattice, species, np.vstack(coords), coords_are_cartesian=True)


def check_reassembly(dec: Decomposition) -> dict[str, Any]:
    """Does reassembling ``dec``'s CG view give back the framework? Composition, the largest distance of a
    placed atom from the atom it stands for (periodic), and pymatgen's StructureMatcher."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    rebuilt = reassemble(dec.cg, dec.blocks)
    order = [a for p in dec.placements for a in p.atoms]
    frac = rebuilt.frac_coords - dec.framework.frac_coords[order]
    frac -= np.round(frac)
    worst = float(np.linalg.norm(frac @ dec.framework.lattice.matrix, axis=1).max()) if order else 0.0
    same = rebuilt.composition == dec.framework.composition
    matcher = StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5, primitive_cell=False, scale=False,
                               attempt_supercell=False)
    return {"composition_equal": bool(same), "max_deviation_A": round(worst, 4),
            "structure_match": bool(same and matcher.fit(dec.framework, rebuilt))}
