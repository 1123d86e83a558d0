"""The simulated box both physics engines share: the smallest supercell of a MOF whose perpendicular widths
are all at least twice the cutoff (``discovery.structures.supercell``), its atoms' charges, and the pockets blocked in it.

One record, two views of it. RASPA3 reads fractions of the box: ``structure`` and ``blocking``. LAMMPS and the
coarse-grained dynamics read Cartesian coordinates in LAMMPS's restricted triclinic frame (a along x, b in
the xy plane, tilts reduced): ``cell``, ``positions`` and ``pockets``; that frame is the box lattice rotated,
so fractional coordinates carry over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np
from pymatgen.core import Lattice, Structure

from discovery.structures.mof import MOF
from discovery.oracle.geometry.pockets import pocket_images
from discovery.structures.supercell import perpendicular_widths, simulation_cell

CUTOFF_A = 12.8  # the protocol's Lennard-Jones and real-space cutoff (both engines); box widths >= 2 x cutoff


@dataclass(frozen=True)
class Box:
    """The simulated framework: the supercell, its atoms' charges, how it was made from the unit cell, and
    the blocked pocket spheres (every periodic image of each unit-cell pocket in the box)."""

    structure: Structure  # the supercell (P1): each unit-cell atom's copies together, in the unit cell's order
    charges: np.ndarray  # e, one per atom of ``structure``
    matrix: tuple[tuple[int, int, int], ...]  # rows: box vectors in unit-cell vectors
    unit_cell_A: np.ndarray  # rows a, b, c of the unit cell as given (the MOF's orientation, not LAMMPS's)
    blocking: tuple[tuple[float, float, float, float], ...] = ()  # (fractional x, y, z, radius A) in the box

    @property
    def copies(self) -> int:
        return round(abs(np.linalg.det(np.array(self.matrix))))

    @property
    def elements(self) -> list[str]:
        return [site.specie.symbol for site in self.structure]

    @property
    def unit_cell_width_A(self) -> float:
        """Smallest perpendicular width of the unit cell."""
        return float(perpendicular_widths(self.unit_cell_A).min())

    @cached_property
    def _rotated(self) -> np.ndarray:
        return lammps_cell(self.structure.lattice)  # the box lattice rotated: fractions carry over

    @cached_property
    def cell(self) -> np.ndarray:
        """Rows a, b, c of the box (A) in LAMMPS's frame, tilts reduced."""
        return reduce_tilt(self._rotated)

    @cached_property
    def positions(self) -> np.ndarray:
        """Cartesian positions (A) of the atoms in LAMMPS's frame, wrapped into ``cell``."""
        cart = self.structure.frac_coords @ self._rotated
        frac = cart @ np.linalg.inv(self.cell)
        return (frac - np.floor(frac)) @ self.cell

    @cached_property
    def pockets(self) -> np.ndarray:
        """(k, 4): Cartesian centre (A, LAMMPS's frame) and radius (A) of every blocked sphere."""
        spheres = np.array(self.blocking, dtype=float).reshape(-1, 4)
        return np.column_stack([spheres[:, :3] @ self._rotated, spheres[:, 3]])


def build_box(mof: MOF, charges: np.ndarray, cutoff: float = CUTOFF_A, pockets: Sequence = ()) -> Box:
    """The smallest supercell of ``mof`` whose perpendicular widths are all >= 2 x ``cutoff``, with ``charges``
    (one per unit-cell atom, already checked: ``discovery.oracle.charges.neutral_charges``) and every image of
    ``pockets`` (``discovery.oracle.geometry.pockets.Pocket``s or (fractional centre, radius) pairs of the unit cell)."""
    cell = simulation_cell(mof.structure.lattice, cutoff)
    box = cell.build(mof.structure.copy(site_properties={"charge": [float(x) for x in charges]}))
    return Box(structure=box, charges=np.array(box.site_properties["charge"], dtype=float), matrix=cell.matrix,
               unit_cell_A=np.array(mof.structure.lattice.matrix), blocking=pocket_images(pockets, cell.matrix))


def lammps_cell(lattice: Lattice) -> np.ndarray:
    """Rows a, b, c of LAMMPS's restricted triclinic cell (a along x, b in the xy plane): the lattice rotated,
    so fractional coordinates are unchanged."""
    a, b, c = lattice.abc
    al, be, ga = (math.radians(x) for x in lattice.angles)
    xy, xz = b * math.cos(ga), c * math.cos(be)
    ly = math.sqrt(b * b - xy * xy)
    yz = (b * c * math.cos(al) - xy * xz) / ly
    return np.array([[a, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, math.sqrt(c * c - xz * xz - yz * yz)]])


def reduce_tilt(cell: np.ndarray) -> np.ndarray:
    """The same lattice with tilts |xy| <= lx/2, |xz| <= lx/2, |yz| <= ly/2, as LAMMPS wants: c -= k b,
    c -= k a, b -= k a (integer k), which keeps the cell triangular."""
    a, b, c = (cell[i].copy() for i in range(3))
    c -= round(c[1] / b[1]) * b
    c -= round(c[0] / a[0]) * a
    b -= round(b[0] / a[0]) * a
    return np.array([a, b, c])
