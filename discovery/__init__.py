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
    "MOF": "mof", "CGView": "mof", "Bead": "mof", "load_structure": "mof",
    "BuildingBlock": "building_blocks", "BuildingBlockLibrary": "building_blocks",
    "TopologyInfo": "topologies", "TopologyLibrary": "topologies",
    "Recipe": "assembly", "Assembler": "assembly", "assemble": "assembly",
    "check_structure": "validity", "check_mof": "validity", "ValidityReport": "validity",
    "Geometry": "geometry", "GeometrySettings": "geometry", "compute_geometry": "geometry",
    "DesignSpace": "designspace", "Sampler": "designspace",
    "build_dataset": "dataset", "DatasetBuilder": "dataset",
    "Oracle": "oracle", "OracleSettings": "oracle", "OracleResult": "oracle", "evaluate_files": "oracle",
    "DiscoveryError": "errors", "StructureReadError": "errors", "IncompatibleCombinationError": "errors",
    "UnknownBuildingBlockError": "errors", "UnknownTopologyError": "errors", "AssemblyError": "errors",
    "GeometryError": "errors", "DatasetError": "errors",
    "CampaignConfig": "config", "load_config": "config", "ConfigError": "config",
    "CampaignState": "campaign_state", "LookupOracle": "campaign_oracles", "SimulationOracle": "campaign_oracles",
    "Campaign": "campaign", "Outcome": "campaign", "Candidate": "campaign",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'discovery' has no attribute {name!r}")
    module = _EXPORTS[name]
    return getattr(import_module(module if "." in module else f".{module}", __name__), name)
