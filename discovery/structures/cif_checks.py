"""Checks of a CIF at the boundary, before and after pymatgen reads it, so that malformed input is refused with
its file and problem named instead of turning into a plausible wrong structure: a cell that is not a cell (a
negative or zero length, angles that make no cell, a number that is not finite), coordinates that are not
finite numbers, atoms at the same place, and atoms that disagree with the CIF's own ``_chemical_formula_sum``
(an atom loop cut short, or edited).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from discovery.errors import StructureReadError

CELL = ("_cell_length_a", "_cell_length_b", "_cell_length_c", "_cell_angle_alpha", "_cell_angle_beta",
        "_cell_angle_gamma")
FRACT = ("_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z")
OCCUPIED = 0.99  # an occupancy below this is a partially occupied (disordered) site
COINCIDENT_A = 0.1  # atoms closer than this are the same atom written twice (bonds are >= ~0.7 A)
FORMULA_TOLERANCE = 0.005  # largest difference in any element's atom fraction (rounding in published formulas)


def number(text: Any) -> float:
    """A CIF number: ``1.234(5)`` -> 1.234; ValueError for anything else ('?', '.', words)."""
    return float(re.sub(r"\(\d+\)$", "", str(text).strip()))


def check_block(block: Any, labels: list[str], name: str) -> None:
    """StructureReadError naming the file and the problem for a bad cell, bad coordinates or coincident atoms."""
    cell = [_value(block, key, name) for key in CELL]
    if min(cell[:3]) <= 0:
        raise StructureReadError(f"{name}: cell lengths must be positive, got {cell[:3]}")
    if not all(0 < angle < 180 for angle in cell[3:]):
        raise StructureReadError(f"{name}: cell angles must lie between 0 and 180 degrees, got {cell[3:]}")
    cosines = np.cos(np.radians(cell[3:]))
    if 1 - (cosines ** 2).sum() + 2 * cosines.prod() <= 1e-8:
        raise StructureReadError(f"{name}: the cell angles {cell[3:]} make no cell (zero or negative volume)")
    columns = [block.data.get(key) for key in FRACT]
    if any(c is None for c in columns):
        raise StructureReadError(f"{name}: the atom loop has no fractional coordinates (_atom_site_fract_x/y/z)")
    if any(len(c) != len(labels) for c in columns):
        raise StructureReadError(f"{name}: the atom loop is broken ({len(labels)} labels, coordinates for "
                                 f"{[len(c) for c in columns]})")
    frac = np.array([[_coordinate(c[i], labels[i], name) for c in columns] for i in range(len(labels))])
    _check_occupancy(block, labels, name)  # before the overlap test: disorder is often written as overlaps
    _check_coincident(cell, frac, labels, name)


def _check_occupancy(block: Any, labels: list[str], name: str) -> None:
    occupancy = block.data.get("_atom_site_occupancy")
    if occupancy is None:
        return
    partial = [labels[i] for i, text in enumerate(occupancy) if _number_or_one(text) < OCCUPIED]
    if partial:
        raise StructureReadError(f"{name}: partial occupancies on {len(partial)} site(s), e.g. {partial[:3]}: a "
                                 "disordered structure (choose one configuration first)")


def _number_or_one(text: Any) -> float:
    """An occupancy; '?' or '.' (unknown) counts as a full site, as pymatgen reads it."""
    try:
        return number(text)
    except ValueError:
        return 1.0


def _value(block: Any, key: str, name: str) -> float:
    text = block.data.get(key)
    if text is None:
        raise StructureReadError(f"{name}: no {key}")
    return _finite(text, f"{name}: {key}")


def _coordinate(text: Any, label: str, name: str) -> float:
    return _finite(text, f"{name}: atom {label}: coordinate")


def _finite(text: Any, where: str) -> float:
    """A CIF number that is finite, else StructureReadError saying ``where`` and what was found."""
    try:
        value = number(text)
    except ValueError:
        raise StructureReadError(f"{where} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise StructureReadError(f"{where} {value} is not a finite number")
    return value


def _check_coincident(cell: list[float], frac: np.ndarray, labels: list[str], name: str) -> None:
    """Atoms of the listed sites (before symmetry) closer than ``COINCIDENT_A``, periodic images included."""
    from pymatgen.core import Lattice

    if len(frac) > 5000:  # O(n^2) memory; such files are rare and pymatgen merges exact duplicates
        return
    d = Lattice.from_parameters(*cell).get_all_distances(frac, frac)
    i, j = np.nonzero(np.triu(d < COINCIDENT_A, k=1))
    if len(i):
        pairs = ", ".join(f"{labels[a]}/{labels[b]} ({d[a, b]:.2f} A)" for a, b in list(zip(i, j))[:3])
        raise StructureReadError(f"{name}: {len(i)} pair(s) of atoms at the same place: {pairs}")


def check_formula(block: Any, structure: Any, name: str) -> str | None:
    """What is wrong when the atoms read disagree with the CIF's ``_chemical_formula_sum`` (None: they agree,
    or the CIF states no formula)."""
    from pymatgen.core import Composition

    stated = block.data.get("_chemical_formula_sum")
    if not stated or str(stated).strip() in ("?", "."):
        return None
    try:
        expected = Composition(str(stated)).fractional_composition
    except Exception:  # noqa: BLE001 - an unparsable formula states nothing we can check
        return None
    found = structure.composition.fractional_composition
    elements = {str(e) for e in expected} | {str(e) for e in found}
    worst = max(abs(expected[e] - found[e]) for e in elements)
    if worst <= FORMULA_TOLERANCE:
        return None
    return (f"{name}: the atoms read ({structure.composition.reduced_formula}) disagree with the CIF's "
            f"_chemical_formula_sum ({stated}): an atom loop cut short or edited?")
