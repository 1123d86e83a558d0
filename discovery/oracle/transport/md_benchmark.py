"""The transport benchmark: a short MD run on IRMOF-1 against a long reference run.

The reference (``discovery/data/md_reference.json``) costs about an hour of CPU, so it is committed; the
benchmark compares the oracle's short protocol with it (``discovery benchmark oracle``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from discovery.oracle.transport.md import DiffusivityResult, load_trajectory, run_md
from discovery.oracle.transport.md_setup import MDError
from discovery.structures.mof import MOF
from discovery.oracle.transport.msd import self_diffusivity
from discovery.structures.supercell import perpendicular_widths

REFERENCE_FILE = Path(__file__).resolve().parents[2] / "data" / "md_reference.json"

BENCHMARK_STRUCTURE = "IRMOF-1_DDEC"
# The short protocol (the oracle's transport call): ~5 CPU-min on one core for IRMOF-1.
SHORT_PROTOCOL = {"n_guests": 10, "timestep_fs": 4.0, "equilibration_ps": 20.0, "production_ps": 2000.0,
                  "sample_every_ps": 0.1, "pppm_precision": 1e-5, "seed": 11}
# The long reference: the same force field and loading, a conservative 2 fs step, four independent starts.
REFERENCE_PROTOCOL = {"n_guests": 10, "timestep_fs": 2.0, "equilibration_ps": 20.0, "production_ps": 3000.0,
                      "sample_every_ps": 0.1, "pppm_precision": 1e-5}
REFERENCE_SEEDS = (0, 1, 2, 3)


def benchmark_structure(reference_dir: str | Path) -> tuple[MOF, np.ndarray]:
    """IRMOF-1 with its DDEC charges from ``<reference_dir>/structures/IRMOF-1_DDEC.cif``."""
    from discovery.oracle.adsorption.raspa import framework_charges

    path = Path(reference_dir) / "structures" / f"{BENCHMARK_STRUCTURE}.cif"
    if not path.exists():
        raise MDError(f"{path}: the benchmark structure is missing")
    mof = MOF.from_cif(path)
    return mof, framework_charges(mof, "cif")


def pooled_diffusivity(trajectories: Sequence[str | Path], length_scale_A: float | None = None):
    """One D from independent runs of the same protocol: their molecules are pooled as the error units."""
    runs = [load_trajectory(p) for p in trajectories]
    n = min(r["com_positions_A"].shape[0] for r in runs)
    dts = {float(r["times_ps"][1] - r["times_ps"][0]) for r in runs}
    if len(dts) != 1:
        raise MDError(f"cannot pool trajectories sampled at different intervals: {sorted(dts)} ps")
    com = np.concatenate([r["com_positions_A"][:n] for r in runs], axis=1)
    if length_scale_A is None and "unit_cell_A" in runs[0]:
        length_scale_A = float(perpendicular_widths(runs[0]["unit_cell_A"]).min())
    return self_diffusivity(com, dts.pop(), remove_com_drift=False, length_scale_A=length_scale_A)


def md_reference(reference_dir: str | Path, out_dir: str | Path, seeds: Sequence[int] = REFERENCE_SEEDS) -> dict:
    """The long reference for the benchmark (~60 CPU-min): REFERENCE_PROTOCOL once per seed, pooled.
    Its output is what ``discovery/data/md_reference.json`` holds. The seeds are independent runs: they
    may as well run in separate processes and be pooled with ``reference_record``."""
    mof, q = benchmark_structure(reference_dir)
    runs = [run_md(mof, q, seed=seed, out_dir=out_dir, **REFERENCE_PROTOCOL) for seed in seeds]
    return reference_record(mof, runs)


def reference_record(mof: MOF, runs: Sequence[DiffusivityResult]) -> dict:
    """Pool independent REFERENCE_PROTOCOL runs (with their trajectories) into the reference record."""
    fit = pooled_diffusivity([r.trajectory_path for r in runs],
                             length_scale_A=float(perpendicular_widths(mof.structure.lattice.matrix).min()))
    settings = {k: v for k, v in runs[0].settings.items() if k not in ("seed", "msd")}
    return {"structure": mof.id, "d_m2_s": fit.d_m2_s, "ci95": fit.ci95, "converged": fit.converged,
            "reason": fit.reason, "slope": fit.slope, "fit_window_ps": list(fit.fit_window_ps),
            "n_molecules": fit.n_units, "seeds": [r.settings["seed"] for r in runs],
            "per_seed_d_m2_s": [r.d_m2_s for r in runs], "production_ps_per_seed": REFERENCE_PROTOCOL["production_ps"],
            "mean_temperature": float(np.mean([r.mean_temperature for r in runs])),
            "cpu_s": float(sum(r.cpu_s for r in runs)), "ms_per_step": float(np.mean([r.ms_per_step for r in runs])),
            "protocol": REFERENCE_PROTOCOL, "settings": settings,
            "regenerate": "from discovery.oracle.transport.md import md_reference; md_reference(reference_dir, out_dir)  # "
                          "reference_dir holds structures/IRMOF-1_DDEC.cif"}


def benchmark_md(reference_dir: str | Path, long: bool = False, out_dir: str | Path | None = None) -> dict:
    """The short protocol on IRMOF-1 against the long reference: the stored one (discovery/data/
    md_reference.json), or with ``long`` a fresh one (~60 CPU-min more)."""
    mof, q = benchmark_structure(reference_dir)
    if long:
        with tempfile.TemporaryDirectory(prefix="discovery-md-reference-") as tmp:
            reference = md_reference(reference_dir, out_dir or tmp)
    else:
        reference = json.loads(REFERENCE_FILE.read_text())
    r = run_md(mof, q, out_dir=out_dir, **SHORT_PROTOCOL)
    ref_d = float(reference["d_m2_s"])
    return {"structure": mof.id, "d_m2_s": r.d_m2_s, "ci95": r.ci95, "converged": r.converged, "slope": r.slope,
            "cpu_s": r.cpu_s, "ms_per_step": r.ms_per_step, "simulated_ps": r.simulated_ps,
            "reference_d_m2_s": ref_d, "reference_ci95": float(reference["ci95"]),
            "rel_error": (r.d_m2_s - ref_d) / ref_d, "within_20pct": abs(r.d_m2_s - ref_d) <= 0.2 * ref_d,
            "protocol": SHORT_PROTOCOL, "reference_long_run": long}
