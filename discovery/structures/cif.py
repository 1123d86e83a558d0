"""CIF reading and writing that keeps partial charges (``_atom_site_charge``).

pymatgen parses the CIF (symmetry expansion, oxidation-state labels, ...); charges are carried
through by giving every site a unique label before parsing and mapping the charges back by label.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from discovery.structures.cif_checks import check_block, check_formula
from discovery.structures.elements import check_elements
from discovery.errors import StructureReadError

CHARGE_KEY = "_atom_site_charge"


def read_cif(source: str | Path, *, text: str | None = None, skip: tuple[str, ...] = (),
             findings: dict[str, str] | None = None) -> tuple[Structure, np.ndarray | None, str]:
    """Parse a CIF file (or ``text``) into (structure, charges or None, data-block name).

    Raises StructureReadError naming the file and the problem for anything unreadable or inconsistent (the
    checks of ``cif_checks``). A check named in ``skip`` (only ``formula``) is passed over on request; what
    it found goes into ``findings``.
    """
    from pymatgen.io.cif import CifFile, CifParser

    name = str(source)
    try:
        if text is None:
            text = Path(source).read_text()
        cif = CifFile.from_str(text)
        block = next(iter(cif.data.values()))
    except FileNotFoundError:
        raise StructureReadError(f"{name}: no such file") from None
    except Exception as exc:  # pymatgen raises assorted errors on malformed text
        raise StructureReadError(f"{name}: not a readable CIF ({exc})") from None
    labels = block.data.get("_atom_site_label") or block.data.get("_atom_site_type_symbol")
    if not labels:
        raise StructureReadError(f"{name}: the CIF has no atom sites")
    check_block(block, labels, name)
    charges = _charges_by_label(block, labels, name)
    block.data["_atom_site_label"] = [f"a{i}" for i in range(len(labels))]
    _ensure_type_symbols(block, labels, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns about every rounding it fixes
            structure = CifParser.from_str(str(cif), occupancy_tolerance=1.0).parse_structures(primitive=False)[0]
    except Exception as exc:
        raise StructureReadError(f"{name}: pymatgen could not build a structure ({exc})") from None
    # Keep the file's atom order (pymatgen groups sites by species); copies made by symmetry follow their parent.
    order = sorted(range(len(structure)), key=lambda i: int(structure.labels[i][1:]))
    structure = Structure.from_sites([structure[i] for i in order])
    labels = structure.labels
    if charges is not None:
        charges = np.array([charges[int(lab[1:])] for lab in labels])
    structure.relabel_sites()
    formula = check_formula(block, structure, name)
    if formula and "formula" not in skip:
        raise StructureReadError(f"{formula} (`--skip-check formula` reads it anyway)")
    if formula and findings is not None:
        findings["formula"] = formula
    return structure, charges, block.header


def _charges_by_label(block, labels: list[str], name: str) -> list[float] | None:
    raw = block.data.get(CHARGE_KEY)
    if raw is None:
        return None
    try:
        values = [float(str(v).split("(")[0]) for v in raw]
    except ValueError:
        raise StructureReadError(f"{name}: non-numeric value in {CHARGE_KEY}") from None
    if len(values) != len(labels) or not np.all(np.isfinite(values)):
        raise StructureReadError(f"{name}: {CHARGE_KEY} has missing or non-finite values")
    return values


def _ensure_type_symbols(block, labels: list[str], name: str) -> None:
    """Give pymatgen element symbols to read, and check that they are elements."""
    symbols = block.data.get("_atom_site_type_symbol")
    if symbols is None:
        # Without a type column pymatgen reads the element from the label ("Zn1" -> Zn).
        symbols = ["".join(ch for ch in lab if ch.isalpha())[:2] for lab in labels]
        symbols = [s if len(s) < 2 or s[1].islower() else s[0] for s in symbols]
        block.data["_atom_site_type_symbol"] = symbols
        next(loop for loop in block.loops if "_atom_site_label" in loop).append("_atom_site_type_symbol")
    cleaned = ["".join(ch for ch in str(s) if ch.isalpha()) for s in symbols]
    check_elements(cleaned, where=name)


def write_cif(structure: Structure, path: str | Path | None = None, *, charges: np.ndarray | None = None,
              name: str = "mof") -> str:
    """Write a P1 CIF (charges in ``_atom_site_charge`` when given); returns the text."""
    lat = structure.lattice
    lines = [
        f"data_{_safe(name)}",
        "_symmetry_space_group_name_H-M   'P 1'",
        "_symmetry_Int_Tables_number   1",
        *(f"_cell_length_{k}   {v:.6f}" for k, v in zip("abc", lat.abc)),
        *(f"_cell_angle_{k}   {v:.6f}" for k, v in zip(("alpha", "beta", "gamma"), lat.angles)),
        f"_cell_volume   {lat.volume:.4f}",
        # the whole cell's formula: a reader can tell when the atom loop was cut short (cif_checks)
        f"_chemical_formula_sum   '{structure.composition.formula}'",
        "loop_", " _symmetry_equiv_pos_as_xyz", "  'x, y, z'",
        "loop_", " _atom_site_label", " _atom_site_type_symbol",
        " _atom_site_fract_x", " _atom_site_fract_y", " _atom_site_fract_z",
    ]
    if charges is not None:
        lines.append(f" {CHARGE_KEY}")
    counts: dict[str, int] = {}
    for i, site in enumerate(structure):
        el = site.specie.symbol
        counts[el] = counts.get(el, 0) + 1
        x, y, z = site.frac_coords
        row = f" {el}{counts[el]} {el} {x:.6f} {y:.6f} {z:.6f}"
        if charges is not None:
            row += f" {charges[i]:.6f}"
        lines.append(row)
    text = "\n".join(lines) + "\n"
    if path is not None:
        Path(path).write_text(text)
    return text


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "mof"
