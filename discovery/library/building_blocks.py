"""Building blocks (BBs): the metal nodes and organic linkers that MOFs are assembled from.

The library is pormake's database (648 nodes, 219 edges). A BB's id is its pormake name (``N16``,
``E14``), which is stable for a pinned pormake version. Connection points are pormake's dummy ``X``
atoms: where the BB bonds to its neighbours.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterator, Literal

import numpy as np

from discovery.library._pormake import database_dir, pormake
from discovery.structures.elements import is_metal
from discovery.errors import UnknownBuildingBlockError

Kind = Literal["node", "edge"]


@dataclass(frozen=True, eq=False)
class BuildingBlock:
    """One building block.

    ``symbols``/``positions`` (n x 3, Angstrom) include the ``X`` connection points, whose indices are
    ``connection_point_indices``; ``bonds`` (m x 2) index into the same atoms.
    """

    id: str
    symbols: tuple[str, ...]
    positions: np.ndarray
    connection_point_indices: tuple[int, ...]
    bonds: np.ndarray = field(repr=False)

    @property
    def n_connection_points(self) -> int:
        return len(self.connection_point_indices)

    @property
    def kind(self) -> Kind:
        # pormake's rule: exactly two connection points make an edge (a linker), anything else a node.
        return "edge" if self.n_connection_points == 2 else "node"

    @cached_property
    def atom_symbols(self) -> tuple[str, ...]:
        """Element symbols of the real atoms (connection points removed)."""
        return tuple(s for s in self.symbols if s != "X")

    @property
    def n_atoms(self) -> int:
        return len(self.atom_symbols)

    @cached_property
    def composition(self) -> dict[str, int]:
        return dict(sorted(Counter(self.atom_symbols).items()))

    @property
    def formula(self) -> str:
        return "".join(f"{el}{n if n > 1 else ''}" for el, n in self.composition.items())

    @cached_property
    def metals(self) -> tuple[str, ...]:
        return tuple(sorted({s for s in self.atom_symbols if is_metal(s)}))

    @property
    def has_metal(self) -> bool:
        return bool(self.metals)

    @property
    def connection_points(self) -> np.ndarray:
        return self.positions[list(self.connection_point_indices)]

    @property
    def centroid(self) -> np.ndarray:
        """Centroid of the connection points: where the BB's coarse-grained bead sits."""
        return self.connection_points.mean(axis=0)

    @cached_property
    def descriptors(self) -> dict[str, float]:
        """Cheap numeric descriptors (sizes in Angstrom, mass in amu)."""
        from ase.data import atomic_masses, atomic_numbers

        arms = np.linalg.norm(self.connection_points - self.centroid, axis=1)
        real = self.positions[[i for i, s in enumerate(self.symbols) if s != "X"]]
        extent = np.linalg.norm(real - self.centroid, axis=1).max() if len(real) else 0.0
        return {
            "n_atoms": float(self.n_atoms),
            "n_connection_points": float(self.n_connection_points),
            "mass": float(sum(atomic_masses[atomic_numbers[s]] for s in self.atom_symbols)),
            "arm_length_mean": float(arms.mean()),
            "arm_length_max": float(arms.max()),
            "extent": float(extent),
            "n_metal_atoms": float(sum(is_metal(s) for s in self.atom_symbols)),
            "bond_tilt_max": self.bond_tilt_max,
        }

    @cached_property
    def bond_tilt_max(self) -> float:
        """Largest angle (degrees) between a connection point's arm (centroid -> X) and its bond
        (anchor atom -> X). 0 when every outward bond points straight along its arm, as in Zn4O(CO2)6
        or benzene; pormake fits tilted BBs poorly, because it aligns arms, not bonds."""
        cps = set(self.connection_point_indices)
        worst = 0.0
        for i, j in self.bonds:
            for x, anchor in ((int(i), int(j)), (int(j), int(i))):
                if x in cps and anchor not in cps:
                    arm = self.positions[x] - self.centroid
                    bond = self.positions[x] - self.positions[anchor]
                    cos = arm @ bond / (np.linalg.norm(arm) * np.linalg.norm(bond) + 1e-12)
                    worst = max(worst, float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))))
        return round(worst, 3)

    def summary(self) -> dict:
        return {"id": self.id, "kind": self.kind, "formula": self.formula, "metals": list(self.metals),
                "connection_points": self.n_connection_points, **self.descriptors}


class BuildingBlockLibrary:
    """All of pormake's building blocks by id, loaded on first use."""

    def __init__(self) -> None:
        self._cache: dict[str, BuildingBlock] = {}
        self._ids = sorted((p.stem for p in (database_dir() / "bbs").glob("*.xyz")), key=natural_key)

    def ids(self, kind: Kind | None = None) -> list[str]:
        if kind is None:
            return list(self._ids)
        return [i for i in self._ids if self.get(i).kind == kind]

    def __contains__(self, bb_id: object) -> bool:
        return bb_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[BuildingBlock]:
        return (self.get(i) for i in self._ids)

    def get(self, bb_id: str) -> BuildingBlock:
        """The building block with this id; UnknownBuildingBlockError if there is none."""
        if bb_id not in self._cache:
            if bb_id not in self._ids:
                raise UnknownBuildingBlockError(
                    f"unknown building block {bb_id!r}: not among pormake's {len(self._ids)} ids "
                    "(N... nodes, E... edges; `discovery bb list` shows them)"
                )
            self._cache[bb_id] = _from_pormake(self.pormake_bb(bb_id))
        return self._cache[bb_id]

    def pormake_bb(self, bb_id: str):
        """A fresh pormake BuildingBlock (callers may move its atoms)."""
        if bb_id not in self._ids:
            self.get(bb_id)  # raises the named error
        return pormake().BuildingBlock(str(database_dir() / "bbs" / f"{bb_id}.xyz"))


def _from_pormake(bb) -> BuildingBlock:
    return BuildingBlock(
        id=bb.name,
        symbols=tuple(bb.atoms.get_chemical_symbols()),
        positions=np.array(bb.atoms.positions, dtype=float),
        connection_point_indices=tuple(int(i) for i in bb.connection_point_indices),
        bonds=np.asarray(bb.bonds, dtype=int).reshape(-1, 2),
    )


def natural_key(name: str) -> tuple[str, int]:
    """Sort key that puts N2 before N10."""
    return (name[0], int(name[1:]) if name[1:].isdigit() else 0)
