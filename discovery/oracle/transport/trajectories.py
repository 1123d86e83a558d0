"""Reference MD trajectories for the transport surrogate: a diverse selection of a dataset's MOFs, each run
through the MD oracle (the ``diffusivity`` level) with its trajectory saved (docs/trajectories.md).

``build_trajectories(dataset, out, settings)`` is resumable: the selection is written once to
``OUT/ids.txt`` and reused, results are appended to ``OUT/results.jsonl`` as they finish, and a MOF already
there (by id) is not run again. Killing it loses at most the runs in flight.

Diversity: farthest-point sampling over standardised pore descriptors (log LCD, log PLD, density, void
fraction) with the topology as a one-hot block, among valid MOFs whose pores a CO2 molecule can pass
(PLD >= ``min_pld``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from discovery.errors import DiscoveryError
from discovery.oracle.settings import TIMEOUT_S, OracleSettings

CO2_PLD_A = 3.4  # a pore-limiting diameter below CO2's kinetic diameter (3.3 A) leaves nothing to diffuse


def select_diverse(dataset: str | Path, n: int, seed: int = 0, min_pld: float = CO2_PLD_A) -> list[str]:
    """``n`` ids of ``dataset/mofs.csv``, spread over pore shapes and topologies."""
    path = Path(dataset) / "mofs.csv"
    try:
        with path.open() as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("valid") == "True" and float(r["pld"] or 0) >= min_pld]
    except (OSError, KeyError, ValueError) as exc:
        raise DiscoveryError(f"{path}: cannot read the dataset's MOF table ({exc})") from exc
    if len(rows) < n:
        raise DiscoveryError(f"{dataset}: only {len(rows)} valid MOFs with PLD >= {min_pld} A, {n} requested")
    x = np.array([[np.log(float(r["lcd"])), np.log(float(r["pld"])), float(r["density_g_cm3"]),
                   float(r["void_fraction"])] for r in rows])
    x = (x - x.mean(0)) / x.std(0).clip(1e-9)
    topologies = sorted({r["topology"] for r in rows})
    onehot = np.array([[r["topology"] == t for t in topologies] for r in rows], float)
    x = np.hstack([x, onehot])
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(rows)))]
    dist = np.linalg.norm(x - x[chosen[0]], axis=1)
    while len(chosen) < n:
        k = int(np.argmax(dist))
        chosen.append(k)
        dist = np.minimum(dist, np.linalg.norm(x - x[k], axis=1))
    return [rows[k]["id"] for k in chosen]


def build_trajectories(dataset: str | Path, out: str | Path, settings: OracleSettings, n: int = 60,
                       workers: int | None = None, timeout_s: float = TIMEOUT_S,
                       progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the MD oracle with ``settings`` (its seed also picks the MOFs) on ``n`` diverse MOFs of
    ``dataset``; trajectories land in ``out``."""
    from discovery.oracle.batch import evaluate_files

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids_file = out / "ids.txt"
    if ids_file.exists():  # a resumed run keeps its selection, whatever the dataset has become
        ids = [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
    else:
        ids = select_diverse(dataset, n, settings.seed)
        ids_file.write_text("\n".join(ids) + "\n")
    results = out / "results.jsonl"
    done = _done_ids(results)
    paths = []
    for i in ids:
        if i in done:
            continue
        found = [p for p in (Path(dataset) / "structures" / f"{i}{ext}" for ext in (".cif", ".json")) if p.exists()]
        if not found:
            raise DiscoveryError(f"{dataset}/structures has no structure {i} (listed in {ids_file})")
        paths.append(str(found[0]))
    settings = replace(settings, trajectories=str(out))
    rows = evaluate_files(paths, ("diffusivity",), settings, out=str(results), workers=workers, timeout_s=timeout_s,
                          progress=progress) if paths else []
    done = _done_ids(results)
    ok = [i for i in ids if done.get(i) == "ok"]
    return {"selected": len(ids), "with_trajectory": len(ok), "failed": sum(v != "ok" for v in done.values()),
            "run_now": len(rows), "out": str(out),
            "cpu_hours": round(sum(r.get("cpu_s", {}).get("diffusivity", 0.0) for r in rows) / 3600.0, 2)}


def _done_ids(results: Path) -> dict[str, str]:
    """id -> "ok" or "failed" for every MOF with a row in the results file."""
    done = {}
    if results.exists():
        for line in results.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill: that MOF runs again
            done[str(row.get("structure"))] = "failed" if row.get("failures") else "ok"
    return done
