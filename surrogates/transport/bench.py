"""``discovery benchmark transport``: the CG dynamics model against MD on MOFs it was not trained on.

Input: a folder of MD trajectories (``discovery evaluate ... --properties diffusivity --trajectories DIR
--out DIR/results.jsonl``), one per MOF. Some MOFs are held out; the model is trained on frames of the
others. For each held-out MOF the model rolls out from the trajectory's own start for the same simulated
time as the MD, and its self-diffusivity is compared with the MD's.

- ``speedup``: MD CPU time / rollout CPU time for the same simulated time, over the held-out MOFs;
- ``mae_log10_d``: mean |log10 D_model - log10 D_MD| over held-out MOFs whose MD value converged;
- ``stable_fraction``: rollouts in which no bead came closer than ``STABLE_DISTANCE_A`` to a framework atom.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from discovery.errors import DiscoveryError
from discovery.structures.supercell import perpendicular_widths

from surrogates.transport.dynamics import TransportConfig, atomic_numbers, save_model, symbols
from surrogates.transport.predict import STABLE_DISTANCE_A
from surrogates.transport.train import (contact_radii, frames_from_file, rollout, rollout_diffusivity, train_transport,
                              trajectory_frames)

DEFAULT_STRIDE = 50  # MD frames (0.1 ps each) per long step: 5 ps, 1,250 MD steps of 4 fs


def md_runs(folder: str | Path) -> list[dict[str, Any]]:
    """MD runs of a trajectory folder: trajectory path, framework id, MD D and CPU time (from the oracle's
    results file beside the trajectories when present)."""
    folder = Path(folder)
    results = {}
    if (folder / "results.jsonl").exists():
        for line in (folder / "results.jsonl").read_text().splitlines():
            row = json.loads(line)
            if row.get("diffusivity"):
                results[Path(row["diffusivity"]["trajectory"]).name] = row
    runs = []
    for path in sorted(folder.glob("*_co2_md_seed*.npz")):
        if results and path.name not in results:
            continue  # no result row yet: the run may still be writing it (the row comes after the file)
        row = results.get(path.name, {})
        runs.append({"path": path, "id": path.name.split("_co2_md_seed")[0],
                     "md_d_m2_s": row.get("diffusivity", {}).get("co2_m2_s"),
                     "md_converged": row.get("diffusivity", {}).get("converged", False),
                     "md_cpu_s": row.get("cpu_s", {}).get("diffusivity")})
    return runs


def md_runs_of(folders: str | Path | Sequence[str | Path]) -> list[dict[str, Any]]:
    """The MD runs of one folder or several (e.g. the dataset's and a campaign's ``RUN/trajectories``); a MOF
    found in two folders is taken from the first."""
    runs, seen = [], set()
    for folder in _folder_list(folders):
        if not Path(folder).is_dir():
            raise DiscoveryError(f"{folder}: no such folder of MD trajectories")
        for run in md_runs(folder):
            if run["id"] not in seen:
                seen.add(run["id"])
                runs.append(run)
    return runs


def _folder_list(folders: str | Path | Sequence[str | Path]) -> list[str | Path]:
    return [folders] if isinstance(folders, (str, Path)) else list(folders)


def benchmark_transport(folder: str | Path | Sequence[str | Path], n_test: int = 10, stride: int = DEFAULT_STRIDE,
                        epochs: int = 15, config: TransportConfig | None = None, seed: int = 0, every: int = 20,
                        model_out: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Train on the MD runs of ``folder`` (one or several) less ``n_test`` held out, score the held-out ones;
    with ``model_out`` the model is saved there with its long step and its held-out error. Only runs with an
    MD result row can be held out (their D is the reference); runs without one (a campaign's trajectory
    folder keeps no results file) are trained on."""
    from tqdm import tqdm

    config = config or TransportConfig()
    runs = md_runs_of(folder)
    scored = [r for r in runs if r["md_d_m2_s"] is not None]
    if len(scored) < n_test or len(runs) < n_test + 2:
        where = ", ".join(map(str, _folder_list(folder)))
        raise DiscoveryError(f"{where}: {len(runs)} MD trajectories ({len(scored)} with an MD result), too few to "
                             f"hold out {n_test} and train on 2")
    order = np.random.default_rng(seed).permutation(len(scored))
    test = [scored[i] for i in order[:n_test]]
    train = [scored[i] for i in order[n_test:]] + [r for r in runs if r["md_d_m2_s"] is None]
    frames, dt_ps = [], None
    for run in tqdm(train, desc="training frames", disable=not progress):
        f, dt_ps = frames_from_file(run["path"], stride, config, every=every)
        frames += f
    radii = contact_radii(frames)
    model, info = train_transport(frames, config, epochs=epochs, seed=seed, progress=progress)
    rows = [_score(model, run, stride, config, radii, seed) for run in tqdm(test, desc="held-out rollouts",
                                                                              disable=not progress)]
    compared = [r for r in rows if r["md_converged"] and r["d_m2_s"] and r["d_m2_s"] > 0]
    md_cpu, cg_cpu = sum(r["md_cpu_s"] or 0 for r in rows), sum(r["cpu_s"] for r in rows)
    result = {"speedup": round(md_cpu / cg_cpu, 1) if md_cpu and cg_cpu else None,
              "mae_log10_d": float(np.mean([abs(math.log10(r["d_m2_s"]) - math.log10(r["md_d_m2_s"]))
                                            for r in compared])) if compared else None,
              "stable_fraction": float(np.mean([r["stable"] for r in rows])), "n_test_mofs": len(rows),
              "rejected_fraction": float(np.mean([r["rejected_fraction"] for r in rows])),
              "n_compared": len(compared), "n_train_mofs": len(train), "n_train_frames": info["n_frames"],
              "long_step_ps": dt_ps, "long_step_md_steps": _md_steps(train[0]["path"], stride),
              "train_cpu_s": round(info["train_cpu_s"], 1), "per_mof": rows}
    if model_out:
        save_model(model, model_out, {"stride_frames": stride, "dt_ps": dt_ps, "contact_radii_A": symbols(radii),
                                      "train_ids": [r["id"] for r in train],
                                      "heldout_ids": [r["id"] for r in test],
                                      "heldout_mae_log10_d": result["mae_log10_d"],
                                      "heldout_stable_fraction": result["stable_fraction"],
                                      "train_cpu_s": result["train_cpu_s"], "seed": seed, "epochs": epochs})
        result["model"] = str(model_out)
    return result


def _md_steps(path: Path, stride: int) -> int:
    """MD time steps in one long step of ``stride`` frames."""
    from discovery.oracle.transport.md import load_trajectory

    return int(load_trajectory(path)["sample_every_steps"]) * stride


def _score(model, run: dict, stride: int, config: TransportConfig, radii: dict[int, float],
           seed: int = 0) -> dict[str, Any]:
    from discovery.oracle.transport.md import load_trajectory

    t = load_trajectory(run["path"])
    x = t["com_positions_A"]
    dt_ps = float(t["times_ps"][1] - t["times_ps"][0]) * stride
    start = trajectory_frames(x[: config.history * stride + stride + 1], t["cell_A"], t["framework_positions_A"],
                              atomic_numbers(t["framework_elements"]), stride, config)[0]
    n_steps = int(round(float(t["times_ps"][-1]) / dt_ps))
    out = rollout(model, start, n_steps, dt_ps, seed=seed, radii=radii)
    try:
        fit = rollout_diffusivity(out, length_scale_A=float(perpendicular_widths(t["unit_cell_A"]).min()))
        d, converged = fit.d_m2_s, fit.converged
    except ValueError:  # the rollout diverged (non-finite positions): unstable, no D
        d, converged = None, False
    finite = bool(np.isfinite(out.positions).all())
    return {"id": run["id"], "d_m2_s": d, "converged": converged, "md_d_m2_s": run["md_d_m2_s"],
            "md_converged": bool(run["md_converged"] and run["md_d_m2_s"]), "md_cpu_s": run["md_cpu_s"],
            "cpu_s": round(out.cpu_s, 2), "stable": finite and out.min_framework_distance >= STABLE_DISTANCE_A,
            "min_framework_distance_A": out.min_framework_distance, "rejected_fraction": out.rejected_fraction,
            "steps": n_steps}
