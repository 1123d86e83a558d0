"""The campaign's Ray actors: thin shells that hold the plain-Python parts on workers.

- ``OracleAgent`` (one per CPU by default): evaluates one candidate at a time with the campaign's oracle
  (``discovery.campaign.executor.evaluate``: timings and where it ran); restarted by Ray when its process
  dies (the driver retries the task, then records a failure).
- ``PartAgent``: holds the generator or the surrogate, built on the worker from its builder (put once in
  Ray's object store: a diffusion generator's builder carries the model's bytes), and performs the core's
  calls on it (``discovery.campaign.executor.Call``).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable

import ray

from discovery.campaign.contracts import Candidate, Oracle, Outcome
from discovery.campaign.executor import Call, evaluate


@ray.remote(max_restarts=-1, max_task_retries=0)
class OracleAgent:
    def __init__(self, build: Callable[[], Oracle]) -> None:
        self.oracle = build()
        self.name = f"{socket.gethostname()}:{ray.get_runtime_context().get_node_id()[:8]}:{os.getpid()}"

    def evaluate(self, candidate: Candidate) -> Outcome:
        return evaluate(self.oracle, candidate, self.name)

    def pid(self) -> int:
        return os.getpid()


@ray.remote(max_restarts=3, max_task_retries=1)
class PartAgent:
    def __init__(self, build: list) -> None:
        # ``build``: [the builder's object ref]. Inside a list Ray hands the ref over unresolved; the driver
        # keeps it alive, so a restarted agent finds its builder (and the model bytes it carries) again.
        self.part = ray.get(build[0])()

    def call(self, method: str, *args: Any) -> Any:
        return Call("part", method, *args).apply(self.part)
