"""Two-scale crystal graphs for the adsorption surrogate.

Fine scale: each building block of pormake's library as a small molecular graph (its atoms, with the
``X`` connection points as atoms of their own kind, edges along its bonds). It depends on the block
alone, so a model embeds each block once and reuses the vector in every MOF that contains it.

Coarse scale: the MOF's coarse-grained view (``MOF.cg``), one node per building block (bead) carrying its
block's index, with periodic edges to each bead's ``max_neighbors`` nearest beads within ``cutoff``.

Blocks beyond pormake's: a real MOF's units that pormake lacks (``discovery.library.decompose``) travel with
its record (``MOF.units``) and get indices after pormake's, in this process, the first time a graph names
them. Their ids come from their bond graphs, so an id names one molecular graph wherever it was cut (a
conformer ``ID~k`` may differ in bond lengths between records: the first one seen is used); an index is never
stored, only used to share a block's vector within a batch and a process.

Why two scales rather than all atoms: an atom graph of a 260-atom MOF has ~3,000 edges, and an ensemble
of SchNet-like networks on it scores ~15 MOFs per CPU-second; the bead graph has ~10-100 edges, which is
what makes scoring hundreds of MOFs per second on two cores possible. Every structure the agent builds or
generates carries its CG view; a real MOF's comes from its decomposition.

PyG's ``radius_graph`` needs pyg-lib and ignores periodicity: the periodic neighbour lists come from
pymatgen (``Structure.get_neighbor_list``) and are handed to the layers as ``edge_index`` and ``edge_dist``.
Graph-level inputs (``globals``): the Zeo++ descriptors and the probe-energy descriptors
(``discovery.structures.descriptors``): the strongest binding sites decide adsorption at low loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Data

from discovery.library.building_blocks import BuildingBlockLibrary
from discovery.structures.descriptors import PROBE_KEYS, probe_vector
from discovery.errors import DiscoveryError
from discovery.structures.mof import CGView

GEOMETRY_KEYS = ("lcd", "pld", "asa_m2_g", "density_g_cm3", "void_fraction")
# divide each descriptor by a typical value so that the inputs are of order one
GEOMETRY_SCALE = (10.0, 10.0, 3000.0, 1.0, 1.0)
N_GLOBALS = len(GEOMETRY_KEYS) + len(PROBE_KEYS)
MAX_Z = 100  # element index 0 marks a connection point (X)
ROLES = {"node": 0, "edge": 1}


class GraphError(DiscoveryError):
    """A structure that cannot be turned into a graph (no CG view, unknown blocks, bad descriptors)."""


@dataclass(frozen=True)
class GraphSettings:
    cutoff: float = 15.0  # A, between beads
    max_neighbors: int = 12


@lru_cache(maxsize=1)
def library() -> BuildingBlockLibrary:
    return BuildingBlockLibrary()


@lru_cache(maxsize=1)
def bb_index() -> dict[str, int]:
    """Fixed index of every library block (pormake is pinned, so the order is stable)."""
    return {bb_id: i for i, bb_id in enumerate(library().ids())}


_EXTENDED: dict[str, int] = {}  # units beyond pormake's seen in this process -> their index
_EXTENDED_BLOCKS: list = []


def block_index(bb_id: str, units: Mapping[str, Any] | None = None) -> int | None:
    """The index of block ``bb_id``: pormake's, one registered before, or one of ``units`` (a record's
    extended units, id -> JSON row) registered now; None when it is none of these."""
    if bb_id in bb_index():
        return bb_index()[bb_id]
    if bb_id not in _EXTENDED and units and bb_id in units:
        from discovery.library.units import block_from_row

        _EXTENDED_BLOCKS.append(block_from_row(bb_id, units[bb_id]))
        _EXTENDED[bb_id] = len(bb_index()) + len(_EXTENDED_BLOCKS) - 1
    return _EXTENDED.get(bb_id)


def registered_units() -> list[tuple[str, dict]]:
    """The units beyond pormake's registered in this process, in index order (id, JSON row): what another
    process needs (``register_units``) to read graphs built here, whose ``bead_bb`` indices refer to them."""
    from discovery.library.units import block_row

    return [(bb.id, block_row(bb)) for bb in _EXTENDED_BLOCKS]


def register_units(entries: Sequence[tuple[str, dict]]) -> None:
    """Register ``registered_units()`` of another process here, at the same indices (a fresh worker)."""
    for k, (bb_id, row) in enumerate(entries):
        index, expected = block_index(bb_id, {bb_id: row}), len(bb_index()) + k
        if index != expected:
            raise GraphError(f"unit {bb_id} has index {index} here but {expected} where the graphs were built; "
                             "register units in a fresh process, before building any graph")


@lru_cache(maxsize=None)
def bb_graph(index: int) -> Data:
    """The molecular graph of block ``index``: ``z`` (0 for X), bonds both ways as ``edge_index``,
    bond lengths as ``edge_dist``. Bonds, not a distance cutoff: 10x fewer edges, and training re-embeds
    every block of a batch at each step."""
    from ase.data import atomic_numbers

    n = len(bb_index())
    bb = library().get(library().ids()[index]) if index < n else _EXTENDED_BLOCKS[index - n]
    z = np.array([0 if s == "X" else atomic_numbers[s] for s in bb.symbols], dtype=np.int64)
    bonds = np.asarray(bb.bonds, dtype=np.int64).reshape(-1, 2)
    edges = np.concatenate([bonds, bonds[:, ::-1]]).T
    dist = np.linalg.norm(bb.positions[edges[0]] - bb.positions[edges[1]], axis=-1)
    return Data(z=torch.from_numpy(z), edge_index=torch.from_numpy(np.ascontiguousarray(edges)),
                edge_dist=torch.from_numpy(dist).float(), num_nodes=len(z))


def descriptor_vector(descriptors: Mapping[str, Any], name: str = "structure") -> np.ndarray:
    """The graph-level inputs of one structure, scaled to order one: Zeo++ geometry (GEOMETRY_KEYS) and
    probe energies (PROBE_KEYS, ``discovery.structures.descriptors``); a missing or non-finite one is an error."""
    try:
        geometry = np.array([float(descriptors[k]) for k in GEOMETRY_KEYS]) / np.array(GEOMETRY_SCALE)
        values = np.concatenate([geometry, probe_vector(descriptors)])
    except (KeyError, TypeError, ValueError) as exc:
        raise GraphError(f"{name}: descriptors {GEOMETRY_KEYS + PROBE_KEYS} needed, got {dict(descriptors)}") from exc
    if not np.all(np.isfinite(values)):
        raise GraphError(f"{name}: non-finite descriptor in {dict(descriptors)}")
    return values


def neighbor_edges(lattice: np.ndarray, frac_coords: np.ndarray, cutoff: float,
                   max_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """Directed periodic edges (2 x E, source -> target) to each point from its ``max_neighbors`` nearest
    images within ``cutoff`` (an image of the point itself counts), and their lengths (E,)."""
    points = Structure(Lattice(lattice), ["H"] * len(frac_coords), frac_coords)
    centre, neighbour, _, dist = points.get_neighbor_list(cutoff)
    keep = dist > 1e-8
    centre, neighbour, dist = centre[keep], neighbour[keep], dist[keep]
    order = np.lexsort((dist, centre))  # by centre, then by distance
    centre, neighbour, dist = centre[order], neighbour[order], dist[order]
    rank = np.arange(len(centre)) - np.searchsorted(centre, centre, side="left")
    keep = rank < max_neighbors
    return np.stack([neighbour[keep], centre[keep]]).astype(np.int64), dist[keep]


def cg_graph(cg: CGView | None, descriptors: Mapping[str, Any], name: str = "structure",
             settings: GraphSettings | None = None, units: Mapping[str, Any] | None = None) -> Data:
    """The coarse graph of one MOF from its CG view: ``bead_bb`` (block indices), ``role``, ``edge_index``,
    ``edge_dist``, ``globals`` (1 x N_GLOBALS) from ``descriptors`` (Zeo++ geometry and probe energies);
    ``units``: the record's blocks beyond pormake's (``MOF.units``)."""
    s = settings or GraphSettings()
    if cg is None or not cg.beads:
        raise GraphError(f"{name}: no coarse-grained view (building blocks): the structure could not be cut "
                         "into units (`discovery decompose` says why)")
    index = {b.bb_id: block_index(b.bb_id, units) for b in cg.beads}
    unknown = sorted(i for i, k in index.items() if k is None)
    if unknown:
        raise GraphError(f"{name}: building blocks {unknown} are neither pormake's nor among the record's units")
    frac = np.array([b.frac_coords for b in cg.beads], dtype=float)
    # a bead with no neighbour within the cutoff (a large unit in a large cell of a real MOF) keeps no edge:
    # it is still read through its block's embedding and the pooled readout. An edge beyond the cutoff
    # would be worse, since the filters are only shaped out to it.
    edge_index, dist = neighbor_edges(cg.lattice, frac, s.cutoff, s.max_neighbors)
    return Data(bead_bb=torch.tensor([index[b.bb_id] for b in cg.beads]),
                role=torch.tensor([ROLES[b.role] for b in cg.beads]),
                edge_index=torch.from_numpy(edge_index), edge_dist=torch.from_numpy(dist).float(),
                globals=torch.from_numpy(descriptor_vector(descriptors, name)).float().unsqueeze(0),
                num_nodes=len(frac))
