"""The campaign driver: proposes, scores, selects and validates MOFs with Ray actors, round after round.

Rounds. A round proposes new candidates (generator agent), fits the surrogate on the results so far when
enough new ones arrived (surrogate agent), and selects a batch of them with the BoTorch planner, aware of
the candidates still being evaluated. Its candidates then go to the pool of oracle agents.

Two ways to drive it, on the same state:
- ``run()``: asynchronous. Round r is planned on the results of rounds up to r - 2, so it is prepared
  (proposals, retraining) while round r - 1 is being evaluated and no oracle worker waits for the planner.
  Because what a round knows is fixed by the round structure, not by the order in which results arrive, a
  campaign gives the same selections whether or not it was interrupted and resumed.
- ``step()`` (one synchronous round on everything known) and ``ask(n)`` / ``tell(results)`` (the caller is the
  oracle: a lab, another code).

Every event is in the run directory's log before the campaign acts on it (``discovery.campaign_state``):
``Campaign.resume(run_dir)`` after a crash or ``kill -9`` loses no result and repeats only the oracle calls
that were in flight.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any, Generator, Iterable, Iterator, Mapping, Sequence

import numpy as np
import ray
from ray.exceptions import RayActorError, RayTaskError
from tqdm import tqdm

from discovery import campaign_report as reports
from discovery.campaign_state import CampaignState
from discovery.config import CampaignConfig, load_config
from discovery.errors import DiscoveryError
from discovery.generator.campaign import ensure_generator
from discovery.planner import Planner

from .actors import GeneratorAgent, OracleAgent, SurrogateAgent, load_table
from .observer import CampaignObserver
from .runtime import connect, workers

log = logging.getLogger(__name__)
LAG = 2  # run(): round r is conditioned on the results of rounds <= r - LAG
N_PARENTS = 8  # best results handed to the proposer for mutation
MAX_PLANNING_RETRIES = 2
_UNSET = object()


class Campaign:
    """A discovery campaign in a run directory. Build it with ``from_config`` or ``resume``."""

    def __init__(self, state: CampaignState, oracle: Any = None, track: bool | None = None) -> None:
        self.state, self.config = state, state.config
        self.table = load_table(self.config)
        try:
            _check_transport_model(self.config)
        except DiscoveryError:
            state.close()  # nothing recorded yet; the run directory stays resumable once a model exists
            raise
        ensure_generator(self.config.proposer, self.config.seed)
        connect(self.config.resources)
        self.generator = GeneratorAgent.options(num_cpus=0).remote(_absolute_model(self.config), str(state.run_dir))
        self.surrogate = SurrogateAgent.options(num_cpus=0).remote(_absolute_model(self.config),
                                                                   str(state.run_dir / "models"))
        self.targets: tuple[str, ...] = tuple(ray.get(self.surrogate.targets.remote()))
        self.oracle = oracle  # None: the config's (built on each worker)
        self.observer = CampaignObserver(state, self.config.tracking.mlflow if track is None else track)
        self._oracles: list = []
        self._unscorable: dict[str, str] = {}
        self._exhausted = False
        self._threshold: Any = _UNSET
        self._restore()

    # ---- construction ------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: str | Path | Mapping[str, Any] | CampaignConfig, run_dir: str | Path | None = None,
                    overrides: Sequence[str] = (), oracle: Any = None, track: bool | None = None) -> "Campaign":
        """A new campaign. ``oracle``: any object with ``evaluate(candidate) -> outcome``
        (``discovery.campaign_oracles``); default: the one the config names."""
        if not isinstance(config, CampaignConfig):
            config = load_config(config, overrides)
        run_dir = Path(run_dir or Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        return cls(CampaignState.create(run_dir, config), oracle=oracle, track=track)

    @classmethod
    def resume(cls, run_dir: str | Path, oracle: Any = None, track: bool | None = None,
               budget: int | None = None) -> "Campaign":
        """Continue a campaign from its run directory, after an interruption or with a larger ``budget``."""
        state = CampaignState.open(run_dir)
        if budget is not None:
            state.extend_budget(budget)
        return cls(state, oracle=oracle, track=track)

    def _restore(self) -> None:
        """Hand the surrogate agent the candidates and the latest model of a resumed campaign."""
        valid = [c for c in self.state.candidates.values() if c["status"] == "valid"]
        if valid:
            self._unscorable.update(ray.get(self.surrogate.add.remote(self._with_structures(valid))))
        if self.state.models:
            ray.get(self.surrogate.load.remote(max(self.state.models)))

    # ---- the public API ----------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.state.run_dir

    def run(self, progress: bool = True) -> dict[str, Any]:
        """Run (or continue) the campaign until its budget is spent; returns the report."""
        self.observer.started()
        try:
            _Scheduler(self, progress).run()
        except BaseException:
            self.observer.finished("FAILED")
            raise
        return self.finish()

    def step(self) -> dict[str, Any]:
        """One synchronous round: plan on everything known, evaluate the batch, wait for it."""
        self.observer.started()
        r = self._next_round()
        picked = _drive(self._planning(r, lag=1, q=self.config.batch_size))
        _Scheduler(self, progress=False, plan=False).run()  # the round's picks and anything left pending
        return {"round": r, "selected": picked, **self.state.round_metrics.get(r, {})}

    def rounds(self) -> Iterator[dict[str, Any]]:
        """``for r in campaign.rounds(): ...``: synchronous rounds (``step``) until the budget is spent."""
        while self.state.budget_left > 0 and not self._exhausted:
            yield self.step()

    def ask(self, n: int | None = None) -> list[dict[str, Any]]:
        """Select up to n candidates for an outside oracle; give their results back with ``tell``."""
        r = self._next_round()
        picked = _drive(self._planning(r, lag=1, q=n or self.config.batch_size))
        return [self._public(i) for i in picked]

    def tell(self, results: Iterable[Mapping[str, Any]]) -> None:
        """Results of asked candidates: ``{"id": ..., "values": {target: value}}``, or ``"status": "failed"``
        with a ``reason``; values are log10 of K_H etc. as the targets name them."""
        for res in results:
            cid = res.get("id")
            if cid not in self.state.selected:
                raise DiscoveryError(f"tell: {cid!r} was not asked for")
            if cid in self.state.results:
                raise DiscoveryError(f"tell: {cid!r} already has a result")
            status = res.get("status", "ok")
            values = {k: float(v) for k, v in dict(res.get("values", {})).items()}
            bad = [k for k in values if k not in self.targets] + [k for k, v in values.items() if not np.isfinite(v)]
            if status not in ("ok", "failed") or bad or (status == "ok" and not values):
                raise DiscoveryError(f"tell {cid}: needs status ok/failed and finite values for {list(self.targets)}; "
                                     f"got status {status!r}, bad keys or values {bad}")
            self._record_result(cid, {"status": status, "values": values, "reason": res.get("reason"),
                                      "worker": res.get("worker", "told")})

    def best(self, k: int = 10):
        return reports.best(self.state, k)

    def pareto_front(self):
        return reports.pareto_front(self.state)

    def history(self):
        return reports.history(self.state)

    def report(self) -> dict[str, Any]:
        return reports.report(self.state)

    def finish(self) -> dict[str, Any]:
        """Final artifacts (campaign table, plots, best CIFs) to the run directory and MLflow."""
        self.observer.finished("FINISHED" if self.state.done else "KILLED")
        return self.report()

    def close(self) -> None:
        """Stop the campaign's actors (the state on disk stays; ``Campaign.resume`` continues it)."""
        if self.observer.tracker is not None:  # step()/ask() users: close the MLflow run with the artifacts
            self.finish()
        for actor in [*self._oracles, self.generator, self.surrogate]:
            ray.kill(actor)
        self._oracles = []
        self.state.close()

    # ---- planning: a generator of Ray calls, driven synchronously (ask/step) or by the scheduler ----
    def _next_round(self) -> int:
        return min([r for r, rnd in self.state.rounds.items() if not rnd.selected] or [len(self.state.rounds)])

    def _planning(self, r: int, lag: int, q: int) -> Generator[Any, Any, list[str]]:
        st = self.state
        basis = st.basis_for(r, lag)
        if r not in st.rounds or not st.rounds[r].planned:
            yield from self._propose(r, basis)
        version = yield from self._model(r, basis)
        pool = [i for i in st.selectable() if i not in self._unscorable]
        q = min(q, st.budget_left, len(pool))
        if q <= 0:
            self._exhausted = not pool
            return []
        lagging = {i for rr, rnd in st.rounds.items() if rr > r - lag for i in rnd.selected}
        pending = [i for i in st.selected if i in lagging or i not in st.results]
        planner = replace(self.config.planner_config(), seed=self.config.seed * 1000 + r)
        predictions: dict[str, dict] = {}
        if version is None:
            rows = Planner(replace(planner, strategy="random")).select(None, np.arange(len(pool))[:, None], None, q).rows
            strategy = "random"
        else:
            known = st.values(basis, self.targets)
            model, X, X_obs = yield self.surrogate.plan_inputs.remote([*pool, *pending], basis, known)
            rows = Planner(planner).select(model, X[: len(pool)], X_obs, q, pending=X[len(pool):] if pending else None).rows
            strategy = self.config.planner.strategy
            mean, std = yield self.surrogate.predict.remote([pool[i] for i in rows])
            predictions = {pool[i]: {"targets": list(self.targets), "mean": mean[k].tolist(), "std": std[k].tolist()}
                           for k, i in enumerate(rows)}
        picked = [pool[i] for i in rows]
        st.record({"type": "selected", "round": r, "ids": picked, "strategy": strategy, "model_version": version,
                   "n_basis": len(basis), "n_pending": len(pending), "predictions": predictions})
        return picked

    def _propose(self, r: int, basis: list[str]) -> Generator[Any, Any, None]:
        st = self.state
        order = np.argsort(-reports.objective_values(st, basis)[:, 0]) if basis else []
        parents = [basis[i] for i in order[:N_PARENTS]]
        records = yield self.generator.propose.remote(r, self.config.proposer.candidates_per_round,
                                                      list(st.candidates), parents, self._feedback(basis))
        structures = {}
        for rec in records:
            mof_json = rec.pop("mof_json", None)
            if mof_json:
                st.save_structure(rec["id"], mof_json)
                structures[rec["id"]] = mof_json
        st.record({"type": "proposed", "round": r, "candidates": records})
        self._unscorable.update((yield self.surrogate.add.remote(self._with_structures(records, structures))))

    def _with_structures(self, records: list[dict[str, Any]], structures: Mapping[str, str] | None = None):
        """The records with their structures, when a surrogate needs atoms (the transport rollouts)."""
        if not self.config.uses_transport:
            return records
        structures = structures or {}
        return [{**r, "mof_json": structures.get(r["id"]) or self.state.structure_json(r["id"])} for r in records]

    def _feedback(self, basis: list[str]) -> list[dict[str, Any]]:
        """What the diffusion generator fine-tunes on: the validated results of the basis, with CG views."""
        if self.config.proposer.kind != "diffusion":
            return []
        st = self.state
        return [{"id": i, "cg": st.candidates[i].get("cg"), "values": st.results[i].get("values", {})}
                for i in basis if st.results.get(i, {}).get("status") == "ok"]

    def _model(self, r: int, basis: list[str]) -> Generator[Any, Any, int | None]:
        """The surrogate version round r selects with (None: too few results yet, select at random)."""
        s, st = self.config.surrogate, self.state
        y = st.values(basis, self.targets)
        keep = np.isfinite(y).all(axis=1)
        if keep.sum() < s.min_train or self.config.planner.strategy == "random":
            return None
        last = st.models[max(st.models)] if st.models else None
        if last and (last["round"] == r or keep.sum() - last["n_train"] < s.retrain_every):
            return last["version"]
        version = last["version"] + 1 if last else 1
        info = yield self.surrogate.fit.remote(version, [b for b, k in zip(basis, keep) if k], y[keep])
        st.record({"type": "model", "round": r, **info})
        self.observer.retrained(info)
        return version

    # ---- results -----------------------------------------------------------------------------------
    def _record_result(self, cid: str, outcome: Mapping[str, Any]) -> None:
        event = {"type": "result", "id": cid, **{k: v for k, v in outcome.items() if k != "record"}}
        if outcome.get("record") is not None:
            event["oracle"] = _compact_record(outcome["record"])
        self.state.record(event)
        for r in sorted(self.state.rounds):  # rounds finish in order, whatever order their results arrive in
            if not self.state.rounds[r].selected or not self.state.complete_through(r):
                break
            if r not in self.state.round_metrics:
                self._round_done(r)

    def _round_done(self, r: int) -> None:
        if self._threshold is _UNSET:
            self._threshold = _top_threshold(self)
        metrics = reports.round_metrics(self.state, r, self._threshold, len(self._oracles) or None)
        self.state.record({"type": "round_metrics", **metrics})
        self.observer.round(r, metrics)

    def _public(self, cid: str) -> dict[str, Any]:
        cand = self.state.candidates[cid]
        rnd = self.state.rounds[self.state.round_of(cid)]
        path = self.run_dir / "structures" / f"{cid}.json"
        return {"id": cid, "recipe": cand["recipe"], "origin": cand["origin"], "round": rnd.index,
                "structure": str(path) if path.exists() else None, "prediction": rnd.predictions.get(cid)}

    def _payload(self, cid: str) -> dict[str, Any]:
        return {"id": cid, "mof_json": self.state.structure_json(cid)}

    def oracle_pool(self) -> list:
        if not self._oracles:
            res = self.config.resources
            config = _with_trajectories(self.config, self.state.run_dir)
            self._oracles = [OracleAgent.options(num_cpus=res.cpus_per_oracle).remote(config, self.oracle)
                             for _ in range(workers(res))]
            _, waiting = ray.wait([a.pid.remote() for a in self._oracles], num_returns=len(self._oracles), timeout=60)
            if waiting:  # Ray waits for free CPUs silently; say so
                log.warning("%d of %d oracle workers have not started after 60 s: the cluster lacks free CPUs for "
                            "resources.oracle_workers x cpus_per_oracle (%s); waiting for them", len(waiting),
                            len(self._oracles), ray.available_resources().get("CPU", 0))
        return self._oracles


class _Scheduler:
    """Keeps every oracle worker busy: submits queued candidates, plans rounds ahead, retries crashed
    tasks, enforces the time limit, and records each result as it arrives."""

    def __init__(self, campaign: Campaign, progress: bool, plan: bool = True):
        self.c, self.st, self.plan = campaign, campaign.state, plan
        self.queue = deque(campaign.state.pending())  # a resumed campaign's unfinished work goes first
        self.in_flight: dict[Any, tuple[str, int, float, int]] = {}  # ref -> (id, worker, submitted, attempt)
        self.attempts: dict[str, int] = {}
        self.timed_out: set = set()
        self.reviving: dict[Any, int] = {}  # probe ref -> worker being restarted by Ray
        self.planning: list | None = None  # [generator, awaited ref, round]
        self.planning_failures = 0
        self.bar = tqdm(total=self.st.config.budget, initial=len(self.st.results), desc="oracle calls",
                        disable=not progress, dynamic_ncols=True)

    def run(self) -> None:
        workers = self.c.oracle_pool()
        free = deque(range(len(workers)))
        try:
            while True:
                self._maybe_plan()
                while free and self.queue:
                    self._submit(self.queue.popleft(), free.popleft())
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
        if not self.plan or self.planning or self.st.budget_left <= 0 or self.c._exhausted:
            return
        r = self.c._next_round()
        # plan a round ahead as soon as what it is conditioned on is complete, so that proposing and
        # retraining overlap the oracle work; at most about one round stays queued
        if len(self.queue) >= self.st.config.batch_size or not self.st.complete_through(r - LAG):
            return
        gen = self.c._planning(r, LAG, self.st.config.batch_size)
        self.planning = [gen, None, r]
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
            self.c._restore()
            self.planning = None
            self._maybe_plan()
            return
        self._step_planning(value)

    def _step_planning(self, value: Any) -> None:
        try:
            self.planning[1] = self.planning[0].send(value) if self.planning[1] is not None else next(self.planning[0])
        except StopIteration as stop:
            self.queue.extend(stop.value or [])
            self.planning = None

    def _submit(self, cid: str, worker: int) -> None:
        attempt = self.attempts.get(cid, 0) + 1
        self.attempts[cid] = attempt
        ref = self.c._oracles[worker].evaluate.remote(self.c._payload(cid))
        self.in_flight[ref] = (cid, worker, time.monotonic(), attempt)

    def _finish(self, ref) -> list[int]:
        """Record a finished task; returns the worker if it is free again (not while Ray restarts it)."""
        cid, worker, _, attempt = self.in_flight.pop(ref)
        try:
            outcome = ray.get(ref)
        except (RayActorError, RayTaskError) as exc:
            # The worker died (or Ray is restarting it): a task sent now would fail too, so the worker
            # gets work again only once it answers a probe.
            if isinstance(exc, RayActorError):
                self._probe(worker)
            if ref in self.timed_out:
                outcome = {"status": "failed", "values": {}, "reason": "timeout",
                           "message": f"no result within {self.st.config.oracle.timeout_s:.0f} s"}
            elif attempt <= self.st.config.oracle.max_retries:
                log.warning("oracle task for %s failed (attempt %d): %s; retrying", cid, attempt, exc)
                self.queue.appendleft(cid)
                return [] if isinstance(exc, RayActorError) else [worker]
            else:
                kind = "worker_crash" if isinstance(exc, RayActorError) else "oracle_error"
                outcome = {"status": "failed", "values": {}, "reason": kind, "message": str(exc)[-500:]}
            outcome["attempts"] = attempt
        self.c._record_result(cid, outcome)
        self.bar.update()
        return [] if worker in self.reviving.values() else [worker]

    def _probe(self, worker: int) -> None:
        self.reviving[self.c._oracles[worker].pid.remote()] = worker

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
                ray.kill(self.c._oracles[worker], no_restart=False)  # Ray restarts it; the task fails


def _drive(gen: Generator[Any, Any, Any]) -> Any:
    """Run a planning generator to the end, waiting for each Ray call it yields."""
    try:
        ref = next(gen)
        while True:
            ref = gen.send(ray.get(ref))
    except StopIteration as stop:
        return stop.value


def _top_threshold(campaign: Campaign) -> float | None:
    """The first objective's value at the top ``top_fraction`` of a labelled reference: the campaign's own
    table, or for a design-space campaign whose oracle uses the same charges, the committed labelled design
    space (``top_found`` then counts MOFs as good as its top 1 %). None where no reference applies."""
    name = campaign.config.planner.objectives[0]
    if name not in campaign.targets:
        return None
    rows = list(campaign.table.values()) if campaign.table else None
    if rows is None:
        from surrogates.data import POOL_TABLE, read_table

        header, rows = read_table(POOL_TABLE)
        if header.get("charges") != campaign.config.oracle.charges:
            return None
    values = sorted((r["labels"][name] for r in rows if name in r.get("labels", {})), reverse=True)
    k = max(1, int(round(campaign.config.top_fraction * len(values))))
    return values[k - 1] if values else None


def _absolute_model(config: CampaignConfig) -> CampaignConfig:
    """The generator and transport models as absolute paths: a Ray worker need not start in the driver's
    directory."""
    model, transport = (str(Path(p).resolve()) for p in (config.proposer.model, config.surrogate.transport_model))
    return replace(config, proposer=replace(config.proposer, model=model),
                   surrogate=replace(config.surrogate, transport_model=transport))


def _with_trajectories(config: CampaignConfig, run_dir: Path) -> CampaignConfig:
    """The MD oracle keeps its trajectories (in the run directory unless the config names a folder), as an
    absolute path: they can extend the transport model's training data."""
    if "diffusivity" not in config.oracle.properties:
        return config
    folder = Path(config.oracle.trajectories or Path(run_dir) / "trajectories").resolve()
    return replace(config, oracle=replace(config.oracle, trajectories=str(folder)))


def _check_transport_model(config: CampaignConfig) -> None:
    """Fail before any actor starts when transport is an objective and its model is missing."""
    if config.uses_transport and not (Path(config.surrogate.transport_model) / "model.json").exists():
        raise DiscoveryError(
            f"no transport model at {config.surrogate.transport_model} (surrogate.transport_model), and "
            "log10_d_co2 is an objective: build MD trajectories (`discovery dataset trajectories DATASET --out DIR`) "
            "and train one with `discovery train transport --data DIR --out MODEL` (docs/transport.md)")


def _compact_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The oracle record without the bulky parts (settings, versions are the same for every call)."""
    return {k: v for k, v in record.items() if k not in ("settings",)}


__all__ = ["Campaign", "LAG"]
