"""``discovery benchmark oracle --compare-engines``: the grid Widom engine against RASPA3, in one run.

Each structure's henry level runs on both engines with the same charges, target and seed (RASPA3 Widom
and the grid engine, ``discovery.oracle.adsorption.widom``); per structure and charge model the two K_H of
CO2 and N2, their relative difference, each engine's CPU seconds and the speedup. The box (supercell,
charges, blocked pockets) is the same for both and its cost is left out: each record's ``engine_cpu_s`` is
what the engine itself spent (RASPA3's runs; the grids and the insertions), on one thread each.

``discovery benchmark oracle --grid-check [--against direct|raspa]``: the grid engine against direct
summation, or against RASPA3's own energy function, on the grid engine's insertions (``check_grids``), which
isolates the grids' error from both engines' sampling noise.

``discovery benchmark oracle --estimator-check``: RASPA3's CBMC Widom estimator replayed on the grid
energies beside plain insertion (``check_estimators``, ``adsorption.estimators``), which isolates the
estimators' part of a difference between the engines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from discovery.structures.mof import MOF

CHARGES = (("cif", "DDEC"), ("eqeq", "EQeq"), ("none", "none"))


def compare_engines(structures: dict[str, MOF], charges: Iterable[tuple[str, str]] = CHARGES,
                    published: dict[tuple[str, str], dict] | None = None, grid_spacing: float = 0.2,
                    target: float = 0.05, max_cycles: int = 5000, progress: bool = True) -> dict[str, Any]:
    """Both engines on every (structure, charge model); ``published``: (name, label) -> reference row.
    ``max_cycles`` caps RASPA3's Widom cycles; the grid's insertion cap scales with it (2,000,000 per 5,000
    cycles), so that a tighter ``target`` is not met by one engine and capped on the other."""
    import torch

    # one thread, as RASPA3 runs and as each worker of a labelling or campaign pool runs (one per core): a
    # thread per core here spent ~1.6x the CPU seconds on the same grids
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _summary(_compare(structures, charges, published, grid_spacing, target, max_cycles, progress))
    finally:
        torch.set_num_threads(threads)


def _compare(structures, charges, published, grid_spacing, target, max_cycles, progress) -> list[dict[str, Any]]:
    from tqdm import tqdm

    from discovery.oracle.core import Oracle
    from discovery.oracle.settings import OracleSettings

    rows = []
    jobs = [(name, mof, c) for name, mof in sorted(structures.items()) for c in charges]
    for name, mof, (charge, label) in tqdm(jobs, desc="engines", disable=not progress):
        if charge == "cif" and mof.charges is None:
            continue
        found = {}
        for engine in ("raspa", "grid"):
            oracle = Oracle(OracleSettings(charges=charge, engine=engine, grid_spacing=grid_spacing, target=target,
                                           max_cycles=max_cycles, grid_max_insertions=400 * max_cycles,
                                           qst_cycles=0))
            result = oracle.evaluate(mof, ("henry",))
            found[engine] = (result, result.properties.get("henry", {}).get("engine_cpu_s", 0.0))
        rows.append(_row(name, label, found, (published or {}).get((name, label))))
    return rows


def _row(name: str, label: str, found: dict, reference: dict | None) -> dict[str, Any]:
    row: dict[str, Any] = {"structure": name, "charges": label}
    for engine, (result, cpu) in found.items():
        if result.failures:
            row[f"{engine}_failure"] = result.failures["henry"]["message"]
            continue
        henry = result.properties["henry"]
        row[f"{engine}_cpu_s"] = round(cpu, 2)
        for guest in ("co2", "n2"):
            row[f"{engine}_kh_{guest}"] = henry[guest]["kh_mol_kg_pa"]
            row[f"{engine}_ci95_{guest}"] = round(henry[guest]["ci95"] / henry[guest]["kh_mol_kg_pa"], 4)
            row[f"{engine}_converged_{guest}"] = bool(henry[guest].get("converged", True))
    if "raspa_cpu_s" in row and "grid_cpu_s" in row:
        for guest in ("co2", "n2"):
            row[f"diff_{guest}"] = round(row[f"grid_kh_{guest}"] / row[f"raspa_kh_{guest}"] - 1.0, 4)
            if reference:
                want = float(reference[f"kh_{guest}_mol_kg_pa"])
                row[f"grid_vs_published_{guest}"] = round(row[f"grid_kh_{guest}"] / want - 1.0, 4)
        row["speedup_vs_raspa"] = round(row["raspa_cpu_s"] / max(row["grid_cpu_s"], 1e-9), 1)
    return row


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    both = [r for r in rows if "speedup_vs_raspa" in r]
    diffs = [abs(r[f"diff_{g}"]) for r in both for g in ("co2", "n2")]
    out: dict[str, Any] = {"rows": rows, "compared": len(both), "grid_threads": 1}
    # RASPA3's Widom runs that end above their target are often heavy-tailed (docs/oracle.md, "Why RASPA3's
    # Widom runs fall short"): the differences where it met its target for both gases, apart
    held = [abs(r[f"diff_{g}"]) for r in both if all(r.get(f"raspa_converged_{x}", True) for x in ("co2", "n2"))
            for g in ("co2", "n2")]
    if held:
        out["where_raspa_converged"] = {"compared": len(held) // 2, "max_abs_diff": max(held),
                                        "mean_abs_diff": round(sum(held) / len(held), 4)}
    if both:
        out.update(max_abs_diff=max(diffs), mean_abs_diff=round(sum(diffs) / len(diffs), 4),
                   grid_cpu_s_per_mof=round(sum(r["grid_cpu_s"] for r in both) / len(both), 2),
                   raspa_cpu_s_per_mof=round(sum(r["raspa_cpu_s"] for r in both) / len(both), 2),
                   speedup_vs_raspa=round(sum(r["raspa_cpu_s"] for r in both) / sum(r["grid_cpu_s"] for r in both), 1))
    return out


REFERENCES = ("direct", "raspa")
RASPA_PICKS = (1_000, 250)  # RASPA3's energies cost ~5 ms a configuration: fewer picks (the ratio's interval says)


def check_grids(structures: dict[str, MOF], charges: Iterable[tuple[str, str]] = CHARGES, grid_spacing: float = 0.2,
                insertions: int = 50_000, progress: bool = True, against: str = "direct") -> dict[str, Any]:
    """The grid engine against reference energies on the same insertions (``exact.grid_check``), per
    structure, charge model and guest: no sampling noise between the two K_H. ``against``: ``direct``
    (the project's direct sums) or ``raspa`` (RASPA3's own energy function, ``raspa.MoleculeEnergies``)."""
    from discovery.errors import DiscoveryError
    from discovery.oracle.adsorption.exact import DirectSums, grid_check
    from discovery.oracle.adsorption.raspa import MoleculeEnergies

    if against not in REFERENCES:
        raise DiscoveryError(f"grid check: unknown reference {against!r}; use {' or '.join(REFERENCES)}")

    def check(box, grids, guest, sums: list) -> dict:
        if against == "raspa":
            picks, overlaps = RASPA_PICKS
            return grid_check(grids, guest, insertions=insertions, picks=picks, overlaps=overlaps,
                              energies=MoleculeEnergies(box, guest), reference="raspa3").to_dict()
        if not sums:  # the framework's direct sums once for both guests (their k-vectors are set up once)
            sums.append(DirectSums(grids.framework, grids.settings.cutoff_A))
        return grid_check(grids, guest, insertions=insertions, sums=sums[0]).to_dict()

    out = _per_guest(structures, charges, grid_spacing, progress, "grid check", check)
    rows = out["rows"]
    for r in rows:
        r["ratio"] = round(r["ratio"], 5)
    out.update(grid_spacing_A=grid_spacing, reference=against)
    if rows:
        deviations = [abs(r["ratio"] - 1.0) for r in rows]
        out.update(max_abs_deviation=round(max(deviations), 5), mean_abs_deviation=round(float(np.mean(deviations)), 5))
    return out


def check_estimators(structures: dict[str, MOF], charges: Iterable[tuple[str, str]] = CHARGES,
                     grid_spacing: float = 0.2, insertions: int = 500_000, progress: bool = True) -> dict[str, Any]:
    """RASPA3's CBMC Widom estimator against plain insertion on the same grid energies
    (``estimators.replay``), per structure, charge model and guest: where RASPA3's runs fall short of K_H
    for reasons of sampling alone."""
    from discovery.oracle.adsorption.estimators import replay

    out = _per_guest(structures, charges, grid_spacing, progress, "estimators",
                     lambda box, grids, guest, _: replay(grids, guest, insertions).to_dict())
    out.update(grid_spacing_A=grid_spacing, insertions=insertions)
    return out


def _per_guest(structures: dict[str, MOF], charges: Iterable[tuple[str, str]], grid_spacing: float, progress: bool,
               desc: str, check) -> dict[str, Any]:
    """``check(box, grids, guest, scratch)`` per structure, charge model and guest (CO2, N2) on one set of
    grids per structure and charge model; a structure the oracle refuses is reported, not fatal."""
    from tqdm import tqdm

    from discovery.errors import DiscoveryError
    from discovery.oracle.adsorption.forcefield import CO2, N2
    from discovery.oracle.adsorption.grid import Framework, GridSettings, energy_grids
    from discovery.oracle.core import Oracle
    from discovery.oracle.settings import OracleSettings

    rows, failed = [], []
    jobs = [(name, mof, c) for name, mof in sorted(structures.items()) for c in charges]
    for name, mof, (charge, label) in tqdm(jobs, desc=desc, disable=not progress):
        if charge == "cif" and mof.charges is None:
            continue
        try:  # overlapping atoms, charges EQeq cannot give
            box = Oracle(OracleSettings(charges=charge)).box(mof)
        except DiscoveryError as exc:
            failed.append({"structure": name, "charges": label, "error": str(exc)})
            continue
        grids = energy_grids(Framework.from_box(box), [s for g in (CO2, N2) for s in g.sites],
                             GridSettings(spacing_A=grid_spacing))
        scratch: list = []
        for guest in (CO2, N2):
            rows.append({"structure": name, "charges": label, **check(box, grids, guest, scratch)})
    return {"rows": rows, "failed": failed}


def reference_structures(reference: str | Path, names: Iterable[str] = ()) -> tuple[dict, dict]:
    """The reference set's structures (with their DDEC charges), only ``names`` if given, and its published
    rows keyed (name, charge label)."""
    from discovery.benchmark import reference_set

    table, structures = reference_set(reference)
    wanted = set(names) or set(structures)
    unknown = wanted - set(structures)
    if unknown:
        from discovery.errors import DiscoveryError

        raise DiscoveryError(f"not in the reference set: {sorted(unknown)}; it has {sorted(structures)}")
    return {n: structures[n] for n in sorted(wanted)}, {(row["name"], row["charges"]): row for row in table}


def cif_structures(folder: str | Path, limit: int | None = None, seed: int = 0) -> dict[str, MOF]:
    """The CIFs of ``folder`` (a random ``limit`` of them, seeded), each read as the oracle reads it."""
    import random

    from discovery.errors import DiscoveryError
    from discovery.structures.mof import load_structure

    paths = sorted(Path(folder).glob("*.cif"))
    if not paths:
        raise DiscoveryError(f"no CIF files in {folder}")
    if limit is not None and limit < len(paths):
        paths = sorted(random.Random(seed).sample(paths, limit))
    return {p.stem: load_structure(p) for p in paths}
