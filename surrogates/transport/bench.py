"""``discovery benchmark transport``: the CG dynamics model against MD on MOFs it was not trained on.

Input: MD runs, one per MOF: the shipped trajectory table (``default``), a table of one's own
(``discovery dataset export-trajectories``), or a folder the MD oracle wrote (``discovery dataset
trajectories``; ``discovery.oracle.transport.table``). Some MOFs are held out; the model is trained on frames of the
others. For each held-out MOF the model rolls out from the trajectory's own start for the same simulated
time as the MD, and its self-diffusivity is compared with the MD's.

- ``speedup``: MD CPU time / rollout CPU time for the same simulated time, over the held-out MOFs;
- ``mae_log10_d``: mean |log10 D_model - log10 D_MD| over held-out MOFs whose MD value converged;
- ``stable_fraction``: rollouts in which no bead came closer than ``STABLE_DISTANCE_A`` to a framework atom.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from discovery.errors import DiscoveryError
from discovery.models import write_fingerprint
from discovery.oracle.transport.table import DEFAULT, MDRun, frames_per, resolve_source, runs_of, table_version
from discovery.structures.supercell import perpendicular_widths

from surrogates.transport.dynamics import TransportConfig, atomic_numbers, collate, save_model, symbols
from surrogates.transport.predict import STABLE_DISTANCE_A
from surrogates.transport.train import (contact_radii, rollout, rollout_diffusivity, train_transport,
                                       trajectory_frames)

DEFAULT_STEP_PS = 5.0  # the long step: 1,250 MD steps of 4 fs
DEFAULT_EVERY_PS = 2.0  # spacing of training frames along a trajectory


def benchmark_transport(sources: str | Path | Sequence[str | Path] = DEFAULT, n_test: int = 10,
                        step_ps: float = DEFAULT_STEP_PS, epochs: int = 15, config: TransportConfig | None = None,
                        seed: int = 0, every_ps: float = DEFAULT_EVERY_PS, model_out: str | Path | None = None,
                        progress: bool = False) -> dict[str, Any]:
    """Train on the MD runs of ``sources`` (tables or folders) less ``n_test`` held out, score the held-out
    ones; with ``model_out`` the model is saved there with its long step, its held-out error and the data it
    was trained on. Only runs with an MD result can be held out (their D is the reference); runs without one
    (a campaign's trajectory folder keeps no results file) are trained on."""
    from tqdm import tqdm

    config = config or TransportConfig()
    runs = runs_of(sources)
    scored = [r for r in runs if r.md_d_m2_s is not None]
    if len(scored) < n_test or len(runs) < n_test + 2:
        where = ", ".join(map(str, [sources] if isinstance(sources, (str, Path)) else sources))
        raise DiscoveryError(f"{where}: {len(runs)} MD trajectories ({len(scored)} with an MD result), too few to "
                             f"hold out {n_test} and train on 2")
    order = np.random.default_rng(seed).permutation(len(scored))
    test = [scored[i] for i in order[:n_test]]
    train = [scored[i] for i in order[n_test:]] + [r for r in runs if r.md_d_m2_s is None]
    frames, md_steps = [], set()
    for run in tqdm(train, desc="training frames", disable=not progress):
        t = run.trajectory()
        stride, every = frames_per(t, step_ps, run.id), frames_per(t, every_ps, run.id)
        frames += trajectory_frames(t["com_positions_A"], t["cell_A"], t["framework_positions_A"],
                                    atomic_numbers(t["framework_elements"]), stride, config, every=every)
        md_steps.add(int(t["sample_every_steps"]) * stride)
    radii = contact_radii(frames)
    model, info = train_transport(frames, config, epochs=epochs, seed=seed, progress=progress)
    rows = [_score(model, run, step_ps, config, radii, seed) for run in tqdm(test, desc="held-out rollouts",
                                                                              disable=not progress)]
    compared = [r for r in rows if r["md_converged"] and r["d_m2_s"] and r["d_m2_s"] > 0]
    md_cpu, cg_cpu = sum(r["md_cpu_s"] or 0 for r in rows), sum(r["cpu_s"] for r in rows)
    result = {"speedup": round(md_cpu / cg_cpu, 1) if md_cpu and cg_cpu else None,
              "mae_log10_d": float(np.mean([abs(math.log10(r["d_m2_s"]) - math.log10(r["md_d_m2_s"]))
                                            for r in compared])) if compared else None,
              "stable_fraction": float(np.mean([r["stable"] for r in rows])), "n_test_mofs": len(rows),
              "rejected_fraction": float(np.mean([r["rejected_fraction"] for r in rows])),
              "n_compared": len(compared), "n_train_mofs": len(train), "n_train_frames": info["n_frames"],
              "long_step_ps": step_ps, "long_step_md_steps": sorted(md_steps)[0] if len(md_steps) == 1 else None,
              "train_cpu_s": round(info["train_cpu_s"], 1), "data": _data_versions(sources), "per_mof": rows}
    if model_out:
        save_model(model, model_out, {"dt_ps": step_ps, "contact_radii_A": symbols(radii),
                                      "train_ids": [r.id for r in train], "heldout_ids": [r.id for r in test],
                                      "heldout_mae_log10_d": result["mae_log10_d"],
                                      "heldout_stable_fraction": result["stable_fraction"],
                                      "train_cpu_s": result["train_cpu_s"], "seed": seed, "epochs": epochs,
                                      "every_ps": every_ps, "data": result["data"]})
        write_fingerprint(model_out, fingerprint(model, runs[:3], step_ps))
        result["model"] = str(model_out)
    return result


def fingerprint(model, runs: Sequence[MDRun], step_ps: float) -> dict[str, Any]:
    """The model's Gaussian step (mu, sigma) from the first frame of each of ``runs``: recorded with every
    trained model, recomputed by the test of the shipped one."""
    import torch

    out = {"ids": [r.id for r in runs], "mu": [], "sigma": []}
    for run in runs:
        t = run.trajectory()
        stride = frames_per(t, step_ps, run.id)
        frame = trajectory_frames(t["com_positions_A"][: model.config.history * stride + stride + 1], t["cell_A"],
                                  t["framework_positions_A"], atomic_numbers(t["framework_elements"]), stride,
                                  model.config)[0]
        with torch.no_grad():
            mu, sigma = model(collate([frame]))
        out["mu"].append(mu.tolist())
        out["sigma"].append(sigma.tolist())
    return out


def _data_versions(sources) -> list[str]:
    """What the model learned from: a table by its content digest, a folder by its path."""
    out = []
    for source in [sources] if isinstance(sources, (str, Path)) else sources:
        path = resolve_source(source)
        out.append(f"{path.name}@{table_version(path)}" if path.is_file() else str(source))
    return out


def _score(model, run: MDRun, step_ps: float, config: TransportConfig, radii: dict[int, float],
           seed: int = 0) -> dict[str, Any]:
    t = run.trajectory()
    x = t["com_positions_A"]
    stride = frames_per(t, step_ps, run.id)
    start = trajectory_frames(x[: config.history * stride + stride + 1], t["cell_A"], t["framework_positions_A"],
                              atomic_numbers(t["framework_elements"]), stride, config)[0]
    n_steps = int(round(float(t["times_ps"][-1]) / step_ps))
    out = rollout(model, start, n_steps, step_ps, seed=seed, radii=radii)
    try:
        fit = rollout_diffusivity(out, length_scale_A=float(perpendicular_widths(t["unit_cell_A"]).min()))
        d, converged = fit.d_m2_s, fit.converged
    except ValueError:  # the rollout diverged (non-finite positions): unstable, no D
        d, converged = None, False
    finite = bool(np.isfinite(out.positions).all())
    return {"id": run.id, "d_m2_s": d, "converged": converged, "md_d_m2_s": run.md_d_m2_s,
            "md_converged": bool(run.md_converged and run.md_d_m2_s), "md_cpu_s": run.md_cpu_s,
            "cpu_s": round(out.cpu_s, 2), "stable": finite and out.min_framework_distance >= STABLE_DISTANCE_A,
            "min_framework_distance_A": out.min_framework_distance, "rejected_fraction": out.rejected_fraction,
            "steps": n_steps}
