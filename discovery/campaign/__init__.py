"""The campaign core in plain Python: ``Campaign`` (the round logic), the contracts its parts implement
(``Oracle``, ``Generator``, ``Surrogate``; ``contracts``), the in-process executor, the state (``state``: the
run directory's event log), the planner (BoTorch), reports and plots. ``agents`` runs the same core on Ray.

    from discovery.campaign import Campaign
    campaign = Campaign.from_config("configs/quickstart.yaml")  # in this process
    for r in campaign.rounds():
        print(r["round"], r["selected"])

Names are imported lazily: reading a run directory (``state``, ``report``) does not load BoTorch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Candidate": "contracts", "Feedback": "contracts", "Generator": "contracts", "Oracle": "contracts",
    "Outcome": "contracts", "ProposalContext": "contracts", "Surrogate": "contracts",
    "Campaign": "core", "LAG": "core", "Call": "executor", "Executor": "executor", "InProcessExecutor": "executor",
    "ArtifactWriter": "observers", "Observer": "observers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'discovery.campaign' has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
