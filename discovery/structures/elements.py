"""Element facts shared by the building-block library and the validity checks."""

from __future__ import annotations

from functools import lru_cache

from ase.data import atomic_numbers, covalent_radii

from discovery.errors import StructureReadError

# The metals the curated design space draws its nodes from (the common MOF metals).
DESIGN_SPACE_METALS = frozenset({"Zn", "Cu", "Zr", "Co", "Ni", "Mg", "Al"})

# Non-metals and metalloids that appear in linkers; anything else with an atomic number is a metal here.
_NON_METALS = frozenset(
    {"H", "He", "B", "C", "N", "O", "F", "Ne", "Si", "P", "S", "Cl", "Ar", "As", "Se", "Br", "Kr",
     "Te", "I", "Xe", "X"}
)


def is_metal(symbol: str) -> bool:
    """True for metal elements (the dummy connection-point symbol X is not one)."""
    return symbol not in _NON_METALS


@lru_cache(maxsize=None)
def covalent_radius(symbol: str) -> float:
    """Covalent radius in Angstrom (Cordero et al., as tabulated by ASE).

    Raises StructureReadError for a symbol that is not a chemical element.
    """
    number = atomic_numbers.get(symbol)
    if number is None or number == 0:
        raise StructureReadError(f"unknown element {symbol!r}")
    return float(covalent_radii[number])


MAX_Z = 96  # beyond curium: no measured covalent radius (ASE's table holds a placeholder), none in a MOF


def check_elements(symbols: list[str] | tuple[str, ...], where: str = "structure") -> None:
    """Raise StructureReadError naming the first symbol that is not an element this project can handle."""
    for symbol in sorted(set(symbols)):
        number = atomic_numbers.get(symbol, 0)
        if number == 0:
            raise StructureReadError(f"{where}: unknown element {symbol!r}")
        if number > MAX_Z:
            raise StructureReadError(f"{where}: element {symbol} (Z {number}) is not supported: no covalent radius, "
                                     f"force-field or pore-geometry data beyond Z {MAX_Z}")
