"""Oracles as a campaign calls them: ``evaluate(candidate) -> outcome``.

A candidate is a record (``id``, and ``mof_json`` for the simulation oracle); the outcome is
``{"status": "ok" | "failed", "values": {target: value}, "reason", "message", "record"}``. Any object
with this one method can be a campaign's oracle (a lab, another code, a test double).

- ``SimulationOracle``: the real oracle (RASPA3 Widom, Zeo++ geometry, ...) at the configured levels;
- ``LookupOracle``: the labels of a pool table, for benchmarks of the loop and of selection.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Mapping, Protocol

from .config import OracleConfig
from .errors import DiscoveryError
from .mof import MOF
from .oracle import Oracle, OracleSettings, target_values


class CampaignOracle(Protocol):
    def evaluate(self, candidate: Mapping[str, Any]) -> dict[str, Any]: ...


class SimulationOracle:
    def __init__(self, config: OracleConfig | None = None, seed: int = 0) -> None:
        c = config or OracleConfig()
        self.properties = c.properties
        self.settings = OracleSettings(charges=c.charges, target=c.target, first_cycles=c.first_cycles,
                                       max_cycles=c.max_cycles, qst_cycles=c.qst_cycles, seed=seed,
                                       trajectory_dir=c.trajectories)

    def evaluate(self, candidate: Mapping[str, Any]) -> dict[str, Any]:
        if not candidate.get("mof_json"):
            raise DiscoveryError(f"candidate {candidate.get('id')!r} carries no structure to simulate")
        result = Oracle(self.settings).evaluate(MOF.from_json(candidate["mof_json"]), tuple(self.properties))
        record = result.to_dict()
        if result.failures:
            level, why = next(iter(result.failures.items()))
            return {"status": "failed", "values": target_values(record), "reason": f"{level}:{why['reason']}",
                    "message": why["message"], "record": record}
        return {"status": "ok", "values": target_values(record), "record": record}

    def describe(self) -> dict[str, Any]:
        return {"kind": "raspa", "properties": list(self.properties), **asdict(self.settings)}


class LookupOracle:
    """Labels looked up in a pool table: instant, for benchmarks (config ``oracle.kind: lookup``)."""

    def __init__(self, rows: Mapping[str, Mapping[str, Any]], delay_s: float = 0.0) -> None:
        self.labels = {i: dict(r.get("labels", {})) for i, r in rows.items()}
        self.delay_s = delay_s  # each call lasts this long: stands in for simulation time in loop benchmarks

    def evaluate(self, candidate: Mapping[str, Any]) -> dict[str, Any]:
        time.sleep(self.delay_s)
        labels = self.labels.get(candidate["id"])
        if labels is None:
            return {"status": "failed", "values": {}, "reason": "not_in_table",
                    "message": f"{candidate['id']} has no labels in the lookup table"}
        if not labels:
            return {"status": "failed", "values": {}, "reason": "unlabelled", "message": "the table row has no labels"}
        return {"status": "ok", "values": labels}

    def describe(self) -> dict[str, Any]:
        return {"kind": "lookup", "n_labelled": len(self.labels), "delay_s": self.delay_s}
