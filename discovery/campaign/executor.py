"""Executors: where a campaign's parts run and how its rounds are driven.

The core yields ``Call``s to its generator and surrogate and asks the executor to evaluate candidates.
``InProcessExecutor`` does everything in this process, one thing at a time (tests, notebooks, a laptop
without Ray); ``agents.RayExecutor`` runs the same core with Ray actors: a pool of oracle workers kept busy,
the next round planned while the current one is evaluated, crashed workers restarted and their tasks
retried, a time limit per evaluation.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generator as PyGenerator

from tqdm import tqdm

from discovery.errors import DiscoveryError
from discovery.campaign.contracts import Candidate, Oracle, Outcome, as_outcome

if TYPE_CHECKING:
    from discovery.campaign.core import Campaign

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Call:
    """A method call on one of the campaign's parts: ``role`` is "generator" or "surrogate"."""

    role: str
    method: str
    args: tuple = ()

    def __init__(self, role: str, method: str, *args: Any) -> None:
        object.__setattr__(self, "role", role)
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "args", args)

    def apply(self, part: Any) -> Any:
        """The method's value (or the attribute's, for a call without arguments to a non-method)."""
        attr = getattr(part, self.method)
        return attr(*self.args) if callable(attr) else attr


class Executor(ABC):
    """Runs a campaign's parts. ``start`` builds them (from ``campaign.parts``), ``resolve`` performs one call
    and waits for its value, ``run`` evaluates the pending candidates and, with ``plan``, plans rounds until the
    budget is spent."""

    workers = 1  # oracle workers (for the utilisation metric)

    @abstractmethod
    def start(self, campaign: "Campaign") -> None: ...

    @abstractmethod
    def resolve(self, call: Call) -> Any: ...

    @abstractmethod
    def run(self, campaign: "Campaign", progress: bool = True, plan: bool = True) -> None: ...

    def close(self) -> None:
        """Release the workers; the default has none."""


def drive(gen: PyGenerator[Call, Any, Any], executor: Executor) -> Any:
    """Run a planning generator to the end, performing each call it yields and sending back its value."""
    try:
        call = next(gen)
        while True:
            call = gen.send(executor.resolve(call))
    except StopIteration as stop:
        return stop.value


def progress_bar(state: Any, disable: bool) -> tqdm:
    """Oracle calls against the budget, or with a funnel the budget spent (full evaluations' worth of CPU,
    a fraction per screen)."""
    if not state.config.funnel:
        return tqdm(total=state.config.budget, initial=state.spent_done, desc="oracle calls", disable=disable,
                    dynamic_ncols=True)
    return tqdm(total=state.config.budget, initial=state.spent_done, desc="budget spent (screens + promotions)",
                disable=disable, dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total:.0f} [{elapsed}<{remaining}]")


def worker_name() -> str:
    return f"{socket.gethostname()}:local:{os.getpid()}"


def evaluate(oracle: Oracle, candidate: Candidate, worker: str) -> Outcome:
    """One evaluation with its timings and worker. Bad input (``DiscoveryError``) is a failed outcome; any
    other exception propagates (a crashed evaluation, which the executor retries)."""
    t0, cpu0, start = time.monotonic(), time.process_time(), time.time()
    try:
        outcome = as_outcome(oracle.evaluate(candidate))
    except DiscoveryError as exc:
        outcome = Outcome.failed(type(exc).__name__, str(exc))
    return replace(outcome, worker=worker, started=start, finished=time.time(),
                   wall_s=round(time.monotonic() - t0, 3), cpu_s=round(time.process_time() - cpu0, 3))


class InProcessExecutor(Executor):
    """Everything in this process, in order: plan a round, evaluate its candidates, record, repeat. A crashed
    evaluation is retried ``oracle.max_retries`` times, then recorded as failed. No time limit is enforced
    (that needs a worker process to stop: use the Ray executor)."""

    def __init__(self) -> None:
        self.parts: dict[str, Any] = {}
        self.oracle: Oracle | None = None
        self.name = worker_name()

    def start(self, campaign: "Campaign") -> None:
        p = campaign.parts
        self.parts = {"generator": p.generator(), "surrogate": p.surrogate()}
        self.oracle = p.oracle()

    def resolve(self, call: Call) -> Any:
        if call.role not in self.parts:
            raise DiscoveryError(f"no campaign part called {call.role!r}")
        return call.apply(self.parts[call.role])

    def run(self, campaign: "Campaign", progress: bool = True, plan: bool = True) -> None:
        from discovery.campaign.core import LAG

        st = campaign.state
        bar = progress_bar(st, disable=not progress)
        try:
            while True:
                for cid in st.pending():
                    campaign.record_result(cid, self._evaluate(campaign, cid))
                    bar.update(st.config.stage_units(st.stage_of(cid)))
                if not plan or st.budget_left <= 0 or campaign.exhausted:
                    return
                if not drive(campaign.planning(campaign.next_round(), LAG, st.config.batch_size), self):
                    return
        finally:
            bar.close()

    def _evaluate(self, campaign: "Campaign", cid: str) -> Outcome:
        retries = campaign.config.oracle.max_retries
        for attempt in range(1, retries + 2):
            try:
                return replace(evaluate(self.oracle, campaign.candidate(cid), self.name), attempts=attempt)
            except Exception as exc:  # noqa: BLE001 - a crashed evaluation: retried, then recorded failed
                log.warning("oracle evaluation of %s failed (attempt %d): %s", cid, attempt, exc)
                error = exc
        return Outcome.failed("oracle_error", f"{type(error).__name__}: {error}"[-500:], worker=self.name,
                              attempts=retries + 1)
