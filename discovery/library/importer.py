"""Real MOFs into a dataset directory: CoRE MOF 2019 (the ``core-mof`` wheel) or a folder of one's own CIFs.

The directory has the layout of a design-space build (``discovery.library.dataset``), so that every command
that reads a dataset (``dataset label``, ``dataset trajectories``, ``evaluate``) reads it too::

    source/           the CIFs as they came (CoRE MOF entries are unpacked here once)
    results.jsonl     one line per structure, written as each finishes (the resume log)
    structures/       ID.cif (P1) and ID.json (the MOF record; no CG view until it is decomposed)
    mofs.csv          one row per kept MOF: formula, atoms, cell, Zeo++ descriptors, source
    failures.csv      one row per refused structure: the reason and the message
    summary.json      counts, reasons, timings

Each structure is read with the project's CIF checks (a broken file, an unknown element, atoms written
twice, a formula that disagrees), refused when disordered (partial occupancies), then checked as a design-
space MOF is (overlaps, coordination, isolated molecules, connectivity, Zeo++ pores).
"""

from __future__ import annotations

import json
import random
import tarfile
import time
from collections import Counter
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from discovery.errors import DatasetError, StructureReadError
from discovery.jsonl import append, open_for_append, read_rows
from discovery.library.dataset import TABLE_COLUMNS, cpu_s, exclusive, write_csv
from discovery.oracle.geometry.zeo import GeometrySettings
from discovery.parallel import TaskFailure, map_with_timeout
from discovery.structures.mofchecker import mofchecker_summary

CORE_MOF_SUBSETS = ("2014", "2019-ASR", "2019-FSR")
COLUMNS = [*TABLE_COLUMNS, "source"]
# what the CIF reader's message says -> the reason an import reports
READ_REASONS = (("partial occupancies", "disorder"), ("unknown element", "unknown_element"), ("same place", "overlapping_atoms"),
                ("formula", "formula_mismatch"), ("no such file", "missing"))


def core_mof_names(subset: str, limit: int | None = None, seed: int = 0) -> list[str]:
    """Entries of a CoRE MOF subset, all or a seeded random sample of ``limit``."""
    if subset not in CORE_MOF_SUBSETS:
        raise DatasetError(f"unknown CoRE MOF subset {subset!r}; choose from {', '.join(CORE_MOF_SUBSETS)}")
    names = sorted(_core_mof().list_structures(subset))
    if limit is not None and limit < len(names):
        names = sorted(random.Random(seed).sample(names, limit))
    return names


def unpack_core_mof(subset: str, names: list[str], folder: Path) -> list[Path]:
    """The entries' CIFs in ``folder`` (one pass over the archive; entries already there are kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {f"{n}.cif" for n in names if not (folder / f"{n}.cif").exists()}
    if wanted:
        archive = resources.files(_core_mof().data) / f"{subset}.tar.xz"
        with tarfile.open(archive, "r") as tar:
            for member in tar:
                name = member.name.split("/")[-1]
                if member.isfile() and name in wanted:
                    (folder / name).write_bytes(tar.extractfile(member).read())
                    wanted.discard(name)
                    if not wanted:
                        break
    missing = sorted(wanted)
    if missing:
        raise DatasetError(f"CoRE MOF {subset} has no CIF for {len(missing)} entries, e.g. {missing[:3]}")
    return [folder / f"{n}.cif" for n in names]


def _core_mof():
    try:
        import CoRE_MOF
    except ImportError as exc:
        raise DatasetError("CoRE MOF import needs the core-mof package (pip install core-mof==2019.1)") from exc
    return CoRE_MOF


def import_one(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: read, check and describe one CIF; the MOF's files written here, a row returned."""
    from discovery.structures.mof import MOF
    from discovery.structures.mofchecker import mofchecker_report, porous_from
    from discovery.structures.validity import check_mof

    t0, path, out = cpu_s(), Path(task["path"]), Path(task["out"])
    row: dict[str, Any] = {"id": task["id"], "source": task["source"]}
    try:
        mof = MOF.from_cif(path, id=task["id"])
    except StructureReadError as exc:
        reason = next((r for key, r in READ_REASONS if key in str(exc)), "unreadable")
        return {**row, "status": "failed", "reason": reason, "message": str(exc), "cpu_s": cpu_s() - t0}
    if not mof.structure.is_ordered:
        return {**row, "status": "invalid", "reason": "disorder", "cpu_s": cpu_s() - t0,
                "message": "partial occupancies: a disordered structure (choose one configuration first)"}
    row.update(formula=mof.formula, n_atoms=mof.n_atoms, cell=[round(x, 4) for x in mof.structure.lattice.parameters])
    report, geometry = check_mof(mof.structure, settings=GeometrySettings(**task["geometry"]), name=task["id"])
    row.update(checks=report.to_dict()["checks"], geometry=None if geometry is None else geometry.to_dict())
    row["mofchecker"] = mofchecker_report(mof.structure, mof.charges, task["id"],  # beside the project's verdict
                                          porous_from(report))
    if not report.valid:  # refused; its units are worth knowing when measuring what decomposition can read
        refused = {**row, "status": "invalid", "reason": report.failed[0], "message": report.reason}
        if task["decompose_refused"]:
            refused["decomposition"] = _decompose(mof)[1]
        return {**refused, "cpu_s": cpu_s() - t0}
    mof.provenance.update(source=task["source"])
    mof, row["decomposition"] = _decompose(mof)
    mof.to_cif(out / "structures" / f"{mof.id}.cif")
    mof.to_json(out / "structures" / f"{mof.id}.json")
    return {**row, "status": "valid", "cpu_s": cpu_s() - t0}


def _decompose(mof):
    """The MOF with its CG view when it can be cut into units (else unchanged: the oracle still takes it),
    and what the decomposition found."""
    from discovery.library.decompose import DecompositionError, check_reassembly, decompose, decomposed_mof

    t0 = cpu_s()
    try:
        dec = decompose(mof.structure, mof.id)
        check = check_reassembly(dec)
    except DecompositionError as exc:
        return mof, {"status": "failed", "reason": "cut", "message": str(exc), "cpu_s": cpu_s() - t0}
    info = {"status": "ok" if check["structure_match"] else "failed", "topology": dec.cg.topology,
            "units": [u["id"] for u in dec.units()], "guests_removed": dec.guests_removed, **check,
            "cpu_s": cpu_s() - t0}
    if not check["structure_match"]:  # a CG view that does not give back the framework is not kept
        return mof, {**info, "reason": "reassembly", "message": "the CG view reassembles into another structure"}
    return decomposed_mof(mof, dec), info


def import_structures(paths: list[Path], out: str | Path, source: str, workers: int | None = None,
                      timeout_s: float = 300.0, progress: bool = True,
                      geometry: GeometrySettings | None = None, decompose_refused: bool = False) -> dict[str, Any]:
    """Import (or resume importing) ``paths`` into the dataset directory ``out``; returns the summary.

    ``decompose_refused`` also cuts the structures the checks refuse (about 40 % of an import's CPU time on
    CoRE MOF 2019), for measuring what decomposition can read; the kept MOFs are cut either way."""
    out = Path(out)
    ids = [_safe_id(p.stem) for p in paths]
    if len(set(ids)) != len(ids):
        dup = [i for i, n in Counter(ids).items() if n > 1]
        raise DatasetError(f"two structures would get the same id: {dup[:3]}; rename the files")
    (out / "structures").mkdir(parents=True, exist_ok=True)
    with exclusive(out):
        done = read_rows(out / "results.jsonl", "id")
        settings = asdict(geometry or GeometrySettings())
        tasks = [{"id": i, "path": str(p), "out": str(out), "source": f"{source}:{p.name}", "geometry": settings,
                  "decompose_refused": decompose_refused}
                 for i, p in zip(ids, paths) if i not in done]
        t0 = time.monotonic()
        with open_for_append(out / "results.jsonl") as log:
            for task, result in map_with_timeout(import_one, tasks, timeout=timeout_s, workers=workers,
                                                 desc="importing MOFs", progress=progress):
                append(log, result if not isinstance(result, TaskFailure) else
                       {"id": task["id"], "source": task["source"], "status": "failed", "reason": result.kind,
                        "message": result.message})
        return _finalise(out, ids, source, time.monotonic() - t0, len(tasks))


def _finalise(out: Path, ids: list[str], source: str, wall_s: float, n_new: int) -> dict[str, Any]:
    from discovery.structures.elements import is_metal

    done = read_rows(out / "results.jsonl", "id")
    rows = [done[i] for i in ids if i in done]
    kept = sorted((r for r in rows if r["status"] == "valid"), key=lambda r: r["id"])
    refused = sorted((r for r in rows if r["status"] != "valid"), key=lambda r: r["id"])
    table = []
    for r in kept:
        geo, (a, b, c, alpha, beta, gamma) = r.get("geometry") or {}, r["cell"]
        metals = sorted({el for el in _elements(r["formula"]) if is_metal(el)})
        net = (r.get("decomposition") or {}).get("topology") or ""
        table.append({"id": r["id"], "recipe": "", "topology": net, "node_bbs": "", "edge_bbs": "",
                      "metals": ".".join(metals), "formula": r["formula"], "n_atoms": r["n_atoms"], "a": a, "b": b,
                      "c": c, "alpha": alpha, "beta": beta, "gamma": gamma, "valid": True, "source": r["source"],
                      **{k: geo.get(k) for k in ("lcd", "pld", "asa_m2_g", "density_g_cm3", "void_fraction",
                                                "probe_accessible_fraction")}})
    write_csv(out / "mofs.csv", COLUMNS, table)
    units = _unit_library(out, kept)
    checked = [r for r in rows if r.get("decomposition")]  # read, ordered, checked: kept or refused
    write_csv(out / "failures.csv", ["id", "source", "status", "reason", "message"], refused)
    summary = {"source": source, "attempted": len(rows), "valid": len(kept),  # the keys of a build's summary
               "valid_fraction": round(len(kept) / max(1, len(rows)), 3),
               "failures": dict(Counter(r["reason"] for r in refused).most_common()),
               "decomposition": _decomposition_summary(kept, units),
               # only when the refused were cut too (``decompose_refused``)
               **({"decomposition_of_all_read": _decomposition_summary(checked, units)}
                  if len(checked) > len(kept) else {}),
               "mofchecker": mofchecker_summary(rows),
               "new_this_run": n_new, "wall_s": round(wall_s, 1),
               "cpu_s_per_structure": round(sum(r.get("cpu_s", 0.0) for r in rows) / max(1, len(rows)), 2)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _unit_library(out: Path, kept: list[dict[str, Any]]):
    """DIR/units.json.gz: the units of the kept MOFs that are not pormake's (each id's first geometry by MOF
    id, so the file does not depend on the order the workers finished in)."""
    from discovery.library.units import UnitLibrary, block_from_row
    from discovery.structures.mof import MOF

    library = UnitLibrary()
    for r in kept:
        if (r.get("decomposition") or {}).get("status") == "ok":
            units = MOF.from_json(out / "structures" / f"{r['id']}.json").units or {}
            library.add(block_from_row(i, u) for i, u in units.items())
    library.save(out / "units.json.gz")
    return library


def _decomposition_summary(imported: list[dict[str, Any]], units) -> dict[str, Any]:
    from discovery.library.units import is_pormake

    rows = [r.get("decomposition") or {"status": "failed", "reason": "not_attempted"} for r in imported]
    ok = [d for d in rows if d["status"] == "ok"]
    cut = [d for d in rows if d["status"] == "ok" or d.get("reason") == "reassembly"]
    unit_ids = Counter(i for d in ok for i in d["units"])
    return {"n": len(rows), "decomposed": len(cut), "decomposed_fraction": round(len(cut) / max(1, len(rows)), 3),
            "reassembled": len(ok), "reassembled_fraction": round(len(ok) / max(1, len(rows)), 3),
            "failures": dict(Counter(d["reason"] for d in rows if d["status"] != "ok").most_common()),
            "topology_named": sum(1 for d in ok if d.get("topology")),
            "topologies": dict(Counter(d["topology"] for d in ok if d.get("topology")).most_common(10)),
            "distinct_units": len(unit_ids), "pormake_units": sum(1 for i in unit_ids if is_pormake(i)),
            "extended_library": {"units": len(units), "version": units.version},
            "max_deviation_A_median": round(float(np.median([d["max_deviation_A"] for d in ok])), 4) if ok else None,
            "cpu_s_per_structure": round(float(np.mean([d["cpu_s"] for d in rows if "cpu_s" in d] or [0])), 2)}


def _elements(formula: str) -> list[str]:
    from pymatgen.core import Composition

    return [el.symbol for el in Composition(formula).elements]


def _safe_id(stem: str) -> str:
    """A file name that is safe as an id (and a file name again): letters, digits, ``-``, ``_``, ``.``, ``+``."""
    return "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in stem)
