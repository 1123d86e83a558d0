"""Periodic bond graph from covalent radii, and the periodicity (dimensionality) of its components.

A pair (i, j) at distance d is bonded when d < tolerance * (r_i + r_j), r the covalent radii.
Neighbour lists come from pymatgen (the fastest periodic neighbour search measured here).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from discovery.structures.elements import covalent_radius

BOND_TOLERANCE = 1.25


@dataclass(frozen=True)
class PeriodicGraph:
    """Directed edge list (both directions present): atom ``src`` bonds ``dst`` shifted by ``image``."""

    n_atoms: int
    src: np.ndarray
    dst: np.ndarray
    image: np.ndarray
    distance: np.ndarray
    ratio: np.ndarray  # distance / (r_i + r_j)

    def degree(self) -> np.ndarray:
        return np.bincount(self.src, minlength=self.n_atoms)

    def components(self) -> list[tuple[np.ndarray, int]]:
        """Connected components as (atom indices, periodic dimensionality 0-3)."""
        order = np.argsort(self.src, kind="stable")
        starts = np.searchsorted(self.src[order], np.arange(self.n_atoms + 1))
        offset = np.full((self.n_atoms, 3), np.iinfo(np.int64).min, dtype=np.int64)
        out = []
        for root in range(self.n_atoms):
            if offset[root, 0] != np.iinfo(np.int64).min:
                continue
            members, cycles = self._walk(root, order, starts, offset)
            out.append((np.array(members), _rank(cycles)))
        return out

    def _walk(self, root: int, order: np.ndarray, starts: np.ndarray, offset: np.ndarray):
        # Breadth-first walk that records each atom's cell offset; reaching a visited atom in another
        # cell closes a loop through the periodic images, and the rank of those loops is the dimensionality.
        offset[root] = 0
        members, cycles, queue = [root], [], deque([root])
        while queue:
            u = queue.popleft()
            for e in order[starts[u]:starts[u + 1]]:
                v, reach = self.dst[e], offset[u] + self.image[e]
                if offset[v, 0] == np.iinfo(np.int64).min:
                    offset[v] = reach
                    members.append(v)
                    queue.append(v)
                elif np.any(reach != offset[v]):
                    cycles.append(reach - offset[v])
        return members, cycles


def _rank(cycles: list[np.ndarray]) -> int:
    if not cycles:
        return 0
    return int(np.linalg.matrix_rank(np.unique(np.array(cycles), axis=0).astype(float)))


def bond_graph(structure: Structure, tolerance: float = BOND_TOLERANCE) -> PeriodicGraph:
    """Bonds of a periodic structure by the covalent-radius rule."""
    symbols = [site.specie.symbol for site in structure]
    radii = np.array([covalent_radius(s) for s in symbols])
    cutoff = tolerance * 2.0 * radii.max()
    src, dst, image, dist = structure.get_neighbor_list(cutoff)
    limit = radii[src] + radii[dst]
    # an atom's own zero-length pair is dropped; two atoms at one place are kept (the overlap check's worst case)
    keep = (dist < tolerance * limit) & ((dist > 1e-8) | (src != dst))
    return PeriodicGraph(n_atoms=len(structure), src=src[keep].astype(np.int64), dst=dst[keep].astype(np.int64),
                         image=np.rint(image[keep]).astype(np.int64), distance=dist[keep],
                         ratio=dist[keep] / limit[keep])
