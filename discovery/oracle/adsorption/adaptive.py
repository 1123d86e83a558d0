"""Adaptive Monte Carlo: independent runs until the pooled 95 % interval meets its target or a cycle cap.

Why a loop and not one follow-up sized from a first run: the first run's interval is itself an estimate, and
a short run can miss the rare, strongly bound insertions that weigh most in K_H near polar sites, so it can
underestimate how many cycles are needed. Sized once, the follow-up then stops wherever it lands: on
ZnMOF-74 with DDEC charges a 5 % target with a 5,000-cycle cap ended at 15.5 % after 1,065 cycles. Here
the interval is judged again after every run, on all the runs pooled, and the result says whether the
target was met (``converged``).

Engine-neutral: ``run_until_target`` takes the run as a function of (cycles, seed), so the RASPA3 Widom and
GCMC runs use it and so can any other Monte Carlo engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Generic, Sequence, TypeVar

R = TypeVar("R")

# a little beyond the 1/sqrt(cycles) estimate, which the next interval scatters around; it also makes every
# further run at least 10 % of the cycles done (missing > (MARGIN - 1) x done): no string of tiny runs
MARGIN = 1.1


@dataclass(frozen=True)
class AdaptiveRuns(Generic[R]):
    """The independent runs made (seeds ``seed``, ``seed + 1``, ...), the relative 95 % half-width of their
    pooled estimate, and whether it met the target (False: the cap stopped the runs first)."""

    runs: list[R]
    relative_ci: float
    converged: bool


def pool(estimates: Sequence[tuple[int, float, float]]) -> tuple[float, float]:
    """Cycle-weighted mean of independent estimates ``(cycles, value, ci95)`` and the 95 % half-width of that
    mean. One estimate comes back unchanged (bit for bit: results that needed one run stay as they were).

    Runs that disagree beyond their own intervals (chi-square above its 95th percentile) show that those
    intervals are too small, as RASPA3's Widom runs are on charged frameworks, where a rare heavy insertion
    decides K_H (docs/oracle.md): the pooled half-width is then scaled by sqrt(chi2 / (runs - 1)), the
    Particle Data Group's scale factor, so that the result does not claim a target it has not met."""
    if len(estimates) == 1:
        return estimates[0][1], estimates[0][2]
    n = sum(c for c, _, _ in estimates)
    mean = sum(c * v for c, v, _ in estimates) / n
    return mean, math.hypot(*(c * h for c, _, h in estimates)) / n * scale_factor(estimates, mean)


def scale_factor(estimates: Sequence[tuple[int, float, float]], mean: float) -> float:
    """1, or sqrt(chi2 / (k - 1)) when the k estimates' chi-square about ``mean`` is above its 95th percentile."""
    from scipy.special import chdtri  # the chi-square quantile, without scipy.stats' second of imports

    sigmas = [h / 1.96 for _, _, h in estimates]
    if any(not (s > 0) for s in sigmas):  # an estimate without a usable interval: nothing to test against
        return 1.0
    chi2 = sum(((v - mean) / s) ** 2 for (_, v, _), s in zip(estimates, sigmas))
    dof = len(estimates) - 1
    return math.sqrt(chi2 / dof) if chi2 > float(chdtri(dof, 0.05)) else 1.0


def relative(value: float, ci95: float) -> float:
    """``ci95 / value``; infinite when the value is not positive (no interval can be judged against it)."""
    return ci95 / value if value > 0 else math.inf


def next_cycles(relative_ci: float, target: float, done: int, cap: int) -> int:
    """Cycles of the next run: 0 when the target is met or ``cap`` reached; else what the 1/sqrt(cycles) rule
    says is missing (with ``MARGIN``: at least 10 % of the cycles done), never beyond ``cap``."""
    if relative_ci <= target or done >= cap:
        return 0
    if not math.isfinite(relative_ci):  # nothing to size from (K_H 0 or NaN so far): go to the cap
        return cap - done
    missing = math.ceil(done * (relative_ci / target) ** 2 * MARGIN) - done
    return min(cap - done, max(missing, 1))


def run_until_target(run: Callable[[int, int], R], relative_ci: Callable[[list[R]], float], *, target: float,
                     first_cycles: int, max_cycles: int, seed: int) -> AdaptiveRuns[R]:
    """Call ``run(cycles, seed)`` with seeds ``seed``, ``seed + 1``, ... until ``relative_ci(runs)`` (the pooled
    relative 95 % half-width of all runs so far) is within ``target`` or ``max_cycles`` cycles are done.
    The first run has ``first_cycles`` (at most ``max_cycles``, at least 1)."""
    runs: list[R] = []
    done, cycles = 0, max(1, min(first_cycles, max_cycles))
    while cycles > 0:
        runs.append(run(cycles, seed + len(runs)))
        done += cycles
        cycles = next_cycles(relative_ci(runs), target, done, max_cycles)
    reached = relative_ci(runs)
    return AdaptiveRuns(runs, reached, reached <= target)
