"""The campaign's oracles, implementations of ``discovery.campaign.contracts.Oracle``:
``evaluate(candidate) -> Outcome``.

- ``SimulationOracle``: the real oracle (RASPA3 Widom, Zeo++ geometry, ...) at the configured levels;
- ``LookupOracle``: the labels of a pool table, for benchmarks of the loop and of selection (the smallest
  implementation of the contract: read it first).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Mapping

from discovery.campaign.contracts import Candidate, Oracle, Outcome
from discovery.config import OracleConfig
from discovery.structures.mof import MOF
from discovery.oracle.core import Oracle as PhysicsOracle
from discovery.oracle.core import OracleSettings, target_values
from discovery.targets import LEVEL


class SimulationOracle(Oracle):
    name = "raspa"

    def __init__(self, config: OracleConfig | None = None, seed: int = 0) -> None:
        c = config or OracleConfig()
        self.properties = c.properties
        self.settings = OracleSettings.of(c, seed=seed)  # every setting the config section holds, and the seed

    def evaluate(self, candidate: Candidate) -> Outcome:
        if not candidate.mof_json:
            return Outcome.failed("no_structure", f"candidate {candidate.id!r} carries no structure to simulate")
        levels = tuple(candidate.levels or self.properties)
        result = PhysicsOracle(self.settings).evaluate(MOF.from_json(candidate.mof_json), levels)
        record = result.to_dict()
        if result.failures:
            level, why = next(iter(result.failures.items()))
            return Outcome("failed", target_values(record), reason=f"{level}:{why['reason']}",
                           message=why["message"], record=record)
        return Outcome("ok", target_values(record), record=record)

    def describe(self) -> dict[str, Any]:
        return {"kind": "raspa", "properties": list(self.properties), **asdict(self.settings)}


class LookupOracle(Oracle):
    """Labels looked up in a pool table: instant, for benchmarks (config ``oracle.kind: lookup``)."""

    name = "lookup"

    def __init__(self, rows: Mapping[str, Mapping[str, Any]], delay_s: float = 0.0) -> None:
        self.labels = {i: dict(r.get("labels", {})) for i, r in rows.items()}
        self.delay_s = delay_s  # each call lasts this long: stands in for simulation time in loop benchmarks

    def evaluate(self, candidate: Candidate) -> Outcome:
        time.sleep(self.delay_s)
        labels = self.labels.get(candidate.id)
        if labels is None:
            return Outcome.failed("not_in_table", f"{candidate.id} has no labels in the lookup table")
        if not labels:
            return Outcome.failed("unlabelled", "the table row has no labels")
        if candidate.levels is not None:  # a funnel's stage: only what its levels measure
            labels = {t: v for t, v in labels.items() if LEVEL.get(t) in candidate.levels}
        return Outcome("ok", labels)

    def describe(self) -> dict[str, Any]:
        return {"kind": "lookup", "n_labelled": len(self.labels), "delay_s": self.delay_s}
