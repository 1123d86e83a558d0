"""Assembly of (topology, node BBs, edge BBs) into atoms through pormake.

A recipe puts one node BB on every node of a given type and one edge BB (or none: the nodes bond
directly) on every edge of a given type. Before building, each node BB is checked against its slot:
the connection-point count must equal the slot's coordination number, and the RMSD between the BB's
connection-point directions and the slot's neighbour directions (pormake's Locator) must be under a
threshold (0.3, pormake's suggested value).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pymatgen.core import Lattice, Structure

from discovery.library._pormake import builder, locator, pormake_version, quiet
from discovery.library.building_blocks import BuildingBlockLibrary
from discovery.errors import AssemblyError, IncompatibleCombinationError
from discovery.structures.mof import MOF, Bead, CGView
from discovery.library.orient import optimise_edge_spins
from discovery.library.topologies import TopologyLibrary

DEFAULT_RMSD_THRESHOLD = 0.3
NO_EDGE = "-"


@dataclass(frozen=True)
class Recipe:
    """What to build. ``node_bbs[t]`` goes on node type t; ``edge_bbs[k]`` on the k-th edge type of the
    topology (in the order of ``TopologyInfo.edge_types``), ``None`` for a direct node-node bond."""

    topology: str
    node_bbs: tuple[str, ...]
    edge_bbs: tuple[str | None, ...]

    def __str__(self) -> str:
        edges = ".".join(NO_EDGE if e is None else e for e in self.edge_bbs)
        return f"{self.topology}+{'.'.join(self.node_bbs)}+{edges}"

    @property
    def id(self) -> str:
        """Stable, file-name-safe id: the recipe string itself (e.g. ``pcu+N16+E14``)."""
        return str(self)

    @classmethod
    def parse(cls, text: str) -> "Recipe":
        """Inverse of ``str(recipe)``: ``topology+N1.N2+E1.E2`` (``-`` for no edge BB)."""
        parts = text.strip().split("+")
        if len(parts) != 3 or not all(parts[:2]):
            raise IncompatibleCombinationError(
                f"bad recipe {text!r}: expected TOPOLOGY+NODE[.NODE...]+EDGE[.EDGE...], e.g. pcu+N16+E14"
            )
        edges = tuple(None if e == NO_EDGE else e for e in parts[2].split(".")) if parts[2] else ()
        return cls(parts[0], tuple(parts[1].split(".")), edges)


@dataclass(frozen=True)
class Compatibility:
    """Result of checking a recipe against its topology; ``reason`` is empty when compatible."""

    compatible: bool
    rmsd: tuple[float, ...]
    reason: str = ""


class Assembler:
    """Checks recipes and builds them; holds the BB and topology libraries it reads from."""

    def __init__(self, bbs: BuildingBlockLibrary | None = None, topologies: TopologyLibrary | None = None,
                 rmsd_threshold: float = DEFAULT_RMSD_THRESHOLD, spin_edges: bool = True) -> None:
        self.bbs = bbs if bbs is not None else BuildingBlockLibrary()
        self.topologies = topologies if topologies is not None else TopologyLibrary()
        self.rmsd_threshold = rmsd_threshold
        self.spin_edges = spin_edges  # optimise each linker's free rotation (see orient.py)
        self._rmsd_cache: dict[tuple[str, int, str], float] = {}

    def node_rmsd(self, topology: str, node_type: int, bb_id: str) -> float:
        """pormake's RMSD between a node BB and a node slot (inf when connection counts differ)."""
        key = (topology, node_type, bb_id)
        if key not in self._rmsd_cache:
            info = self.topologies.info(topology)
            bb = self.bbs.get(bb_id)
            if bb.n_connection_points != info.node_types[node_type].cn:
                self._rmsd_cache[key] = float("inf")
            else:
                target = self.topologies.pormake_topology(topology).unique_local_structures[node_type]
                with quiet():
                    rmsd = locator().calculate_rmsd(target, self.bbs.pormake_bb(bb_id))
                self._rmsd_cache[key] = float(rmsd)
        return self._rmsd_cache[key]

    def check(self, recipe: Recipe) -> Compatibility:
        """Is the recipe buildable? Unknown ids raise; a misfit returns compatible=False with a reason."""
        info = self.topologies.info(recipe.topology)
        if len(recipe.node_bbs) != len(info.node_types):
            return Compatibility(False, (), f"{info.name} has {len(info.node_types)} node type(s), "
                                            f"the recipe gives {len(recipe.node_bbs)} node BB(s)")
        if len(recipe.edge_bbs) != len(info.edge_types):
            return Compatibility(False, (), f"{info.name} has {len(info.edge_types)} edge type(s), "
                                            f"the recipe gives {len(recipe.edge_bbs)} edge BB(s)")
        for e in recipe.edge_bbs:
            if e is not None and self.bbs.get(e).kind != "edge":
                return Compatibility(False, (), f"{e} has {self.bbs.get(e).n_connection_points} connection "
                                                "points; an edge BB needs 2")
        rmsds = []
        for t, bb_id in enumerate(recipe.node_bbs):
            bb, slot = self.bbs.get(bb_id), info.node_types[t]
            if bb.n_connection_points != slot.cn:
                return Compatibility(False, tuple(rmsds), f"node type {t} of {info.name} is {slot.cn}-connected; "
                                                          f"{bb_id} has {bb.n_connection_points} connection points")
            rmsds.append(self.node_rmsd(recipe.topology, t, bb_id))
            if rmsds[-1] > self.rmsd_threshold:
                return Compatibility(False, tuple(rmsds), f"{bb_id} does not fit node type {t} of {info.name}: "
                                                          f"RMSD {rmsds[-1]:.3f} > {self.rmsd_threshold}")
        return Compatibility(True, tuple(rmsds))

    def assemble(self, recipe: Recipe | str) -> MOF:
        """Build the recipe into a MOF with its CG view; raises IncompatibleCombinationError or AssemblyError."""
        recipe = Recipe.parse(recipe) if isinstance(recipe, str) else recipe
        compat = self.check(recipe)
        if not compat.compatible:
            raise IncompatibleCombinationError(f"{recipe}: {compat.reason}")
        topo = self.topologies.pormake_topology(recipe.topology)
        info = self.topologies.info(recipe.topology)
        node_bbs = {t: self.bbs.pormake_bb(b) for t, b in enumerate(recipe.node_bbs)}
        edge_bbs = {et.pair: (None if b is None else self.bbs.pormake_bb(b))
                    for et, b in zip(info.edge_types, recipe.edge_bbs)}
        try:
            with quiet():
                framework = builder().build_by_type(topo, node_bbs, edge_bbs)
        except Exception as exc:  # pormake raises bare Exceptions and numerical errors
            raise AssemblyError(f"{recipe}: pormake failed: {exc}") from exc
        try:
            return self._to_mof(recipe, framework, compat)
        except (IndexError, ValueError, KeyError) as exc:  # a framework pormake built but left inconsistent
            raise AssemblyError(f"{recipe}: pormake built a framework that cannot be read back "
                                f"({type(exc).__name__}: {exc}); direct bonds ('-') work on some nets only") from exc

    def _to_mof(self, recipe: Recipe, framework, compat: Compatibility) -> MOF:
        lattice = np.array(framework.atoms.cell[:], dtype=float)
        if abs(np.linalg.det(lattice)) < 1e-6:
            raise AssemblyError(f"{recipe}: pormake returned a degenerate cell")
        located = framework.info["located_bbs"]
        n_spun = optimise_edge_spins(located, lattice) if self.spin_edges else 0
        # The framework's atoms are the placed BBs' atoms in slot order, connection points removed.
        placed = [bb.atoms[[s != "X" for s in bb.atoms.get_chemical_symbols()]] for bb in located if bb is not None]
        symbols = [s for a in placed for s in a.get_chemical_symbols()]
        frac = (np.concatenate([a.positions for a in placed]) @ np.linalg.inv(lattice)) % 1.0
        structure = Structure(Lattice(lattice), symbols, frac)
        beads, atom_bead = self._beads(located, lattice)
        if len(atom_bead) != len(structure):
            raise AssemblyError(f"{recipe}: atom-to-bead map has {len(atom_bead)} entries for {len(structure)} atoms")
        provenance = {"builder": "pormake", "pormake_version": pormake_version(), "recipe": str(recipe),
                      "node_rmsd": list(compat.rmsd), "max_placement_rmsd": float(framework.info["max_rmsd"]),
                      "edges_spun": n_spun}
        cg = CGView(lattice=lattice, beads=tuple(beads), topology=recipe.topology)
        return MOF(id=recipe.id, structure=structure, cg=cg, atom_bead=atom_bead, provenance=provenance)

    def _beads(self, located_bbs: list, lattice: np.ndarray) -> tuple[list[Bead], np.ndarray]:
        """One bead per placed BB (slot order, the order pormake concatenated the atoms in)."""
        inv = np.linalg.inv(lattice)
        beads, atom_bead = [], []
        for slot, placed in enumerate(located_bbs):
            if placed is None:
                continue
            library_bb = self.bbs.get(placed.name)
            frac = (placed.centroid @ inv) % 1.0
            beads.append(Bead(bb_id=placed.name, role=library_bb.kind, frac_coords=frac, slot=slot,
                              orientation=orthogonal_fit(library_bb.positions - library_bb.centroid,
                                                          placed.atoms.positions - placed.centroid)))
            atom_bead += [len(beads) - 1] * sum(1 for s in placed.atoms.get_chemical_symbols() if s != "X")
        return beads, np.array(atom_bead, dtype=int)


def orthogonal_fit(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Orthogonal R (reflections allowed) minimising |p R^T - q|: the BB's orientation."""
    u, _, vt = np.linalg.svd(q.T @ p)
    return u @ vt


@lru_cache(maxsize=1)
def default_assembler() -> Assembler:
    return Assembler()


def assemble(recipe: Recipe | str) -> MOF:
    """Assemble with a process-wide default Assembler (libraries loaded once, RMSDs cached)."""
    return default_assembler().assemble(recipe)
