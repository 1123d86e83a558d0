"""The MOF record: all atoms for the oracle, the coarse-grained view for the generator, and provenance.

Coarse-grained (CG) view, after MOFDiff: one bead per building block at the centroid of its
connection points, carrying the BB id, its fractional position and its orientation (the orthogonal
matrix that maps the library BB, centred on that centroid, onto the placed one; det = -1 when pormake
placed the mirror image).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pymatgen.core import Lattice, Structure

from discovery.structures.cif import read_cif, write_cif
from discovery.structures.elements import check_elements
from discovery.errors import StructureReadError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Bead:
    """One building block in the CG view."""

    bb_id: str
    role: Literal["node", "edge"]
    frac_coords: np.ndarray
    orientation: np.ndarray | None = None  # 3 x 3, library frame -> placed frame
    slot: int | None = None  # topology slot index, when built on a net

    def to_dict(self) -> dict[str, Any]:
        return {"bb_id": self.bb_id, "role": self.role, "frac_coords": _list(self.frac_coords),
                "orientation": None if self.orientation is None else _list(self.orientation),
                "slot": self.slot}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Bead":
        orientation = d.get("orientation")
        return cls(bb_id=d["bb_id"], role=d["role"], frac_coords=np.array(d["frac_coords"], dtype=float),
                   orientation=None if orientation is None else np.array(orientation, dtype=float),
                   slot=d.get("slot"))


@dataclass(frozen=True)
class CGView:
    """Coarse-grained view: topology (if known), lattice (3 x 3 rows, Angstrom) and beads."""

    lattice: np.ndarray
    beads: tuple[Bead, ...]
    topology: str | None = None

    @property
    def bb_ids(self) -> list[str]:
        return [b.bb_id for b in self.beads]

    def cart_coords(self) -> np.ndarray:
        return np.array([b.frac_coords for b in self.beads]) @ self.lattice

    def to_dict(self) -> dict[str, Any]:
        return {"topology": self.topology, "lattice": _list(self.lattice), "beads": [b.to_dict() for b in self.beads]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CGView":
        return cls(lattice=np.array(d["lattice"], dtype=float), topology=d.get("topology"),
                   beads=tuple(Bead.from_dict(b) for b in d["beads"]))


@dataclass
class MOF:
    """A metal-organic framework.

    ``charges`` (one per site, e) are None when unknown. ``atom_bead`` maps each atom to its bead in
    ``cg``. ``units``: the blocks ``cg`` names that are not pormake's (units cut from a real MOF,
    ``discovery.library.decompose``), as JSON rows by id. ``provenance`` says where the record came from
    (builder, recipe, versions, source file).
    """

    id: str
    structure: Structure
    charges: np.ndarray | None = None
    cg: CGView | None = None
    atom_bead: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    units: dict[str, dict] | None = None

    def __post_init__(self) -> None:
        n = len(self.structure)
        if n == 0 or not np.all(np.isfinite(self.structure.frac_coords)):
            raise StructureReadError(f"{self.id}: no atoms, or coordinates that are not finite numbers")
        if self.charges is not None:
            self.charges = np.asarray(self.charges, dtype=float)
            if self.charges.shape != (n,) or not np.all(np.isfinite(self.charges)):
                raise StructureReadError(f"{self.id}: charges must be {n} finite numbers")
        if self.atom_bead is not None:
            self.atom_bead = np.asarray(self.atom_bead, dtype=int)

    @property
    def formula(self) -> str:
        return self.structure.composition.formula.replace(" ", "")

    @property
    def n_atoms(self) -> int:
        return len(self.structure)

    @property
    def total_charge(self) -> float | None:
        return None if self.charges is None else float(self.charges.sum())

    # ---- conversions -------------------------------------------------------------------------
    def to_ase(self):
        """ASE Atoms (periodic), charges as initial charges when known."""
        from pymatgen.io.ase import AseAtomsAdaptor

        from ase import Atoms

        atoms = Atoms(AseAtomsAdaptor.get_atoms(self.structure))  # a plain Atoms, not pymatgen's subclass
        if self.charges is not None:
            atoms.set_initial_charges(self.charges)
        atoms.info["id"] = self.id
        return atoms

    def to_cif(self, path: str | Path | None = None) -> str:
        return write_cif(self.structure, path, charges=self.charges, name=self.id)

    @classmethod
    def from_cif(cls, path: str | Path, id: str | None = None, skip: tuple[str, ...] = ()) -> "MOF":
        """``skip``: CIF checks passed over on request (``formula``); their findings go to
        ``provenance["skipped_checks"]``."""
        findings: dict[str, str] = {}
        structure, charges, _ = read_cif(path, skip=skip, findings=findings)
        mof_id = id or Path(path).stem
        provenance = {"source": Path(path).name, **({"skipped_checks": findings} if findings else {})}
        return cls(id=mof_id, structure=structure, charges=charges, provenance=provenance)

    def to_dict(self) -> dict[str, Any]:
        s = self.structure
        return {
            "format_version": FORMAT_VERSION, "id": self.id,
            "lattice": _list(s.lattice.matrix), "species": [site.specie.symbol for site in s],
            "frac_coords": _list(s.frac_coords, 8),
            "charges": None if self.charges is None else _list(self.charges, 8),
            "cg": None if self.cg is None else self.cg.to_dict(),
            "atom_bead": None if self.atom_bead is None else self.atom_bead.tolist(),
            "provenance": self.provenance,
            **({"units": self.units} if self.units else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MOF":
        try:
            check_elements(d["species"], where=str(d.get("id")))
            structure = Structure(Lattice(d["lattice"]), d["species"], d["frac_coords"])
            cg = None if d.get("cg") is None else CGView.from_dict(d["cg"])
            return cls(id=d["id"], structure=structure, charges=d.get("charges"), cg=cg,
                       atom_bead=d.get("atom_bead"), provenance=d.get("provenance") or {}, units=d.get("units"))
        except (KeyError, TypeError, ValueError) as exc:
            raise StructureReadError(f"not a MOF record: {exc}") from None

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict())
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> "MOF":
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            try:
                text = Path(path_or_text).read_text()
            except OSError as exc:
                raise StructureReadError(f"{path_or_text}: {exc.strerror}") from None
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise StructureReadError(f"{path_or_text}: not JSON ({exc})") from None


def load_structure(path: str | Path, skip: tuple[str, ...] = ()) -> MOF:
    """A MOF from a ``.cif`` or a record ``.json`` file (``skip``: as for ``MOF.from_cif``)."""
    p = Path(path)
    if p.suffix.lower() == ".json":
        return MOF.from_json(p)
    if p.suffix.lower() == ".cif":
        return MOF.from_cif(p, skip=skip)
    raise StructureReadError(f"{p}: expected a .cif or .json file")


def _list(a: np.ndarray, decimals: int = 10) -> list:
    return np.round(np.asarray(a, dtype=float), decimals).tolist()
