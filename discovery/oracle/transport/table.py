"""MD runs for the transport model: read from a folder the MD oracle wrote, or from a compact table.

A folder (``discovery dataset trajectories``) holds one ``<id>_co2_md_seed<s>.npz`` per MOF (docs/
trajectories.md: every guest atom every 0.1 ps, ~1 MB each) and the oracle's ``results.jsonl`` (the MD's D and
CPU time). ``export_table`` packs what the transport model learns from into one versioned ``.npz`` of a few
MB that ships with the package (``SHIPPED_TABLE``), so that training and benchmarking need no MD:

- guest centres of mass every ``frame_ps`` (1 ps: the model's 5 ps step and 2 ps training spacing are
  multiples of it), as integer steps of ``QUANTUM_A`` (0.01 A). The positions are rounded, not the steps, so
  the rounding error stays below 0.005 A however long the run (it does not accumulate);
- the rigid framework of the simulated box: fractional coordinates as 16-bit integers (< 0.001 A on a 50 A
  box) and atomic numbers; the box, unit cell and supercell;
- the MD's self-diffusivity, whether it converged, its CPU time, and the run's settings (JSON).

Arrays of all runs are concatenated, with per-run counts; nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from discovery.errors import DiscoveryError

TABLE_FORMAT_VERSION = 1
SHIPPED_TABLE = Path(__file__).resolve().parents[2] / "data" / "md_traj_none_v1.npz"
DEFAULT = "default"  # names SHIPPED_TABLE wherever a trajectory source is asked for
QUANTUM_A = 0.01
FRAME_PS = 1.0
_FRAC_SCALE = 65536


@dataclass
class MDRun:
    """One MOF's MD run: its id, the MD result (None where the folder has no result row, e.g. a campaign's
    trajectories) and its trajectory, as ``discovery.oracle.transport.md.load_trajectory`` returns it."""
    id: str
    md_d_m2_s: float | None
    md_converged: bool
    md_cpu_s: float | None
    path: Path | None = None  # a trajectory file, read on demand
    data: dict[str, Any] | None = field(default=None, repr=False)  # or the trajectory itself (from a table)

    def trajectory(self) -> dict[str, Any]:
        from discovery.oracle.transport.md import load_trajectory

        return self.data if self.data is not None else load_trajectory(self.path)


def resolve_source(source: str | Path) -> Path:
    return SHIPPED_TABLE if str(source) == DEFAULT else Path(source)


def runs_of(sources: str | Path | Sequence[str | Path]) -> list[MDRun]:
    """The MD runs of one source or several (folders or tables); a MOF found twice is taken from the first."""
    runs, seen = [], set()
    for source in [sources] if isinstance(sources, (str, Path)) else list(sources):
        path = resolve_source(source)
        if path.is_file():
            found = load_table(path)
        elif path.is_dir():
            found = folder_runs(path)
        else:
            raise DiscoveryError(f"{source}: no such folder of MD trajectories or trajectory table")
        for run in found:
            if run.id not in seen:
                seen.add(run.id)
                runs.append(run)
    return runs


def folder_runs(folder: str | Path) -> list[MDRun]:
    """The MD runs of a trajectory folder, with the MD's D and CPU time from ``results.jsonl`` when present."""
    folder = Path(folder)
    results = {}
    if (folder / "results.jsonl").exists():
        for line in (folder / "results.jsonl").read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill: that MOF runs again
            if row.get("diffusivity"):
                results[Path(row["diffusivity"]["trajectory"]).name] = row
    runs = []
    for path in sorted(folder.glob("*_co2_md_seed*.npz")):
        if results and path.name not in results:
            continue  # no result row yet: the run may still be writing it (the row comes after the file)
        row = results.get(path.name, {})
        md = row.get("diffusivity", {})
        runs.append(MDRun(path.name.split("_co2_md_seed")[0], md.get("co2_m2_s"), bool(md.get("converged", False)),
                          row.get("cpu_s", {}).get("diffusivity"), path=path))
    return runs


# ---- writing -----------------------------------------------------------------------------------
def export_table(sources: str | Path | Sequence[str | Path], out: str | Path, frame_ps: float = FRAME_PS,
                 progress: bool = True) -> dict[str, Any]:
    """Pack the MD runs of ``sources`` that have an MD result into one table at ``out``."""
    from tqdm import tqdm

    runs = [r for r in runs_of(sources) if r.md_d_m2_s is not None]
    if not runs:
        raise DiscoveryError(f"{sources}: no MD run with a result row (results.jsonl) to export")
    parts = [_pack(r, frame_ps) for r in tqdm(runs, desc="packing trajectories", disable=not progress)]
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, format_version=np.int64(TABLE_FORMAT_VERSION), quantum_A=np.float64(QUANTUM_A),
                        **arrays)
    return {"table": str(out), "runs": len(runs), "converged": int(arrays["md_converged"].sum()),
            "frame_ps": frame_ps, "megabytes": round(out.stat().st_size / 1e6, 2), "version": table_version(out)}


def frames_per(trajectory: dict[str, Any], ps: float, run_id: str) -> int:
    """Frames of ``trajectory`` in ``ps`` picoseconds (a whole number, or the run cannot be used)."""
    frame_ps = float(trajectory["times_ps"][1] - trajectory["times_ps"][0])
    n = round(ps / frame_ps)
    if n < 1 or not math.isclose(n * frame_ps, ps, rel_tol=1e-6):
        raise DiscoveryError(f"{run_id}: {ps} ps is not a whole number of its frames ({frame_ps:g} ps apart)")
    return n


def _pack(run: MDRun, frame_ps: float) -> dict[str, np.ndarray]:
    t = run.trajectory()
    every = frames_per(t, frame_ps, run.id)
    com = np.asarray(t["com_positions_A"], float)[::every]
    q = np.rint(com / QUANTUM_A).astype(np.int64)  # positions rounded, so that errors never add up
    steps = np.diff(q, axis=0)
    if np.abs(steps).max(initial=0) > np.iinfo(np.int16).max:
        raise DiscoveryError(f"{run.id}: a guest moved more than {np.iinfo(np.int16).max * QUANTUM_A:.0f} A in "
                             f"{frame_ps} ps: not a physical trajectory")
    cell = np.asarray(t["cell_A"], float)
    frac = np.asarray(t["framework_positions_A"], float) @ np.linalg.inv(cell)
    frac_q = np.rint((frac - np.floor(frac)) * _FRAC_SCALE).astype(np.int64) % _FRAC_SCALE
    nan = float("nan")
    return {
        "ids": np.array([run.id]), "settings_json": np.array([json.dumps(t.get("settings", {}), sort_keys=True)]),
        "md_d_m2_s": np.array([nan if run.md_d_m2_s is None else run.md_d_m2_s]),
        "md_converged": np.array([run.md_converged]),
        "md_cpu_s": np.array([nan if run.md_cpu_s is None else run.md_cpu_s]),
        "frame_ps": np.array([every * float(t["times_ps"][1] - t["times_ps"][0])]),
        "sample_every_steps": np.array([int(t["sample_every_steps"]) * every], dtype=np.int64),
        "cell_A": cell[None], "unit_cell_A": np.asarray(t["unit_cell_A"], float)[None],
        "n_frames": np.array([com.shape[0]]), "n_guests": np.array([com.shape[1]]),
        "com_start_q": q[0].reshape(-1).astype(np.int32), "com_steps_q": steps.reshape(-1).astype(np.int16),
        "n_atoms": np.array([frac.shape[0]]), "framework_frac_q": frac_q.astype(np.uint16),
        "framework_z": _atomic_numbers(t["framework_elements"]),
    }


def _atomic_numbers(elements) -> np.ndarray:
    from pymatgen.core import Element

    return np.array([Element(str(e)).Z for e in elements], dtype=np.uint8)


# ---- reading -----------------------------------------------------------------------------------
def table_version(path: str | Path) -> str:
    """Content digest of a table: models record which data they were trained on."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def load_table(path: str | Path) -> list[MDRun]:
    """The runs of a table, each trajectory unpacked to the keys of ``load_trajectory`` that the transport
    model reads (centres of mass, times, box, unit cell, framework atoms, settings)."""
    from pymatgen.core import Element

    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DiscoveryError(f"{path}: not a trajectory table ({exc})") from exc
    if int(a.get("format_version", -1)) != TABLE_FORMAT_VERSION:
        raise DiscoveryError(f"{path}: trajectory table format {a.get('format_version')}, this version reads "
                             f"{TABLE_FORMAT_VERSION}")
    quantum = float(a["quantum_A"])
    com_at, steps_at, atoms_at = (np.concatenate([[0], np.cumsum(c)]) for c in
                                  (3 * a["n_guests"], 3 * a["n_guests"] * (a["n_frames"] - 1), a["n_atoms"]))
    runs = []
    for i, run_id in enumerate(a["ids"]):
        g, f = int(a["n_guests"][i]), int(a["n_frames"][i])
        start = a["com_start_q"][com_at[i]:com_at[i + 1]].reshape(1, g, 3).astype(np.int64)
        steps = a["com_steps_q"][steps_at[i]:steps_at[i + 1]].reshape(f - 1, g, 3).astype(np.int64)
        com = np.concatenate([start, start + np.cumsum(steps, axis=0)]) * quantum
        frac = a["framework_frac_q"][atoms_at[i]:atoms_at[i + 1]] / _FRAC_SCALE
        z = a["framework_z"][atoms_at[i]:atoms_at[i + 1]]
        symbol = {n: Element.from_Z(int(n)).symbol for n in np.unique(z)}
        data = {"framework_id": str(run_id), "com_positions_A": com, "times_ps": np.arange(f) * a["frame_ps"][i],
                "cell_A": a["cell_A"][i], "unit_cell_A": a["unit_cell_A"][i],
                "framework_positions_A": frac @ a["cell_A"][i],
                "framework_elements": np.array([symbol[n] for n in z]),
                "sample_every_steps": int(a["sample_every_steps"][i]),
                "settings": json.loads(str(a["settings_json"][i]))}
        d, cpu = float(a["md_d_m2_s"][i]), float(a["md_cpu_s"][i])
        runs.append(MDRun(str(run_id), None if math.isnan(d) else d, bool(a["md_converged"][i]),
                          None if math.isnan(cpu) else cpu, data=data))
    return runs
