"""Scoring transport with the coarse-grained dynamics model: insert guests, roll out, fit the MSD.

Guests start at random points at least ``min_distance`` from every framework atom (CO2's centre of mass
rarely comes closer than ~2.5 A in MD), with no history (zero past displacements). The first ``burn_in``
long steps are dropped, so that the rollout forgets this start, as MD's equilibration does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from discovery.errors import DiscoveryError

from .transport import CGDynamics, Frame, atomic_numbers
from .transport_train import Rollout, closest_approach, rollout, rollout_diffusivity

STABLE_DISTANCE_A = 1.8  # a bead closer than this to a framework atom is inside it: the rollout is unstable


@dataclass
class TransportPrediction:
    d_m2_s: float
    ci95_m2_s: float
    converged: bool
    reason: str
    stable: bool
    min_framework_distance_A: float
    simulated_ps: float
    cpu_s: float


def insert_guests(framework: np.ndarray, cell: np.ndarray, n: int, rng: np.random.Generator,
                  min_distance: float = 3.0, attempts: int = 20000) -> np.ndarray:
    """``n`` random points of the cell at least ``min_distance`` from every framework atom and each other."""
    placed: list[np.ndarray] = []
    for _ in range(attempts):
        p = rng.random(3) @ cell
        if closest_approach(p[None], framework, cell, within=min_distance + 0.1) < min_distance:
            continue
        if placed and closest_approach(p[None], np.array(placed), cell, within=min_distance + 0.1) < min_distance:
            continue
        placed.append(p)
        if len(placed) == n:
            return np.array(placed)
    raise DiscoveryError(f"could place only {len(placed)} of {n} guests {min_distance} A from the framework: "
                         "is the pore space accessible?")


def predict_transport(model: CGDynamics, framework: np.ndarray, elements, cell: np.ndarray, dt_ps: float,
                      n_guests: int = 10, simulated_ps: float = 2000.0, burn_in: int = 20,
                      seed: int = 0) -> TransportPrediction:
    """Self-diffusivity of the guest from a rollout of ``simulated_ps`` (long steps of ``dt_ps``)."""
    rng = np.random.default_rng(seed)
    start = insert_guests(framework, cell, n_guests, rng)
    frame = Frame(start, np.zeros((n_guests, model.config.history, 3)), cell, framework, atomic_numbers(elements))
    n_steps = int(round(simulated_ps / dt_ps))
    run = rollout(model, frame, n_steps + burn_in, dt_ps, seed=seed)
    kept = Rollout(run.positions[burn_in:], dt_ps, run.min_framework_distance, run.cpu_s)
    fit = rollout_diffusivity(kept, length_scale_A=float(min(np.linalg.norm(cell, axis=1))))
    return TransportPrediction(fit.d_m2_s, fit.ci95, fit.converged, fit.reason,
                               run.min_framework_distance >= STABLE_DISTANCE_A, run.min_framework_distance,
                               n_steps * dt_ps, run.cpu_s)
