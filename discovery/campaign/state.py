"""Campaign state: what a campaign knows, kept as an append-only event log in its run directory.

Every change is one JSON line in ``events.jsonl``, written and flushed before the campaign acts on it, so
a driver killed at any moment loses at most the line being written (and the oracle calls in flight, which
are simply run again). Replaying the log rebuilds the state exactly: candidates and why invalid ones were
rejected, each round's proposals and selection (with the model versions that proposed and scored them and
their predictions), every oracle result (ok or failed, with timings and worker), and the model versions.

Event types: ``proposed`` (a round's prepared candidates), ``model`` (a surrogate version and the results
it was trained on), ``selected`` (a round's picks), ``result`` (an oracle evaluation, or a value told by
the user), ``round_metrics``, ``generator`` (a generator fine-tuned on the results).

With a funnel (``oracle.screen``) a pick has a stage: ``selected`` events carry ``stages`` (id -> "screen" or
"promote"), and a ``result`` with ``"stage": "screen"`` that is ok is a screen (``screens``): the MOF can be
promoted later, and its final result (``results``) is that of its promotion, or of a failed screen.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Iterable

import numpy as np

from discovery.config import CampaignConfig, dump_config, load_config
from discovery.errors import DiscoveryError
from discovery.jsonl import append, open_for_append

log = logging.getLogger(__name__)
EVENTS = "events.jsonl"
CONFIG = "config.yaml"


@dataclass
class Round:
    index: int
    planned: bool = False  # its candidates were proposed (possibly none)
    proposed: list[str] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)
    strategy: str = ""
    model_version: int | None = None
    predictions: dict[str, dict[str, list]] = field(default_factory=dict)  # id -> {targets, mean, std}
    stages: dict[str, str] = field(default_factory=dict)  # a funnel's picks: id -> "screen" or "promote"

    def stage(self, candidate_id: str) -> str:
        return self.stages.get(candidate_id, "full")


class CampaignState:
    """Candidates, rounds, results and model versions of one run directory."""

    def __init__(self, run_dir: str | Path, config: CampaignConfig) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.candidates: dict[str, dict[str, Any]] = {}
        self.rounds: dict[int, Round] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.screens: dict[str, dict[str, Any]] = {}  # a funnel's ok screens, by id
        self.latest: dict[str, str] = {}  # id -> the stage of its latest pick, in pick order
        self._spent = 0.0
        self.models: dict[int, dict[str, Any]] = {}
        self.round_metrics: dict[int, dict[str, Any]] = {}
        self.generator_updates: list[dict[str, Any]] = []
        self.order: list[str] = []  # candidates in the order their results arrived
        self._log: IO[str] | None = None

    # ---- files -------------------------------------------------------------------------------------
    @classmethod
    def create(cls, run_dir: str | Path, config: CampaignConfig) -> "CampaignState":
        run_dir = Path(run_dir)
        if (run_dir / EVENTS).exists():
            raise DiscoveryError(f"{run_dir} already holds a campaign; resume it with `discovery resume {run_dir}` "
                                 "or choose another --run-dir")
        (run_dir / "structures").mkdir(parents=True, exist_ok=True)
        dump_config(config, run_dir / CONFIG)
        state = cls(run_dir, config)
        state._log = open_for_append(run_dir / EVENTS)
        return state

    @classmethod
    def open(cls, run_dir: str | Path, writable: bool = True) -> "CampaignState":
        """The state of a run directory. ``writable=False`` (readers: reports) changes nothing on disk, not
        even a torn last line, which may be a line a live campaign is writing; a writer (resume) cuts a torn
        last line first, and says so."""
        run_dir = Path(run_dir)
        if not (run_dir / CONFIG).exists():
            raise DiscoveryError(f"{run_dir} is not a campaign run directory (no {CONFIG})")
        state = cls(run_dir, load_config(run_dir / CONFIG))
        if writable:
            cut = _drop_partial_line(run_dir / EVENTS)
            if cut:
                log.warning("%s: cut a partial last line (%d bytes) left by an interrupted write; its action is "
                            "redone", run_dir / EVENTS, cut)
        for n, event in enumerate(read_events(run_dir / EVENTS), start=1):
            try:
                state._apply(event)
            except (KeyError, TypeError, AttributeError) as exc:
                state.close()
                kind = event.get("type") if isinstance(event, dict) else repr(event)
                raise DiscoveryError(f"{run_dir / EVENTS}: event {n} ({kind}) is malformed: missing or wrong "
                                     f"{exc}") from exc
        if writable:
            state._log = open_for_append(run_dir / EVENTS)
        return state

    def extend_budget(self, budget: int) -> None:
        if budget < self.spent:
            raise DiscoveryError(f"budget {budget} is below the {self.spent:g} evaluations already chosen")
        self.config = replace(self.config, budget=budget)
        dump_config(self.config, self.run_dir / CONFIG)

    def close(self) -> None:
        if self._log:
            self._log.close()
            self._log = None

    def record(self, event: dict[str, Any]) -> None:
        """Persist an event, then apply it."""
        if self._log is None:
            raise DiscoveryError("the campaign state is closed")
        append(self._log, event)
        self._apply(event)

    def save_structure(self, candidate_id: str, mof_json: str) -> Path:
        path = self.run_dir / "structures" / f"{candidate_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(mof_json)
        tmp.replace(path)  # atomic: a kill leaves the old file or the new one, never half of one
        return path

    def structure_json(self, candidate_id: str) -> str | None:
        path = self.run_dir / "structures" / f"{candidate_id}.json"
        return path.read_text() if path.exists() else None

    # ---- replay ------------------------------------------------------------------------------------
    def _apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "proposed":
            rnd = self.rounds.setdefault(event["round"], Round(event["round"]))
            rnd.planned = True
            for c in event["candidates"]:
                self.candidates.setdefault(c["id"], {**c, "round": event["round"]})
                rnd.proposed.append(c["id"])
        elif kind == "selected":
            rnd = self.rounds.setdefault(event["round"], Round(event["round"]))
            rnd.selected, rnd.strategy = list(event["ids"]), event["strategy"]
            rnd.model_version = event.get("model_version")
            rnd.predictions = event.get("predictions", {})
            rnd.stages = dict(event.get("stages", {}))
            for i in rnd.selected:
                self.latest.pop(i, None)  # re-inserted: ``latest`` keeps the order of the latest picks
                self.latest[i] = rnd.stage(i)
                self._spent += self.config.stage_units(rnd.stage(i))
        elif kind == "result":
            if event.get("stage") == "screen" and event["status"] == "ok":
                self.screens[event["id"]] = event
                return
            if event["id"] not in self.results:
                self.order.append(event["id"])
            self.results[event["id"]] = event
        elif kind == "model":
            self.models[event["version"]] = event
        elif kind == "round_metrics":
            self.round_metrics[event["round"]] = event
        elif kind == "generator":  # a generator fine-tuned on the results (its own record of what it did)
            self.generator_updates.append(event)
        else:
            raise DiscoveryError(f"{self.run_dir / EVENTS}: unknown event type {kind!r}")

    # ---- queries -----------------------------------------------------------------------------------
    @property
    def selected(self) -> list[str]:
        """Every candidate picked so far, once, in the order of its latest pick (a funnel picks a MOF again
        to promote it)."""
        return list(self.latest)

    def picks(self) -> list[tuple[int, str, str]]:
        """``(round, id, stage)`` of every pick in order; stage "full" without a funnel."""
        return [(r, i, self.rounds[r].stage(i)) for r in sorted(self.rounds) for i in self.rounds[r].selected]

    def round_of(self, candidate_id: str) -> int | None:
        return next((r for r in sorted(self.rounds) if candidate_id in self.rounds[r].selected), None)

    def stage_of(self, candidate_id: str) -> str:
        """The stage of a candidate's latest pick ("full" without a funnel, or when never picked)."""
        return self.latest.get(candidate_id, "full")

    def answered(self, candidate_id: str, stage: str) -> bool:
        """A pick at ``stage`` has its result (a screen's, ok or failed, or the final one)."""
        return candidate_id in self.results or (stage == "screen" and candidate_id in self.screens)

    def result_of(self, candidate_id: str, stage: str) -> dict[str, Any] | None:
        """The result event of a candidate's pick at ``stage``: a screen's (ok, or failed and final) or the
        final one; None while it runs."""
        final = self.results.get(candidate_id)
        if stage != "screen":
            return final
        return self.screens.get(candidate_id) or (final if final and final.get("stage") == "screen" else None)

    def pending(self) -> list[str]:
        """Candidates whose latest pick has no result yet (in flight, or queued)."""
        return [i for i in self.selected if not self.answered(i, self.stage_of(i))]

    @property
    def spent(self) -> float:
        """Budget units of every pick so far (one per full evaluation; ``CampaignConfig.stage_units``)."""
        return round(self._spent, 9)

    def ok_results(self, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        ids = self.order if ids is None else ids
        return [self.results[i] for i in ids if i in self.results and self.results[i]["status"] == "ok"]

    def complete_through(self, round_index: int, promote_lag: int = 0) -> bool:
        """Every candidate selected in rounds ``<= round_index`` has a result; a funnel's promotions only
        those of rounds ``<= round_index - promote_lag``."""
        return all(self.answered(i, s) for r, i, s in self.picks()
                   if r <= round_index - (promote_lag if s == "promote" else 0))

    def known(self, round_index: int, pick_round: int, stage: str, lag: int, promote_lag: int = 0) -> bool:
        """Round ``round_index`` knows the result of a pick of round ``pick_round``: it was ``lag`` rounds
        earlier, a funnel's promotion ``lag + promote_lag`` (fixed by the round structure, not by arrival
        order: reproducible)."""
        return pick_round <= round_index - lag - (promote_lag if stage == "promote" else 0)

    def basis_for(self, round_index: int, lag: int, promote_lag: int = 0) -> list[str]:
        """Ids of the ok results a round's model and selection are conditioned on (``known``)."""
        return [i for r, i, s in self.picks() if s != "screen" and self.known(round_index, r, s, lag, promote_lag)
                and i in self.results and self.results[i]["status"] == "ok"]

    def screened_for(self, round_index: int, lag: int, promote_lag: int = 0) -> list[str]:
        """A funnel's ok screens of rounds ``<= round_index - lag`` whose MOF has no final result in the
        basis (``basis_for``): the rest of what a round knows."""
        basis = set(self.basis_for(round_index, lag, promote_lag))
        return [i for r, i, s in self.picks() if r <= round_index - lag and s == "screen"
                and i in self.screens and i not in basis]

    def promotable(self, round_index: int, lag: int, promote_lag: int = 0) -> list[str]:
        """The screens round ``round_index`` knows of (``screened_for``) not picked for promotion yet."""
        return [i for i in self.screened_for(round_index, lag, promote_lag) if self.stage_of(i) == "screen"]

    def selectable(self) -> list[str]:
        """Valid candidates proposed so far and never selected, in proposal order."""
        chosen = set(self.selected)
        return [i for r in sorted(self.rounds) for i in self.rounds[r].proposed
                if i not in chosen and self.candidates[i]["status"] == "valid"]

    def values(self, ids: Iterable[str], targets: Iterable[str]) -> np.ndarray:
        """Measured values, ``n x len(targets)``: the final result's, else a screen's (NaN: not measured)."""
        targets = list(targets)
        rows = [(self.results.get(i) or self.screens[i])["values"] for i in ids]
        return np.array([[v.get(t, np.nan) for t in targets] for v in rows], dtype=float).reshape(-1, len(targets))

    @property
    def spent_done(self) -> float:
        """Budget units of the picks that have their result (progress bars)."""
        return round(self.spent - sum(self.config.stage_units(self.stage_of(i)) for i in self.pending()), 9)

    @property
    def budget_left(self) -> float:
        """Budget units left; 0 once they cannot pay for one more evaluation, or with a funnel one more
        promotion (a screen is worth its CPU only if a promotion can follow it)."""
        left = self.config.budget - self.spent
        least = self.config.stage_units("promote" if self.config.funnel else "full")
        return left if left > least - 1e-9 else 0.0

    @property
    def done(self) -> bool:
        return self.budget_left <= 0 and not self.pending()


def read_events(path: Path) -> list[dict[str, Any]]:
    """The log's events; a last line cut short by a kill is dropped (its action is redone)."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    events = []
    for n, line in enumerate(lines):
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if n < len(lines) - 1 and line.strip():
                raise DiscoveryError(f"{path}: line {n + 1} is corrupt ({exc})") from exc
    return events


def _drop_partial_line(path: Path) -> int:
    """Cut a last line that a kill left unfinished, so that later events start on a line of their own;
    returns the bytes cut."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as fh:
        fh.truncate(keep)
    return len(data) - keep
