"""Benchmarks that print JSON (speed and yield targets live here, not in timed tests)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from .dataset import build_dataset
from .errors import DatasetError
from .parallel import default_workers


def benchmark_dataset(size: int = 40, seed: int = 1, workers: int | None = None, out: str | None = None) -> dict[str, Any]:
    """Build a fresh design space of ``size`` recipes and report throughput, yield and failures."""
    with tempfile.TemporaryDirectory(prefix="bench-dataset-") as tmp:
        target = Path(out) if out else Path(tmp) / "dataset"
        if (target / "results.jsonl").exists():
            raise DatasetError(f"{target} already holds a build; a benchmark needs a fresh directory")
        t0 = time.monotonic()
        summary = build_dataset(target, size=size, seed=seed, workers=workers, progress=False)
        wall = time.monotonic() - t0
    return {"size": size, "seed": seed, "workers": workers or default_workers(),
            "built_per_min": round(60.0 * summary["attempted"] / wall, 2), "wall_s": round(wall, 1),
            "valid_fraction": round(summary["valid_fraction"], 3), "valid": summary["valid"],
            "failures": summary["failures"], "cpu_s_per_mof": summary["cpu_s_per_mof"]}


def benchmark_geometry(reference: str | Path) -> dict[str, Any]:
    """Zeo++ LCD/PLD of the reference CIFs against the published values in ``co2_298K.csv``.

    ``reference`` is a directory with ``co2_298K.csv`` (columns name, lcd_A, pld_A) and
    ``structures/NAME_DDEC.cif``.
    """
    from .geometry import compute_geometry

    table, structures = _reference(reference)
    published = {row["name"]: row for row in table}
    rows = {}
    for name, row in sorted(published.items()):
        mof = structures[name]
        geo = compute_geometry(mof.structure, name=name)
        rows[name] = {k: {"found": round(getattr(geo, k), 3), "published": float(row[f"{k}_A"]),
                          "rel_error": round(getattr(geo, k) / float(row[f"{k}_A"]) - 1.0, 4)} for k in ("lcd", "pld")}
    worst = max(abs(v["rel_error"]) for r in rows.values() for v in r.values())
    return {"structures": rows, "max_abs_rel_error": worst, "within_10pct": worst <= 0.10}


def benchmark_oracle(reference: str | Path, workers: int | None = None) -> dict[str, Any]:
    """Henry coefficients of the reference frameworks (CIF charges and none) against published values.

    ``reference`` holds ``co2_298K.csv`` and ``structures/NAME_DDEC.cif``. Throughput is derived from
    the CPU seconds of the henry level (CO2 and N2, adaptive cycles) and the number of cores.
    """
    from .oracle import Oracle, OracleSettings

    table, structures = _reference(reference)
    published = {(r["name"], r["charges"]): r for r in table}
    rows, cpu = [], []
    for name, mof in sorted(structures.items()):
        for charges, label in (("cif", "DDEC"), ("none", "none")):
            result = Oracle(OracleSettings(charges=charges)).evaluate(mof, ("henry",))
            henry = result.properties["henry"]
            cpu.append(result.cpu_s["henry"])
            for guest in ("co2", "n2"):
                want = float(published[(name, label)][f"kh_{guest}_mol_kg_pa"])
                rows.append({"structure": name, "charges": label, "guest": guest.upper(), "kh": henry[f"kh_{guest}"],
                             "kh_ci95": henry[f"kh_{guest}_ci95"], "published": want,
                             "rel_error": round(henry[f"kh_{guest}"] / want - 1.0, 4),
                             "cycles": henry[f"cycles_{guest}"]})
    cores = workers or default_workers()
    co2 = [r for r in rows if r["guest"] == "CO2"]
    return {"kh": rows, "max_abs_rel_error_co2": max(abs(r["rel_error"]) for r in co2),
            "within_5pct_co2": all(abs(r["rel_error"]) <= 0.05 for r in co2),
            "henry_cpu_s_per_mof": round(sum(cpu) / len(cpu), 1),
            "henry_mofs_per_hour": round(3600.0 * cores * len(cpu) / sum(cpu), 1), "cores": cores,
            "flue_gas_mofs_per_hour": None, "md_cpu_s_per_mof": None,
            "not_yet": "flue_gas, working_capacity, EQeq charges and MD transport are not built yet"}


def _reference(reference: str | Path) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Rows of ``co2_298K.csv`` and each named framework read from ``structures/NAME_DDEC.cif``."""
    import csv

    from .mof import MOF

    ref = Path(reference)
    with (ref / "co2_298K.csv").open() as f:
        table = list(csv.DictReader(f))
    names = sorted({row["name"] for row in table})
    return table, {n: MOF.from_cif(ref / "structures" / f"{n}_DDEC.cif") for n in names}
