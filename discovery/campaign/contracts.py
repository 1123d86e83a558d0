"""The campaign's three contracts, one per noun, and the records that pass between them.

- ``Oracle.evaluate(candidate) -> Outcome``: the expensive truth (RASPA3, a table lookup, a lab).
- ``Generator.propose(n, context) -> candidate records`` and ``update(results)``: new MOFs each round.
- ``Surrogate.fit(version, ids, y)`` and ``botorch_inputs(...) -> (Model, X_pool, X_observed)``: a BoTorch
  model over the candidates that the planner selects with.

Each implementation writes the one (or two) methods marked abstract; the rest has defaults. The smallest
implementations are the worked examples: ``LookupOracle`` (``discovery.campaign.oracles``),
``TableGenerator`` (``discovery.campaign.generators``); ``docs/architecture.md`` walks through adding one.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from discovery.errors import DiscoveryError

STATUSES = ("ok", "failed")


@dataclass(frozen=True)
class Candidate:
    """What an oracle is asked to evaluate: the candidate's id and, when it has atoms, its structure as
    ``MOF.to_json()`` text (None for a table row that only has labels). ``levels``: the oracle levels this
    call runs (a funnel's screen or promotion); None: all the oracle's."""

    id: str
    mof_json: str | None = None
    levels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Outcome:
    """One oracle evaluation. ``values``: target name -> value in the targets' units (log10 of K_H in
    mol/kg/Pa etc.; ``discovery.oracle.core.TARGETS``), finite. A failure has ``reason`` (a short code) and
    ``message``; ``record`` is the oracle's full record (levels, settings, versions, CPU seconds). The
    executor fills in where and how long it ran."""

    status: str
    values: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    message: str | None = None
    record: dict[str, Any] | None = None
    worker: str | None = None
    started: float | None = None
    finished: float | None = None
    wall_s: float | None = None
    cpu_s: float | None = None
    attempts: int = 1

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise DiscoveryError(f"outcome status {self.status!r} is not one of {', '.join(STATUSES)}")
        bad = [k for k, v in self.values.items() if not isinstance(v, (int, float)) or not math.isfinite(v)]
        if bad:
            raise DiscoveryError(f"outcome values must be finite numbers; not {bad}")

    @classmethod
    def failed(cls, reason: str, message: str = "", **extra: Any) -> "Outcome":
        return cls("failed", {}, reason=reason, message=message, **extra)

    def to_event(self) -> dict[str, Any]:
        """The fields a campaign's log keeps (None fields left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ProposalContext:
    """What a generator knows when it proposes a round: ``exclude`` (ids already proposed), ``parents``
    (ids of the best results so far by the campaign's objectives, best first) and a seed fixed by the
    campaign seed and the round, so that a round proposes the same candidates when it is redone."""

    round: int
    seed: int
    exclude: frozenset[str] = frozenset()
    parents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Feedback:
    """A validated result handed to ``Generator.update``: the candidate's CG view (``cg``, may be None),
    its measured ``values`` and ``score``, the campaign's ranking of it (higher is better: its objective, or
    for several objectives its Pareto layer, with constraint violations last)."""

    id: str
    values: dict[str, float]
    score: float
    cg: dict[str, Any] | None = None


class Oracle(ABC):
    """Evaluates one candidate. Raise ``DiscoveryError`` (or return ``Outcome.failed``) for a candidate that
    cannot be evaluated; any other exception counts as a crashed evaluation, which executors retry."""

    name = "oracle"

    @abstractmethod
    def evaluate(self, candidate: Candidate) -> Outcome:
        """``candidate`` -> its ``Outcome`` (status ok with values, or failed with reason)."""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.name}


class Generator(ABC):
    """Proposes a round's candidates. A candidate record is a dict with ``id``, ``recipe``, ``origin``,
    ``status`` ("valid" or "invalid" with ``reason``/``message``) and, when valid, ``cg`` (the CG view the
    surrogate reads), ``descriptors`` and optionally ``mof_json`` (the structure the oracle simulates)."""

    name = "generator"
    learns = False  # True when ``update`` learns from results (the campaign skips the call otherwise)

    @abstractmethod
    def propose(self, n: int, context: ProposalContext) -> list[dict[str, Any]]:
        """Up to ``n`` new candidate records, none with an id in ``context.exclude``."""

    def update(self, results: Sequence[Feedback]) -> dict[str, Any] | None:
        """Learn from the validated results so far (all of them, each call; set ``learns``); returns what was
        done or None. The default learns nothing."""
        return None


class Surrogate(ABC):
    """A property model over candidates, for the planner. ``targets`` names its outputs in order."""

    targets: tuple[str, ...] = ()

    def add(self, records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """Take new candidate records (featurise them); returns ``id -> why`` for those it cannot score."""
        return {}

    @abstractmethod
    def fit(self, version: int, ids: Sequence[str], y: Any) -> dict[str, Any]:
        """Fit version ``version`` on candidates ``ids`` with observations ``y`` (``n x len(targets)``);
        returns ``{"version", "n_train", ...}``."""

    @abstractmethod
    def botorch_inputs(self, pool: Sequence[str], observed: Sequence[str], known: Any,
                       pinned: Any = None) -> tuple[Any, Any, Any]:
        """``(model, X_pool, X_observed)``: a BoTorch ``Model`` whose ``posterior(X)`` maps ``batch x q x d``
        inputs to ``len(targets)`` outputs, the pool's inputs (``len(pool) x d``) and the observed ones.
        ``pinned`` (campaigns with a funnel only): ``len(pool) x len(targets)``, the values a screen measured
        (NaN where not measured), which the posterior of those pool rows should hold fixed."""

    def predict(self, ids: Sequence[str]) -> tuple[Any, Any]:
        """Mean and standard deviation (``len(ids) x len(targets)`` arrays) of the last fitted version."""
        import numpy as np
        import torch

        model, X, _ = self.botorch_inputs(ids, [], np.zeros((0, len(self.targets))))
        with torch.no_grad():
            post = model.posterior(X.unsqueeze(-2))
        return (post.mean.squeeze(-2).numpy(), post.variance.clamp_min(0).sqrt().squeeze(-2).numpy())

    def load(self, version: int) -> None:
        """Restore a saved version (a resumed campaign); the default refits nothing and raises."""
        raise DiscoveryError(f"{type(self).__name__} cannot reload model version {version}")


def as_outcome(value: Outcome | Mapping[str, Any]) -> Outcome:
    """An oracle's answer as an ``Outcome`` (a mapping with the same fields is accepted, as users' oracles
    written before the contract return one)."""
    if isinstance(value, Outcome):
        return value
    if not isinstance(value, Mapping):
        raise DiscoveryError(f"the oracle returned {type(value).__name__}, not an Outcome")
    known = {k: value[k] for k in Outcome.__dataclass_fields__ if k in value}
    known["values"] = {k: float(v) for k, v in dict(known.get("values") or {}).items()}
    return Outcome(**{"status": "ok", **known})
