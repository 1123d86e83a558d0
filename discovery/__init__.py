"""MOF discovery: the chemistry core of an active-learning agent for carbon-capture MOFs.

Public API (imported lazily: ``import discovery`` stays fast and does not load pormake/jax)::

    from discovery import MOF, Assembler, Recipe, assemble, check_mof, compute_geometry, build_dataset, Oracle
    from discovery import Campaign  # the closed loop in this process (agents.campaign.Campaign: on Ray)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "MOF": "structures.mof", "CGView": "structures.mof", "Bead": "structures.mof", "load_structure": "structures.mof",
    "BuildingBlock": "library.building_blocks", "BuildingBlockLibrary": "library.building_blocks",
    "TopologyInfo": "library.topologies", "TopologyLibrary": "library.topologies",
    "Recipe": "library.assembly", "Assembler": "library.assembly", "assemble": "library.assembly",
    "check_structure": "structures.validity", "check_mof": "structures.validity", "ValidityReport": "structures.validity",
    "Geometry": "oracle.geometry.zeo", "GeometrySettings": "oracle.geometry.zeo", "compute_geometry": "oracle.geometry.zeo",
    "DesignSpace": "library.designspace", "Sampler": "library.designspace",
    "build_dataset": "library.dataset", "DatasetBuilder": "library.dataset",
    "Oracle": "oracle", "OracleSettings": "oracle", "OracleResult": "oracle", "evaluate_files": "oracle",
    "DiscoveryError": "errors", "StructureReadError": "errors", "IncompatibleCombinationError": "errors",
    "UnknownBuildingBlockError": "errors", "UnknownTopologyError": "errors", "AssemblyError": "errors",
    "GeometryError": "errors", "DatasetError": "errors",
    "CampaignConfig": "config", "load_config": "config", "ConfigError": "config",
    "CampaignState": "campaign.state", "LookupOracle": "campaign.oracles", "SimulationOracle": "campaign.oracles",
    "Campaign": "campaign", "Outcome": "campaign", "Candidate": "campaign",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'discovery' has no attribute {name!r}")
    module = _EXPORTS[name]
    return getattr(import_module(f".{module}", __name__), name)
