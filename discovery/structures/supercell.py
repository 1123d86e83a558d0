"""The smallest periodic simulation box that respects the minimum-image convention for a cutoff.

The protocol replicates the unit cell n_i = ceil(2 cutoff / w_i) times along each axis (w_i the
perpendicular widths). For skewed cells that wastes work: IRMOF-1's 60-degree primitive cell needs
2 x 2 x 2 = 8 copies along its axes, while its cubic conventional cell (4 copies) is already wide
enough. Energies with a cutoff under the minimum image do not depend on which valid box is chosen, and
Monte Carlo cost grows with the number of framework atoms in the box, so the oracle simulates the
smallest one: the supercells of each size are enumerated as Hermite normal forms, reduced (LLL), and the
first size with a valid box wins; the diagonal replication is the fallback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

import numpy as np
from pymatgen.core import Lattice, Structure

MAX_CANDIDATES = 20000  # HNF matrices tried before falling back to the diagonal replication


@dataclass(frozen=True)
class SimulationCell:
    """A supercell of the unit cell: ``matrix`` (integer, rows) maps unit-cell to box vectors."""

    matrix: tuple[tuple[int, int, int], ...]
    lattice: Lattice

    @property
    def copies(self) -> int:
        return round(abs(np.linalg.det(np.array(self.matrix))))

    def build(self, structure: Structure) -> Structure:
        """The framework in this box (P1, atoms in the unit cell's order, repeated per copy)."""
        box = structure.copy()
        box.make_supercell(np.array(self.matrix))
        return Structure(self.lattice, box.species, box.cart_coords, coords_are_cartesian=True,
                         site_properties=box.site_properties)


def perpendicular_widths(matrix: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of the cell spanned by the rows of ``matrix``."""
    volume = abs(np.linalg.det(matrix))
    return np.array([volume / np.linalg.norm(np.cross(matrix[(i + 1) % 3], matrix[(i + 2) % 3])) for i in range(3)])


def replication(lattice: Lattice, cutoff: float) -> tuple[int, int, int]:
    """Copies per axis so that every perpendicular width of the box is at least 2 x cutoff."""
    widths = perpendicular_widths(lattice.matrix)
    return tuple(int(math.ceil(2.0 * cutoff / w - 1e-9)) for w in widths)  # type: ignore[return-value]


def simulation_cell(lattice: Lattice, cutoff: float) -> SimulationCell:
    """The supercell with the fewest copies whose perpendicular widths are all >= 2 x cutoff."""
    diagonal = replication(lattice, cutoff)
    fallback = SimulationCell(tuple(tuple(int(i == j) * diagonal[i] for j in range(3)) for i in range(3)),
                              Lattice(lattice.matrix * np.array(diagonal)[:, None]))
    # Every valid box has volume >= (2 cutoff)^3: the product of the widths never exceeds the volume.
    smallest = max(1, math.ceil((2.0 * cutoff) ** 3 / lattice.volume - 1e-9))
    tried = 0
    for n in range(smallest, fallback.copies):
        for hnf in _hermite_normal_forms(n):
            tried += 1
            if tried > MAX_CANDIDATES:
                return fallback
            reduced = Lattice(hnf @ lattice.matrix).get_lll_reduced_lattice()
            if perpendicular_widths(reduced.matrix).min() >= 2.0 * cutoff - 1e-6:
                # the reduced basis in unit-cell coordinates is still an integer matrix
                matrix = np.rint(reduced.matrix @ np.linalg.inv(lattice.matrix)).astype(int)
                return SimulationCell(tuple(tuple(int(x) for x in row) for row in matrix), reduced)
    return fallback


def _hermite_normal_forms(n: int):
    """All lower-triangular Hermite normal forms of determinant ``n`` (each supercell of size n once)."""
    for a in range(1, n + 1):
        if n % a:
            continue
        for c in range(1, n // a + 1):
            if (n // a) % c:
                continue
            f = n // (a * c)
            # below the diagonal, entries are reduced modulo the diagonal entry of their column
            for b, d, e in product(range(a), range(a), range(c)):
                yield np.array([[a, 0, 0], [b, c, 0], [d, e, f]], dtype=float)
