"""The physics oracle: ``Oracle(settings).evaluate(mof, levels)`` (``core``) with its settings (``settings``),
framework charges, the simulation box, and one subpackage per engine: ``adsorption`` (RASPA3), ``geometry``
(Zeo++) and ``transport`` (LAMMPS molecular dynamics).

Names are imported lazily: ``discovery.oracle.settings`` (what a campaign config needs) stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"Oracle": "core", "OracleResult": "core", "evaluate_files": "batch", "LEVELS": "core", "TARGETS": "core",
            "target_values": "core", "OracleSettings": "settings"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'discovery.oracle' has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
