"""Scoring transport with the coarse-grained dynamics model: build the MD box, insert guests, roll out, fit.

The start is the MD oracle's own: the same supercell (``discovery.oracle.box.build_box``), Zeo++'s inaccessible
pockets blocked, guests inserted at random with the Boltzmann factor of their LJ energy
(``discovery.oracle.transport.md_setup.insert_guests``), each guest becoming one bead at its centre of mass, with
no history (zero past displacements). The first ``burn_in`` long steps are dropped, so that the rollout forgets this
start, as MD's equilibration does; the MSD of the rest gives D and its 95 % interval
(``discovery.oracle.transport.msd.self_diffusivity``).

The uncertainty the planner uses (``log10_std``) adds the MSD fit's statistical error to the model's own
error, measured on held-out MOFs when the model was trained (``heldout_mae_log10_d`` in ``model.json``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from pymatgen.core.periodic_table import Element

from discovery.errors import DiscoveryError
from discovery.structures.mof import MOF
from discovery.structures.supercell import perpendicular_widths

from surrogates.transport.dynamics import CGDynamics, Frame, atomic_numbers, numbers
from surrogates.transport.train import Rollout, rollout, rollout_diffusivity

STABLE_DISTANCE_A = 1.8  # a bead closer than this to a framework atom is inside it: the rollout is unstable
DEFAULT_MODEL_ERROR = 0.3  # log10 units (mean absolute): used when a model carries no held-out error


@dataclass
class TransportPrediction:
    structure: str
    d_m2_s: float
    ci95_m2_s: float
    log10_d: float
    log10_std: float  # statistical (MSD fit) and model error together, for the planner
    converged: bool
    reason: str
    stable: bool
    min_framework_distance_A: float
    simulated_ps: float
    long_step_ps: float
    n_guests: int
    rejected_fraction: float  # drawn displacements that ended inside the framework and were redrawn
    cpu_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def start_frame(model: CGDynamics, mof: MOF, n_guests: int, seed: int, block_pockets: bool = True) -> Frame:
    """The MD oracle's box of ``mof`` with ``n_guests`` CO2 centres of mass inserted as it inserts them."""
    from discovery.oracle.adsorption.forcefield import CO2
    from discovery.oracle.box import build_box
    from discovery.oracle.transport.md_setup import MDSettings, insert_guests

    pockets = []
    if block_pockets:
        from discovery.oracle.geometry.pockets import inaccessible_pockets

        pockets = inaccessible_pockets(mof.structure, name=mof.id)
    box = build_box(mof, np.zeros(len(mof.structure)), pockets=pockets)
    s = MDSettings(n_guests=n_guests)
    atoms = insert_guests(box, CO2, n_guests, np.random.default_rng(seed), s.min_distance_A, s.temperature, mof.id)
    masses = np.array([Element(site.element).atomic_mass for site in CO2.sites], dtype=float)
    com = np.einsum("gsk,s->gk", atoms, masses) / masses.sum()
    return Frame(com, np.zeros((n_guests, model.config.history, 3)), box.cell, box.positions,
                 atomic_numbers(box.elements))


def predict_transport(model: CGDynamics, mof: MOF, n_guests: int = 10, simulated_ps: float = 2000.0,
                      burn_in_ps: float = 50.0, seed: int = 0) -> TransportPrediction:
    """CO2 self-diffusivity in ``mof`` from a rollout of ``simulated_ps`` in long steps of the model's
    ``dt_ps`` (``model.meta``, written by ``discovery train transport``)."""
    meta = getattr(model, "meta", {})
    dt_ps = meta.get("dt_ps")
    if not dt_ps:
        raise DiscoveryError("the transport model carries no long step (dt_ps): train it with `discovery train "
                             "transport`")
    t0 = time.process_time()
    frame = start_frame(model, mof, n_guests, seed)
    n_steps, burn_in = int(round(simulated_ps / dt_ps)), int(math.ceil(burn_in_ps / dt_ps))
    radii = numbers(meta["contact_radii_A"]) if meta.get("contact_radii_A") else None
    run = rollout(model, frame, n_steps + burn_in, dt_ps, seed=seed, radii=radii)
    kept = Rollout(run.positions[burn_in:], dt_ps, run.min_framework_distance, run.cpu_s, run.rejected_fraction)
    width = float(perpendicular_widths(mof.structure.lattice.matrix).min())  # as the MD oracle's fit
    try:
        fit = rollout_diffusivity(kept, length_scale_A=width)
    except ValueError as exc:
        raise DiscoveryError(f"{mof.id}: no diffusivity from the rollout: {exc}") from None
    if not (fit.d_m2_s and fit.d_m2_s > 0):
        raise DiscoveryError(f"{mof.id}: the rollout gave no positive diffusivity ({fit.reason})")
    log10_d = math.log10(fit.d_m2_s)
    stat = fit.ci95 / 1.96 / fit.d_m2_s / math.log(10) if fit.ci95 and math.isfinite(fit.ci95) else 0.0
    # a held-out mean absolute error is sqrt(2/pi) of a Gaussian error's standard deviation
    model_error = math.sqrt(math.pi / 2) * float(meta.get("heldout_mae_log10_d") or DEFAULT_MODEL_ERROR)
    return TransportPrediction(mof.id, fit.d_m2_s, fit.ci95, log10_d, math.hypot(stat, model_error), fit.converged,
                               fit.reason, run.min_framework_distance >= STABLE_DISTANCE_A,
                               run.min_framework_distance, n_steps * dt_ps, dt_ps, n_guests,
                               run.rejected_fraction, time.process_time() - t0)

