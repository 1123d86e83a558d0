"""The campaign core: the round logic in plain Python, run by an executor.

A round proposes new candidates (``Generator``), fits the surrogate on the results so far when enough new
ones arrived (``Surrogate``), selects a batch with the BoTorch planner, aware of the candidates still being
evaluated, and hands the batch to the oracle (``Oracle``) through the executor. What a round knows is fixed
by the round structure: round r is conditioned on the results of rounds ``<= r - lag``, never on the order
in which results arrive, so the same seed gives the same selections in one process
(``InProcessExecutor``) and on a Ray cluster (``agents.RayExecutor``), interrupted or not.

Planning is written as a Python generator that yields ``Call``s (a role, a method, its arguments) and
receives their values: an executor decides where the generator and surrogate run (here, in Ray actors)
and whether it waits. Every event is in the run directory's log before the campaign acts on it
(``discovery.campaign.state``); persistence and tracking are observers.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Generator as PyGenerator, Iterable, Iterator, Mapping, Sequence

import numpy as np

from discovery.campaign import report as reports
from discovery.campaign.state import CampaignState
from discovery.config import CampaignConfig, load_config
from discovery.errors import DiscoveryError
from discovery.campaign.pareto import pareto_mask
from discovery.campaign.planner import Planner
from discovery.campaign.contracts import Candidate, Feedback, Outcome, ProposalContext, as_outcome
from discovery.campaign.executor import Call, Executor, InProcessExecutor, drive
from discovery.campaign.observers import ArtifactWriter, Observer
from discovery.campaign.parts import Parts, top_threshold

LAG = 2  # run(): round r is conditioned on the results of rounds <= r - LAG (the next round is prepared
# while the current one is evaluated)


class Campaign:
    """A discovery campaign in a run directory. Build it with ``from_config`` or ``resume``; pass parts
    (``generator``, ``surrogate``, ``oracle``: objects implementing ``discovery.campaign.contracts`` or
    zero-argument callables that build one) to replace the config's, and an ``executor`` (default: this
    process)."""

    def __init__(self, state: CampaignState, *, generator: Any = None, surrogate: Any = None, oracle: Any = None,
                 executor: Executor | None = None, observers: Sequence[Observer] | None = None) -> None:
        self.state, self.config = state, state.config
        self.observers = list(observers) if observers is not None else [ArtifactWriter(state)]
        self.executor = executor or InProcessExecutor()
        self.unscorable: dict[str, str] = {}
        self.exhausted = False
        self._finished = True  # nothing new to report yet
        try:
            self.parts = Parts.from_config(self.config, state.run_dir, generator, surrogate, oracle)
            self.executor.start(self)
            self.targets: tuple[str, ...] = tuple(self.executor.resolve(Call("surrogate", "targets")))
            self.generator_learns = bool(self.executor.resolve(Call("generator", "learns")))
            # read now, before any worker waits (the pool table takes ~0.2 s to read)
            self.threshold = top_threshold(self.config, self.targets)
            drive(self.restore(), self.executor)
        except BaseException:
            self.executor.close()
            state.close()  # what was recorded stays; the run directory stays resumable
            raise

    # ---- construction ------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: str | Path | Mapping[str, Any] | CampaignConfig, run_dir: str | Path | None = None,
                    overrides: Sequence[str] = (), **parts: Any) -> "Campaign":
        """A new campaign in ``run_dir`` (default ``runs/NAME-TIME``); ``parts``: as for ``Campaign``."""
        if not isinstance(config, CampaignConfig):
            config = load_config(config, overrides)
        run_dir = Path(run_dir or Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        existed = run_dir.exists()
        state = CampaignState.create(run_dir, config)
        try:
            return cls(state, **parts)
        except BaseException:
            if not existed and not state.rounds:  # nothing recorded: leave no half-made run directory behind
                shutil.rmtree(run_dir, ignore_errors=True)
            raise

    @classmethod
    def resume(cls, run_dir: str | Path, budget: int | None = None, **parts: Any) -> "Campaign":
        """Continue a campaign from its run directory, after an interruption or with a larger ``budget``."""
        state = CampaignState.open(run_dir)
        if budget is not None:
            state.extend_budget(budget)
        return cls(state, **parts)

    def restore(self) -> PyGenerator[Call, Any, None]:
        """Hand the surrogate the candidates and the latest model of a resumed campaign (also after its
        worker restarted)."""
        valid = [c for c in self.state.candidates.values() if c["status"] == "valid"]
        if valid:
            self.unscorable.update((yield Call("surrogate", "add", self.with_structures(valid))))
        if self.state.models:
            yield Call("surrogate", "load", max(self.state.models))

    # ---- the public API ----------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.state.run_dir

    @property
    def promotion_lag(self) -> int:
        """Rounds, beyond ``LAG``, before ``run()`` plans on a promotion's result (a funnel's MD takes minutes,
        its screens seconds: the rounds between keep the workers screening)."""
        return self.config.planner.promotion_lag if self.config.funnel else 0

    def run(self, progress: bool = True) -> dict[str, Any]:
        """Run (or continue) the campaign until its budget is spent; returns the report."""
        self._notify("started")
        try:
            self.executor.run(self, progress=progress, plan=True)
        except BaseException:
            self._notify("finished", "FAILED")
            raise
        return self.finish()

    def step(self) -> dict[str, Any]:
        """One synchronous round: plan on everything known, evaluate the batch, wait for it."""
        self._notify("started")
        r = self.next_round()
        picked = drive(self.planning(r, lag=1, q=self.config.batch_size), self.executor)
        self.executor.run(self, progress=False, plan=False)  # the round's picks and anything left pending
        return {"round": r, "selected": picked, **self.state.round_metrics.get(r, {})}

    def rounds(self) -> Iterator[dict[str, Any]]:
        """``for r in campaign.rounds(): ...``: synchronous rounds (``step``) until the budget is spent."""
        while self.state.budget_left > 0 and not self.exhausted:
            yield self.step()

    def ask(self, n: int | None = None) -> list[dict[str, Any]]:
        """Select up to n candidates for an outside oracle; give their results back with ``tell``."""
        r = self.next_round()
        picked = drive(self.planning(r, lag=1, q=n or self.config.batch_size), self.executor)
        return [self._public(i) for i in picked]

    def tell(self, results: Iterable[Mapping[str, Any] | Outcome]) -> None:
        """Results of asked candidates: ``{"id": ..., "values": {target: value}}``, or ``"status": "failed"``
        with a ``reason``; values are log10 of K_H etc. as the targets name them."""
        for res in results:
            cid = res.get("id") if isinstance(res, Mapping) else None
            if cid not in self.state.selected:
                raise DiscoveryError(f"tell: {cid!r} was not asked for")
            if cid in self.state.results:
                raise DiscoveryError(f"tell: {cid!r} already has a result")
            try:
                outcome = as_outcome({"worker": "told", **res})
            except (DiscoveryError, TypeError, ValueError) as exc:
                raise DiscoveryError(f"tell {cid}: {exc}") from exc
            bad = [k for k in outcome.values if k not in self.targets]
            if outcome.status == "ok" and not outcome.values and self.state.stage_of(cid) != "promote":
                raise DiscoveryError(f"tell {cid}: an ok result needs values for some of {list(self.targets)}")
            if bad:
                raise DiscoveryError(f"tell {cid}: unknown target(s) {bad}; this campaign's: {list(self.targets)}")
            self.record_result(cid, outcome)

    def best(self, k: int = 10):
        return reports.best(self.state, k)

    def pareto_front(self):
        return reports.pareto_front(self.state)

    def history(self):
        return reports.history(self.state)

    def report(self) -> dict[str, Any]:
        return reports.report(self.state)

    def finish(self) -> dict[str, Any]:
        """Final artifacts (campaign table, plots, best CIFs) to the run directory and the observers."""
        self._notify("finished", "FINISHED" if self.state.done else "KILLED")
        self._finished = True
        return self.report()

    def close(self) -> None:
        """Stop the executor's workers (the state on disk stays; ``Campaign.resume`` continues it)."""
        if not self._finished:  # step()/rounds()/ask() users: the artifacts and tracking runs are closed here
            self.finish()
        self.executor.close()
        self.state.close()

    def __enter__(self) -> "Campaign":
        return self

    def __exit__(self, *exc: object) -> None:  # ``with Campaign.from_config(...) as c:`` closes on errors too
        self.close()

    # ---- planning: a generator of calls, driven by the executor ------------------------------------
    def next_round(self) -> int:
        return min([r for r, rnd in self.state.rounds.items() if not rnd.selected] or [len(self.state.rounds)])

    def planning(self, r: int, lag: int, q: int) -> PyGenerator[Call, Any, list[str]]:
        """Propose (once per round), fit when due, select ``q``; returns the picked ids, recorded. With a
        funnel (``oracle.screen``) a pick screens a new MOF or promotes a screened one, whichever is worth
        more per CPU-second (``_funnel_costs``), within what is left of the budget."""
        st, funnel = self.state, self.config.funnel
        k = self.promotion_lag if lag >= LAG else 0  # run(): promotions reach the planner k rounds later
        basis = st.basis_for(r, lag, k)
        if r not in st.rounds or not st.rounds[r].planned:
            yield from self._propose(r, basis)
        version = yield from self._model(r, basis, st.screened_for(r, lag, k) if funnel else [])
        pool = [i for i in st.selectable() if i not in self.unscorable]
        promote = [i for i in st.promotable(r, lag, k) if self._passes_screen(i)] if funnel else []
        actions = [*pool, *promote]
        q = min(q, len(actions)) if funnel else min(q, int(st.budget_left), len(pool))
        if q <= 0 or st.budget_left <= 0:
            self.exhausted = not actions
            return []
        lagging = {i for rr, i, s in st.picks() if not st.known(r, rr, s, lag, k)}
        pending = [i for i in st.selected if i in lagging or not st.answered(i, st.stage_of(i))]
        planner = replace(self.config.planner_config(), seed=self.config.seed * 1000 + r)
        predictions: dict[str, dict] = {}
        if version is None:
            # before the first model a funnel screens at random (screens are what trains it); the random
            # strategy, a baseline, draws screens and promotions alike
            warmup = funnel and self.config.planner.strategy != "random" and pool
            drawn = pool if warmup else actions
            rows = Planner(replace(planner, strategy="random")).select(None, np.arange(len(drawn))[:, None], None,
                                                                      min(q, len(drawn))).rows
            strategy = "random"
        else:
            known = st.values(basis, self.targets)
            ids = [*actions, *pending]
            pins = (self._pins(ids, st.screened_for(r, lag, k)),) if funnel else ()
            model, X, X_obs = yield Call("surrogate", "botorch_inputs", ids, basis, known, *pins)
            costs = self._funnel_costs(Planner(planner), model, X[: len(pool)], len(promote)) if funnel else None
            rows = Planner(planner).select(model, X[: len(actions)], X_obs, q,
                                           pending=X[len(actions):] if pending else None, costs=costs,
                                           floor=funnel).rows
            strategy = self.config.planner.strategy
            mean, std = yield Call("surrogate", "predict", [actions[i] for i in rows])
            predictions = {actions[i]: {"targets": list(self.targets), "mean": mean[j].tolist(), "std": std[j].tolist()}
                           for j, i in enumerate(rows)}
        picked = [actions[i] for i in rows]
        event = {"type": "selected", "round": r, "ids": picked, "strategy": strategy, "model_version": version,
                 "n_basis": len(basis), "n_pending": len(pending), "predictions": predictions}
        if funnel:
            picked = self._affordable(picked, set(promote))
            if not picked:  # what is left of the budget pays for none of the picks worth making
                self.exhausted = True
                return []
            event.update(ids=picked, stages={i: "promote" if i in promote else "screen" for i in picked},
                         predictions={i: p for i, p in predictions.items() if i in picked})
        st.record(event)
        return picked

    # ---- the funnel: screen new MOFs cheaply, promote the screened ones worth their CPU --------------
    def _passes_screen(self, cid: str) -> bool:
        """The screen measured no violation of the constraints it can measure (e.g. the selectivity)."""
        import torch

        planner = self.config.planner_config()
        Y = torch.from_numpy(self.state.values([cid], self.targets))
        return all(not float(planner.output(name)(Y)[0]) < low for name, low in self._screen_gate())

    def _screen_gate(self) -> list[tuple[str, float]]:
        """The outcome constraints whose targets the screen's levels all measure."""
        from discovery.campaign.planner import DERIVED
        from discovery.targets import measured_by

        screened = set(measured_by(self.config.oracle.screen, self.targets))
        return [(name, low) for name, low in self.config.planner_config().minimum
                if set(DERIVED.get(name, (name,))) <= screened]

    def _pins(self, ids: Sequence[str], screened: Sequence[str]) -> np.ndarray:
        """The values of the screens a round knows (NaN elsewhere), for the surrogate to hold fixed."""
        known = set(screened)
        out = np.full((len(ids), len(self.targets)), np.nan)
        rows = [k for k, i in enumerate(ids) if i in known]
        if rows:
            out[rows] = self.state.values([ids[k] for k in rows], self.targets)
        return out

    def _funnel_costs(self, planner: Planner, model: Any, X_new: Any, n_promote: int) -> np.ndarray:
        """Expected CPU-s per pick: a promotion costs the promoted levels; a new MOF costs its screen plus,
        with the chance that it passes the screen's constraints, its promotion (a screen on its own realises
        nothing; what it buys is not spending the promotion on a MOF that fails)."""
        c_screen, c_promote = self.config.stage_cost("screen"), self.config.stage_cost("promote")
        gate = self._screen_gate()
        passes = planner.probability(model, X_new, gate) if gate and len(X_new) else np.ones(len(X_new))
        return np.concatenate([c_screen + passes * c_promote, np.full(n_promote, c_promote)])

    def _affordable(self, picked: list[str], promote: set[str]) -> list[str]:
        """The picks that the budget left pays for, promotions first (one it cannot pay is passed over); a
        screen only while a promotion can still follow it. Picks keep their order within each stage."""
        left, out = self.state.budget_left, []
        u_screen, u_promote = self.config.stage_units("screen"), self.config.stage_units("promote")
        for cid in [*(i for i in picked if i in promote), *(i for i in picked if i not in promote)]:
            units, reserve = (u_promote, 0.0) if cid in promote else (u_screen, u_promote)
            if units + reserve <= left + 1e-9:
                out.append(cid)
                left -= units
        return out

    def _propose(self, r: int, basis: list[str]) -> PyGenerator[Call, Any, None]:
        st = self.state
        ranked = self.ranked(basis)
        context = ProposalContext(round=r, seed=self.config.seed, exclude=frozenset(st.candidates),
                                  parents=tuple(ranked[: self.config.proposer.parents]))
        if self.generator_learns:  # one call less per round for a generator that learns nothing
            info = yield Call("generator", "update", self.feedback(basis))
            if info:
                st.record({"type": "generator", "round": r, **info})
        records = yield Call("generator", "propose", self.config.proposer.candidates_per_round, context)
        structures = {}
        for rec in records:
            mof_json = rec.pop("mof_json", None)
            if mof_json:
                st.save_structure(rec["id"], mof_json)
                structures[rec["id"]] = mof_json
        st.record({"type": "proposed", "round": r, "candidates": records})
        self.unscorable.update((yield Call("surrogate", "add", self.with_structures(records, structures))))

    def _model(self, r: int, basis: list[str], screened: Sequence[str] = ()) -> PyGenerator[Call, Any, int | None]:
        """The surrogate version round r selects with (None: too few results yet, select at random). A
        funnel's screens train it too, on the targets the screen measures (the others are NaN in ``y``)."""
        s, st = self.config.surrogate, self.state
        basis = [*basis, *screened]
        y = st.values(basis, self.targets)
        keep = np.isfinite(y).all(axis=1)
        if screened:
            from discovery.targets import measured_by

            cols = [self.targets.index(t) for t in measured_by(self.config.oracle.screen, self.targets)]
            keep = np.isfinite(y[:, cols]).all(axis=1) if cols else keep
        if keep.sum() < s.min_train or self.config.planner.strategy == "random":
            return None
        last = st.models[max(st.models)] if st.models else None
        if last and (last["round"] == r or keep.sum() - last["n_train"] < s.retrain_every):
            return last["version"]
        version = last["version"] + 1 if last else 1
        info = yield Call("surrogate", "fit", version, [b for b, k in zip(basis, keep) if k], y[keep])
        st.record({"type": "model", "round": r, **info})
        self._notify("retrained", info)
        return version

    # ---- what the parts are told -------------------------------------------------------------------
    def ranked(self, ids: Sequence[str]) -> list[str]:
        """``ids`` best first by the campaign's objectives and constraints: feasible before infeasible, then by
        Pareto layer (one objective: by value), then by the first objective."""
        if not ids:
            return []
        values = reports.objective_values(self.state, ids)
        feasible = self._feasible(ids)
        layer = np.full(len(ids), len(ids), dtype=int)
        for group in (feasible, ~feasible):  # layers among the feasible, and among the others
            left = group & np.isfinite(values).all(axis=1)
            k = 0
            while left.any():
                front = np.zeros(len(ids), dtype=bool)
                front[left] = pareto_mask(values[left])
                layer[front], left, k = k, left & ~front, k + 1
        first = np.nan_to_num(values[:, 0], nan=-np.inf)
        order = sorted(range(len(ids)), key=lambda i: (not feasible[i], layer[i], -first[i], i))
        return [ids[i] for i in order]

    def _feasible(self, ids: Sequence[str]) -> np.ndarray:
        planner = self.config.planner_config()
        if not planner.minimum:
            return np.ones(len(ids), dtype=bool)
        import torch

        Y = torch.from_numpy(self.state.values(ids, planner.targets))
        ok = np.ones(len(ids), dtype=bool)
        for name, low in planner.minimum:
            ok &= np.nan_to_num(planner.output(name)(Y).numpy(), nan=-np.inf) >= low
        return ok

    def feedback(self, basis: list[str]) -> list[Feedback]:
        """The validated results of the basis, scored by the campaign's ranking (higher is better)."""
        st = self.state
        ok = [i for i in basis if st.results.get(i, {}).get("status") == "ok"]
        rank = {cid: k for k, cid in enumerate(self.ranked(ok))}
        return [Feedback(i, dict(st.results[i].get("values", {})), float(len(ok) - rank[i]), st.candidates[i].get("cg"))
                for i in ok]

    def with_structures(self, records: list[dict[str, Any]], structures: Mapping[str, str] | None = None):
        """The records with their structures, when a surrogate needs atoms (the transport rollouts)."""
        if not self.config.uses_transport:
            return records
        structures = structures or {}
        return [{**r, "mof_json": structures.get(r["id"]) or self.state.structure_json(r["id"])} for r in records]

    def candidate(self, cid: str) -> Candidate:
        """What the oracle is asked: the structure and, with a funnel, the levels of the candidate's stage."""
        stage = self.state.stage_of(cid)
        levels = {"screen": self.config.oracle.screen, "promote": self.config.promote_levels}.get(stage)
        return Candidate(cid, self.state.structure_json(cid), tuple(levels) if levels else None)

    # ---- results -----------------------------------------------------------------------------------
    def record_result(self, cid: str, outcome: Outcome) -> None:
        event = {"type": "result", "id": cid, **outcome.to_event()}
        stage = self.state.stage_of(cid)
        if stage != "full":
            event["stage"] = stage
        if stage == "promote":  # the final values: the screen's and the promotion's
            event["values"] = {**self.state.screens[cid]["values"], **event.get("values", {})}
        if outcome.record is not None:  # settings are in the run's config.yaml: the same for every call
            event["oracle"] = {k: v for k, v in event.pop("record").items() if k != "settings"}
        self.state.record(event)
        self._finished = False
        for r in sorted(self.state.rounds):  # rounds finish in order, whatever order their results arrive in
            if not self.state.rounds[r].selected or not self.state.complete_through(r):
                break
            if r not in self.state.round_metrics:
                self._round_done(r)

    def _round_done(self, r: int) -> None:
        metrics = reports.round_metrics(self.state, r, self.threshold, self.executor.workers or None)
        self.state.record({"type": "round_metrics", **metrics})
        self._notify("round", r, metrics)

    def _public(self, cid: str) -> dict[str, Any]:
        """An asked candidate; with a funnel, the stage and the oracle levels it is asked for."""
        cand = self.state.candidates[cid]
        rnd = self.state.rounds[max(r for r, i, _ in self.state.picks() if i == cid)]  # its latest pick
        path = self.run_dir / "structures" / f"{cid}.json"
        out = {"id": cid, "recipe": cand["recipe"], "origin": cand["origin"], "round": rnd.index,
               "structure": str(path) if path.exists() else None, "prediction": rnd.predictions.get(cid)}
        if self.config.funnel:
            out.update(stage=rnd.stage(cid), levels=list(self.candidate(cid).levels or ()))
        return out

    def _notify(self, hook: str, *args: Any) -> None:
        for observer in self.observers:
            getattr(observer, hook)(*args)


__all__ = ["Campaign", "LAG"]
