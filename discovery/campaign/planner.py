"""Which candidates to send to the oracle next: batch selection from a discrete pool with BoTorch.

Contract: ``Planner.select(model, candidates, observed, pending, q)`` returns q rows of ``candidates``.
``model`` is any BoTorch model over those rows (``surrogates.adsorption.botorch_model``: the GNN ensemble over row
indices, or a GP over feature vectors); the planner never looks inside it.

- one objective: qLogNoisyExpectedImprovement; several: qLogNoisyExpectedHypervolumeImprovement, with the
  pool pre-filtered to its best ``prefilter`` candidates by non-dominated rank of the posterior means (the
  hypervolume acquisition is too slow on thousands of candidates, stack.md);
- pending evaluations (``pending``) are conditioned on, and the batch is built greedily one point at a
  time with the earlier picks added to the pending set, as ``optimize_acqf_discrete`` does;
- large single-objective batches (``q > joint_above``): re-running qLogNEI for each pick costs O(q x n)
  posterior evaluations of a growing joint batch (0.5 s per pick at q = 128 on 512 candidates, which left
  128 workers idle). Above that size the posterior is sampled once, jointly over the baseline, the pending
  points and the candidates (an ensemble's members, or ``joint_samples`` draws otherwise), and each pick
  maximises the same Monte Carlo estimate qLogNEI makes, the log mean of the soft-plus improvement over
  the best feasible value of the baseline and the earlier picks, from those fixed samples: O(n) per pick;
- outcome constraints (e.g. a minimum CO2/N2 selectivity) enter the acquisition as BoTorch constraints;
  known constraints (validity, CO2-accessible pores) are a ``feasible`` mask: excluded rows are never picked;
- cost-aware multi-fidelity (a campaign's funnel, ``oracle.screen``): ``costs`` (the CPU-s each row's pick
  is expected to cost) divide the acquisition value, so that a pick's value is weighed per CPU-second;
  ``probability`` gives the chance that a MOF passes the constraints a screen measures, which sets the
  expected cost of carrying a new MOF through the funnel (``discovery.campaign.core``);
- baselines: ``random`` (uniform over feasible rows) and ``greedy`` (best posterior mean, no uncertainty).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from botorch.acquisition.logei import TAU_RELU, qLogNoisyExpectedImprovement
from botorch.acquisition.multi_objective.logei import (
    qLogNoisyExpectedHypervolumeImprovement,
)
from botorch.acquisition.multi_objective.objective import GenericMCMultiOutputObjective
from botorch.acquisition.objective import GenericMCObjective
from botorch.exceptions.warnings import BotorchWarning
from botorch.models.model import Model
from botorch.posteriors.ensemble import EnsemblePosterior
from botorch.utils.safe_math import log_softplus, logmeanexp
from torch import Tensor

from discovery.campaign.pareto import pareto_mask
from discovery.errors import DiscoveryError
from discovery.targets import ADSORPTION, KH_CO2, KH_N2, SELECTIVITY

STRATEGIES = ("botorch", "greedy", "random")
# objectives and constraints are expressions of the surrogate's outputs (targets), by name
DERIVED = {SELECTIVITY: (KH_CO2, KH_N2)}  # K_H(CO2) / K_H(N2), as a difference of logs


@dataclass(frozen=True)
class PlannerConfig:
    strategy: str = "botorch"
    objectives: tuple[str, ...] = (KH_CO2,)
    targets: tuple[str, ...] = ADSORPTION  # the model's outputs, in order
    minimum: tuple[tuple[str, float], ...] = ()  # outcome constraints: (expression, lowest acceptable value)
    prefilter: int = 300  # several objectives: candidates kept before the hypervolume acquisition
    chunk: int = 2048  # candidates per acquisition call
    joint_above: int = 16  # single objective, larger batches: greedy picks on one joint posterior sample
    joint_samples: int = 256  # draws of that sample when the posterior is not a finite ensemble
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise DiscoveryError(f"planner strategy {self.strategy!r} unknown; choose from {', '.join(STRATEGIES)}")
        if not self.objectives:
            raise DiscoveryError("planner needs at least one objective")
        for name in (*self.objectives, *(m[0] for m in self.minimum)):
            self.output(name)  # raises on an unknown name

    def output(self, name: str) -> Callable[[Tensor], Tensor]:
        """Maps model outputs ``... x m`` to the named quantity ``...``."""
        if name in self.targets:
            i = self.targets.index(name)
            return lambda Y: Y[..., i]
        if name in DERIVED and all(t in self.targets for t in DERIVED[name]):
            i, j = (self.targets.index(t) for t in DERIVED[name])
            return lambda Y: Y[..., i] - Y[..., j]
        known = [*self.targets, *(k for k, v in DERIVED.items() if all(t in self.targets for t in v))]
        raise DiscoveryError(f"unknown objective or constraint {name!r}; available: {', '.join(known)}")


@dataclass
class Selection:
    rows: list[int]  # into the candidates
    scores: list[float]  # the (log) acquisition value, or the mean objective for greedy, at the time of the pick
    # (joint-sample picks: the log expected improvement over the baseline, pending points and earlier picks)


class Planner:
    def __init__(self, config: PlannerConfig | None = None) -> None:
        self.config = config or PlannerConfig()
        self.rng = np.random.default_rng(self.config.seed)

    def select(self, model: Model | None, candidates: Tensor, observed: Tensor, q: int,
               pending: Tensor | None = None, feasible: np.ndarray | None = None,
               costs: np.ndarray | None = None, floor: bool = False) -> Selection:
        """``candidates``: ``n x d`` model inputs; ``observed``: ``k x d`` inputs already evaluated (the
        baseline); ``pending``: ``p x d`` inputs being evaluated now. Returns up to q distinct rows. With
        nothing observed, the baseline is the best predicted candidates, or with ``floor`` the worst (a
        funnel before its first promotion: every promotion improves on nothing validated)."""
        allowed = np.ones(len(candidates), bool) if feasible is None else np.asarray(feasible, bool).copy()
        if len(allowed) != len(candidates):
            raise DiscoveryError(f"feasible mask has {len(allowed)} entries for {len(candidates)} candidates")
        q = min(q, int(allowed.sum()))
        if q <= 0:
            return Selection([], [])
        if self.config.strategy == "random":
            rows = self.rng.choice(np.flatnonzero(allowed), size=q, replace=False)
            return Selection([int(r) for r in rows], [0.0] * q)
        means = self._posterior_means(model, candidates)
        if self.config.strategy == "greedy":
            return self._greedy(means, allowed, q)
        # BoTorch's samplers draw from torch's global generator: seed it, so that a selection depends on
        # the planner's seed alone (a resumed campaign repeats it), and leave the caller's state untouched
        with torch.random.fork_rng(), warnings.catch_warnings():
            torch.manual_seed(self.config.seed)
            # no feasible baseline point (a funnel's floor, or nothing has met the constraints yet): BoTorch
            # then improves on a lower bound of the objective, which is what is meant here; it warns
            warnings.filterwarnings("ignore", "When all training points are infeasible", BotorchWarning)
            return self._acquire(model, candidates, observed, pending, allowed, q, means, costs, floor)

    def probability(self, model: Model, candidates: Tensor,
                    constraints: tuple[tuple[str, float], ...] | list[tuple[str, float]]) -> np.ndarray:
        """Posterior probability that each candidate meets every ``(expression, minimum)`` of ``constraints``
        (the share of an ensemble's members, or of ``joint_samples`` draws, that do)."""
        c, out = self.config, []
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(c.seed)
            for chunk in torch.split(candidates, c.chunk):
                posterior = model.posterior(chunk.unsqueeze(-2))
                if isinstance(posterior, EnsemblePosterior):
                    draws = posterior.values.squeeze(-2).movedim(-2, 0)  # s x n x m
                else:
                    draws = posterior.rsample(torch.Size([c.joint_samples])).squeeze(-2)  # S x n x m
                ok = torch.ones(draws.shape[:-1], dtype=torch.bool)
                for name, low in constraints:
                    ok &= c.output(name)(draws) >= low
                out.append(ok.double().mean(0))
        return torch.cat(out).numpy() if out else np.zeros(0)

    # ---- baselines ---------------------------------------------------------------------------------
    def _posterior_means(self, model: Model, candidates: Tensor) -> Tensor:
        """Objectives of the posterior mean, ``n x n_objectives``."""
        with torch.no_grad():
            mean = torch.cat([model.posterior(c.unsqueeze(-2)).mean.squeeze(-2)
                              for c in torch.split(candidates, self.config.chunk)])
        return torch.stack([self.config.output(o)(mean) for o in self.config.objectives], dim=-1)

    def _greedy(self, means: Tensor, allowed: np.ndarray, q: int) -> Selection:
        order = _pareto_order(means, allowed)
        return Selection([int(r) for r in order[:q]], [float(means[r, 0]) for r in order[:q]])

    # ---- BoTorch -----------------------------------------------------------------------------------
    def _acquire(self, model, candidates, observed, pending, allowed, q, means, costs, floor=False) -> Selection:
        c = self.config
        if len(c.objectives) > 1 and allowed.sum() > c.prefilter:  # keep the most promising by mean rank
            keep = _pareto_order(means, allowed)[: c.prefilter]
            allowed = np.zeros_like(allowed)
            allowed[keep] = True
        if observed is None or len(observed) == 0:  # nothing measured yet: the best predicted are the baseline
            order = _pareto_order(means, np.ones(len(candidates), bool))
            observed = candidates[order[-8:] if floor else order[:8]]
        log_cost = np.zeros(len(candidates)) if costs is None else np.log(np.asarray(costs, float) / np.min(costs))
        if len(c.objectives) == 1 and q > c.joint_above:
            return self._joint_greedy(model, candidates, observed, pending, allowed, q, log_cost)
        acq = self._acquisition(model, observed, means[torch.from_numpy(allowed)])
        chosen, scores, rows = [], [], np.flatnonzero(allowed)
        for _ in range(q):
            acq.set_X_pending(_cat(pending, candidates[chosen]) if chosen or pending is not None else None)
            values = self._evaluate(acq, candidates[rows]) - log_cost[rows]
            values[np.isin(rows, chosen)] = -np.inf
            best = int(np.argmax(values))
            chosen.append(int(rows[best]))
            scores.append(float(values[best]))
        return Selection(chosen, scores)

    def _joint_greedy(self, model, candidates, observed, pending, allowed, q, log_cost) -> Selection:
        """Sequential greedy qLogNEI on one joint posterior sample (module docstring)."""
        c = self.config
        rows = np.flatnonzero(allowed)
        parts = [observed, candidates[rows]] + ([pending] if pending is not None and len(pending) else [])
        k, n = len(observed), len(rows)
        with torch.no_grad():
            posterior = model.posterior(torch.cat(parts))
            samples = (posterior.values if isinstance(posterior, EnsemblePosterior)  # every member, once
                       else posterior.rsample(torch.Size([c.joint_samples])))  # S x N x m
            obj = c.output(c.objectives[0])(samples)
            for name, value in c.minimum:  # an infeasible value improves nothing
                obj = obj.masked_fill(c.output(name)(samples) < value, -torch.inf)
        floor = obj[torch.isfinite(obj)].min() - 1.0 if torch.isfinite(obj).any() else torch.tensor(0.0)
        best = torch.cat([obj[:, :k], obj[:, k + n:], floor.expand(len(obj), 1)], dim=1).amax(1)  # S
        gains, chosen, scores = obj[:, k:k + n], [], []
        taken = torch.zeros(n, dtype=torch.bool)
        for _ in range(q):
            values = logmeanexp(log_softplus(gains - best[:, None], tau=TAU_RELU), dim=0).numpy() - log_cost[rows]
            values[taken.numpy()] = -np.inf
            j = int(np.argmax(values))
            taken[j] = True
            best = torch.maximum(best, gains[:, j])
            chosen.append(int(rows[j]))
            scores.append(float(values[j]))
        return Selection(chosen, scores)

    def _acquisition(self, model: Model, observed: Tensor, allowed_means: Tensor):
        c = self.config
        constraints = [_minimum(c.output(name), value) for name, value in c.minimum] or None
        if len(c.objectives) == 1:
            return qLogNoisyExpectedImprovement(model, X_baseline=observed, objective=GenericMCObjective(
                _objective(c.output(c.objectives[0]))), constraints=constraints, prune_baseline=True)
        outputs = [c.output(o) for o in c.objectives]
        objective = GenericMCMultiOutputObjective(lambda Y, X=None: torch.stack([f(Y) for f in outputs], -1))
        with torch.no_grad():
            base = objective(model.posterior(observed).mean)
        both = torch.cat([base, allowed_means.to(base)])
        span = (both.max(0).values - both.min(0).values).clamp_min(1e-6)
        ref_point = (base.min(0).values - 0.1 * span).tolist()  # just below the worst measured
        return qLogNoisyExpectedHypervolumeImprovement(model, ref_point=ref_point, X_baseline=observed,
                                                       objective=objective, constraints=constraints,
                                                       prune_baseline=True, cache_root=False)

    def _evaluate(self, acq, X: Tensor) -> np.ndarray:
        with torch.no_grad():
            return torch.cat([acq(chunk.unsqueeze(-2)) for chunk in torch.split(X, self.config.chunk)]).numpy()


def _objective(f: Callable[[Tensor], Tensor]) -> Callable:
    return lambda Y, X=None: f(Y)


def _minimum(f: Callable[[Tensor], Tensor], value: float) -> Callable[[Tensor], Tensor]:
    return lambda Y: value - f(Y)  # BoTorch: feasible where <= 0


def _cat(pending: Tensor | None, picked: Tensor) -> Tensor:
    return picked if pending is None else torch.cat([pending, picked])


def _pareto_order(values: Tensor, allowed: np.ndarray) -> np.ndarray:
    """Allowed rows sorted by non-dominated rank (maximising every column), ties by the first column; of
    identical rows only the first is on a front, the others on later ones (as BoTorch's ``is_non_dominated``)."""
    rows = np.flatnonzero(allowed)
    if values.shape[-1] == 1:
        return rows[np.argsort(-values[rows, 0].numpy(), kind="stable")]
    v = values.numpy()[rows]
    rank = np.zeros(len(rows), int)
    level, left = 0, np.ones(len(rows), bool)
    while left.any():
        idx = np.flatnonzero(left)[pareto_mask(v[left], deduplicate=True)]
        if not len(idx):  # only rows with a NaN are left: no front holds them, they come last
            idx = np.flatnonzero(left)
        rank[idx] = level
        left[idx] = False
        level += 1
    return rows[np.lexsort((-values[rows, 0].numpy(), rank))]
