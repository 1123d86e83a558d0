"""The campaign's Ray actors: thin wrappers that put the plain-Python parts on workers.

- ``OracleAgent`` (one per CPU by default): evaluates one candidate at a time and reports timings and
  where it ran; restarted by Ray when its process dies (the driver retries the task, then records a failure).
- ``GeneratorAgent``: proposes a round's candidates and prepares them (assembly, checks, descriptors).
- ``SurrogateAgent``: holds the adsorption surrogate (and the transport scorer when transport is an
  objective); fits new versions in the background while the oracle workers run, and builds the BoTorch
  model the planner selects with.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Mapping, Sequence

import numpy as np
import ray

from discovery.config import CampaignConfig
from discovery.errors import DiscoveryError


@ray.remote(max_restarts=-1, max_task_retries=0)
class OracleAgent:
    def __init__(self, config: CampaignConfig, oracle: Any = None) -> None:
        self.oracle = oracle if oracle is not None else default_oracle(config)
        self.name = f"{socket.gethostname()}:{ray.get_runtime_context().get_node_id()[:8]}:{os.getpid()}"

    def evaluate(self, candidate: Mapping[str, Any]) -> dict[str, Any]:
        t0, cpu0, start = time.monotonic(), time.process_time(), time.time()
        try:
            outcome = dict(self.oracle.evaluate(candidate))
        except DiscoveryError as exc:  # bad input is a failed evaluation, not a crashed worker
            outcome = {"status": "failed", "values": {}, "reason": type(exc).__name__, "message": str(exc)}
        if outcome.get("status") not in ("ok", "failed"):
            outcome = {"status": "failed", "values": {}, "reason": "bad_oracle_output",
                       "message": f"the oracle returned status {outcome.get('status')!r}"}
        return {**outcome, "worker": self.name, "started": start, "finished": time.time(),
                "wall_s": round(time.monotonic() - t0, 3), "cpu_s": round(time.process_time() - cpu0, 3)}

    def pid(self) -> int:
        return os.getpid()


@ray.remote(max_restarts=3, max_task_retries=1)
class GeneratorAgent:
    def __init__(self, config: CampaignConfig, run_dir: str | None = None) -> None:
        p = config.proposer
        self.config, self.diffusion = config, None
        self.table = load_table(config)  # read here: no large constructor argument
        if p.kind == "diffusion":
            from discovery.generator.campaign import CampaignGenerator

            self.diffusion = CampaignGenerator(p, run_dir, seed=config.seed)
            return
        from discovery.proposer import DesignSpaceProposer, TableProposer

        self.proposer = (TableProposer(list(self.table), p.mutation_fraction) if self.table is not None
                         else DesignSpaceProposer(mutation_fraction=p.mutation_fraction))
        self.version = f"{self.proposer.name}-v1"

    def propose(self, round_index: int, n: int, exclude: Sequence[str], parents: Sequence[str],
                feedback: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
        """Prepared candidate records of a round (seeded by campaign seed and round: reproducible).
        ``feedback``: the validated results so far (``id``, ``cg``, ``values``), which the diffusion
        generator fine-tunes on before it samples."""
        if self.diffusion is not None:
            return self.diffusion.propose(round_index, n, exclude, feedback)
        from discovery.candidates import prepare_proposals, table_candidate

        rng = np.random.default_rng([self.config.seed, round_index])
        proposals = self.proposer.propose(n, rng, exclude=set(exclude), parents=list(parents))
        if self.config.proposer.kind == "table":
            records = [{**table_candidate(self.table[p.recipe], p.origin), "parent": p.parent, "mutation": p.mutation}
                       for p in proposals]
        else:
            records = list(prepare_proposals(proposals))  # in this actor's process, in proposal order
        return [{**r, "generator": self.version} for r in records]


@ray.remote(max_restarts=3, max_task_retries=1)
class SurrogateAgent:
    def __init__(self, config: CampaignConfig, model_dir: str) -> None:
        import torch

        from surrogates.campaign_model import CampaignSurrogate

        # one thread: the oracle workers have the cores, and single-threaded training is reproducible
        # (a resumed campaign refits the same versions)
        torch.set_num_threads(1)
        from surrogates.ensemble import EnsembleConfig

        s = config.surrogate
        ensemble = EnsembleConfig(members=s.members, epochs=s.epochs, seed=config.seed)
        transport = None
        if config.uses_transport:
            from surrogates.transport_campaign import TransportScorer

            transport = TransportScorer(s.transport_model, simulated_ps=s.transport_ps, seed=config.seed)
        self.model = CampaignSurrogate(ensemble, kind=s.kind, model_dir=model_dir, transport=transport)

    def add(self, records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        return self.model.add(records)

    def fit(self, version: int, ids: Sequence[str], y: np.ndarray) -> dict[str, Any]:
        return self.model.fit(version, ids, y)

    def load(self, version: int) -> None:
        self.model.load(version)

    def targets(self) -> tuple[str, ...]:
        return self.model.targets

    def plan_inputs(self, pool: Sequence[str], observed: Sequence[str], known: np.ndarray):
        return self.model.botorch_inputs(pool, observed, known)

    def predict(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return self.model.predict(ids)


def load_table(config: CampaignConfig) -> dict[str, dict[str, Any]] | None:
    """The pool table of a ``proposer.kind: table`` campaign, by id (rows with a CG view), else None."""
    if config.proposer.kind != "table":
        return None
    from surrogates.data import POOL_TABLE, read_table

    _, rows = read_table(config.proposer.table or POOL_TABLE)
    return {r["id"]: r for r in rows if r.get("cg")}


def default_oracle(config: CampaignConfig):
    """The oracle a config names: the RASPA3 simulation oracle, or the lookup of a pool table's labels."""
    from discovery.campaign_oracles import LookupOracle, SimulationOracle

    if config.oracle.kind == "lookup":
        return LookupOracle(load_table(config), delay_s=config.oracle.lookup_delay_s)
    return SimulationOracle(config.oracle, seed=config.seed)
