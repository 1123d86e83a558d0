"""The campaign core (``discovery.campaign``) on Ray: the executor that runs it with actors, and the
``Campaign`` the CLI and users build (the core with this executor and MLflow tracking by default).

``RayExecutor.run`` is asynchronous: round r is planned on the results of rounds up to r - 2 (the core's
``LAG``), so it is prepared (proposals, retraining) while round r - 1 is being evaluated and no oracle
worker waits for the planner. The core fixes what each round knows, so the selections are those of the
in-process executor with the same seed, interrupted and resumed or not.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import replace
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from discovery.campaign import core
from discovery.campaign.contracts import Outcome
from discovery.campaign.executor import Call, Executor, drive, progress_bar
from discovery.campaign.state import CampaignState
from discovery.errors import DiscoveryError

from agents.actors import OracleAgent, PartAgent
from agents.observer import MlflowObserver
from agents.runtime import connect, workers

log = logging.getLogger(__name__)
MAX_PLANNING_RETRIES = 2


class RayExecutor(Executor):
    """The generator and the surrogate in one actor each (no reserved CPU), a pool of oracle actors (one
    per CPU of the cluster by default), started when the campaign starts."""

    def __init__(self) -> None:
        self.agents: dict[str, Any] = {}
        self.builders: dict[str, Any] = {}  # object refs the agents are built from, alive while the campaign is
        self.oracles: list = []
        self.campaign: core.Campaign | None = None

    @property
    def workers(self) -> int:  # type: ignore[override]
        return len(self.oracles)

    def start(self, campaign: core.Campaign) -> None:
        self.campaign = campaign
        connect(campaign.config.resources)
        self.builders = {role: ray.put(getattr(campaign.parts, role)) for role in ("generator", "surrogate")}
        self.agents = {role: PartAgent.options(num_cpus=0).remote([ref]) for role, ref in self.builders.items()}

    def submit(self, call: Call):
        if call.role not in self.agents:
            raise DiscoveryError(f"no campaign part called {call.role!r}")
        return self.agents[call.role].call.remote(call.method, *call.args)

    def resolve(self, call: Call) -> Any:
        return ray.get(self.submit(call))

    def run(self, campaign: core.Campaign, progress: bool = True, plan: bool = True) -> None:
        _Scheduler(self, campaign, progress, plan).run()

    def oracle_pool(self) -> list:
        """The oracle workers: one slot per worker; with ``resources.oracle_concurrency`` c > 1, c slots
        share one actor (a threaded actor serving c calls at once)."""
        if not self.oracles:
            res = self.campaign.config.resources
            n, per = workers(res), res.oracle_concurrency
            actors = [OracleAgent.options(num_cpus=res.cpus_per_oracle, max_concurrency=per)
                      .remote(self.campaign.parts.oracle) for _ in range(-(-n // per))]
            self.oracles = [actors[i // per] for i in range(n)]
            _, waiting = ray.wait([a.pid.remote() for a in actors], num_returns=len(actors), timeout=60)
            if waiting:  # Ray waits for free CPUs silently; say so
                log.warning("%d of %d oracle actors have not started after 60 s: the cluster lacks free CPUs for "
                            "resources.oracle_workers x cpus_per_oracle (%s); waiting for them", len(waiting),
                            len(actors), ray.available_resources().get("CPU", 0))
        return self.oracles

    def close(self) -> None:
        for actor in {id(a): a for a in [*self.oracles, *self.agents.values()]}.values():
            ray.kill(actor)
        self.oracles, self.agents, self.builders = [], {}, {}


class Campaign(core.Campaign):
    """The campaign core on Ray (``RayExecutor``) with MLflow tracking as the config says (``track``
    overrides it). Parts: as for ``discovery.campaign.Campaign`` (``oracle=`` any ``Oracle``)."""

    def __init__(self, state: CampaignState, track: bool | None = None, **parts: Any) -> None:
        mlflow = state.config.tracking.mlflow if track is None else track
        parts.setdefault("executor", RayExecutor())
        parts.setdefault("observers", [MlflowObserver(state, mlflow)])
        super().__init__(state, **parts)


class _Scheduler:
    """Keeps every oracle worker busy: submits queued candidates, plans rounds ahead, retries crashed
    tasks, enforces the time limit, and records each result as it arrives."""

    def __init__(self, executor: RayExecutor, campaign: core.Campaign, progress: bool, plan: bool = True):
        self.ex, self.c, self.st, self.plan = executor, campaign, campaign.state, plan
        self.queue = deque(campaign.state.pending())  # a resumed campaign's unfinished work goes first
        self.in_flight: dict[Any, tuple[str, int, float, int]] = {}  # ref -> (id, worker, submitted, attempt)
        self.attempts: dict[str, int] = {}
        self.timed_out: set = set()
        self.reviving: dict[Any, int] = {}  # probe ref -> worker being restarted by Ray
        self.planning: list | None = None  # [generator, awaited ref, round]
        self.planning_failures = 0
        self.bar = progress_bar(self.st, disable=not progress)

    def run(self) -> None:
        pool = self.ex.oracle_pool()
        free = deque(range(len(pool)))
        try:
            while True:
                self._maybe_plan()
                while free and self.queue:
                    self._submit(self.queue.popleft(), free.popleft())
                self._maybe_plan()  # the queue may have just emptied: plan the next round now, not after a result
                refs = [*self.in_flight, *([self.planning[1]] if self.planning else [])]
                if not refs and not (self.queue and self.reviving):
                    break
                ready, _ = ray.wait([*refs, *self.reviving], num_returns=1, timeout=self._wait_s())
                for ref in ready:
                    if self.planning and ref == self.planning[1]:
                        self._advance_planning(ref)
                    elif ref in self.reviving:
                        free.extend(self._revived(ref))
                    else:
                        free.extend(self._finish(ref))
                self._enforce_timeout()
        finally:
            self.bar.close()

    # planning runs between results: one Ray call at a time, never blocking the workers
    def _maybe_plan(self) -> None:
        if not self.plan or self.planning or self.st.budget_left <= 0 or self.c.exhausted:
            return
        r = self.c.next_round()
        # plan a round ahead as soon as what it is conditioned on is complete, so that proposing and
        # retraining overlap the oracle work; at most about one round stays queued
        if len(self.queue) >= self.st.config.batch_size or not self.st.complete_through(r - core.LAG, self.c.promotion_lag):
            return
        self.planning = [self.c.planning(r, core.LAG, self.st.config.batch_size), None, r]
        self._step_planning(None)

    def _advance_planning(self, ref) -> None:
        try:
            value = ray.get(ref)
        except (RayActorError, RayTaskError) as exc:
            # a generator or surrogate agent died (Ray restarts it, empty): hand it the campaign's candidates
            # and latest model again and redo the round's planning; what was recorded is not redone
            self.planning_failures += 1
            if self.planning_failures > MAX_PLANNING_RETRIES:
                raise DiscoveryError(f"planning round {self.planning[2]} failed: {exc}") from exc
            log.warning("planning round %d failed (%s); retrying", self.planning[2], exc)
            drive(self.c.restore(), self.ex)
            self.planning = None
            self._maybe_plan()
            return
        self._step_planning(value)

    def _step_planning(self, value: Any) -> None:
        try:
            call = self.planning[0].send(value) if self.planning[1] is not None else next(self.planning[0])
            self.planning[1] = self.ex.submit(call)
        except StopIteration as stop:
            self.queue.extend(stop.value or [])
            self.planning = None

    def _submit(self, cid: str, worker: int) -> None:
        attempt = self.attempts.get(cid, 0) + 1
        self.attempts[cid] = attempt
        ref = self.ex.oracles[worker].evaluate.remote(self.c.candidate(cid))
        self.in_flight[ref] = (cid, worker, time.monotonic(), attempt)

    def _finish(self, ref) -> list[int]:
        """Record a finished task; returns the worker if it is free again (not while Ray restarts it)."""
        cid, worker, _, attempt = self.in_flight.pop(ref)
        try:
            outcome: Outcome = ray.get(ref)
        except (RayActorError, RayTaskError) as exc:
            # The worker died (or Ray is restarting it): a task sent now would fail too, so the worker
            # gets work again only once it answers a probe.
            if isinstance(exc, RayActorError):
                self._probe(worker)
            if ref in self.timed_out:
                outcome = Outcome.failed("timeout", f"no result within {self.st.config.oracle.timeout_s:.0f} s",
                                         attempts=attempt)
            elif attempt <= self.st.config.oracle.max_retries:
                log.warning("oracle task for %s failed (attempt %d): %s; retrying", cid, attempt, exc)
                self.queue.appendleft(cid)
                return [] if isinstance(exc, RayActorError) else [worker]
            else:
                kind = "worker_crash" if isinstance(exc, RayActorError) else "oracle_error"
                outcome = Outcome.failed(kind, str(exc)[-500:], attempts=attempt)
        else:
            outcome = _with_attempts(outcome, attempt)
        self.c.record_result(cid, outcome)
        self.bar.update(self.st.config.stage_units(self.st.stage_of(cid)))
        return [] if worker in self.reviving.values() else [worker]

    def _probe(self, worker: int) -> None:
        self.reviving[self.ex.oracles[worker].pid.remote()] = worker

    def _revived(self, ref) -> list[int]:
        worker = self.reviving.pop(ref)
        try:
            ray.get(ref)
        except RayActorError:  # still restarting: ask again shortly
            time.sleep(0.5)
            self._probe(worker)
            return []
        return [worker]

    def _wait_s(self) -> float:
        return max(0.5, min(30.0, self.st.config.oracle.timeout_s / 10))

    def _enforce_timeout(self) -> None:
        limit = self.st.config.oracle.timeout_s
        for ref, (cid, worker, t0, _) in list(self.in_flight.items()):
            if ref not in self.timed_out and time.monotonic() - t0 > limit:
                self.timed_out.add(ref)
                ray.kill(self.ex.oracles[worker], no_restart=False)  # Ray restarts it; the task fails


def _with_attempts(outcome: Outcome, attempt: int) -> Outcome:
    return replace(outcome, attempts=attempt) if attempt > 1 else outcome


__all__ = ["Campaign", "RayExecutor"]
