"""Building a design-space dataset: sample recipes, assemble them on all cores, check, describe, save.

Layout of a dataset directory::

    manifest.json     seed, design-space settings, versions (a resumed build must match them)
    results.jsonl     one line per attempted recipe, written as each finishes (the resume log)
    structures/       ID.cif (P1) and ID.json (the MOF record with its CG view) for every valid MOF
    mofs.csv          one row per valid MOF: recipe, formula, atom count, cell, Zeo++ descriptors
    failures.csv      one row per rejected recipe: the reason and the message
    summary.json      counts, failures by reason, timings
    overview.png      pore sizes, surface area against density, rejections by reason
"""

from __future__ import annotations

import csv
import fcntl
import itertools
import json
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Iterator

from discovery.library.assembly import Recipe
from discovery.library.designspace import DesignSpace, Sampler
from discovery.errors import AssemblyError, DatasetError, IncompatibleCombinationError
from discovery.oracle.geometry.zeo import GeometrySettings
from discovery.structures.mofchecker import mofchecker_summary
from discovery.jsonl import append, open_for_append, read_rows
from discovery.parallel import TaskFailure, map_with_timeout
from discovery.plots import dataset_overview

MANIFEST_VERSION = 1
TABLE_COLUMNS = ["id", "recipe", "topology", "node_bbs", "edge_bbs", "metals", "formula", "n_atoms",
                 "a", "b", "c", "alpha", "beta", "gamma", "lcd", "pld", "asa_m2_g", "density_g_cm3",
                 "void_fraction", "probe_accessible_fraction", "valid"]


@dataclass(frozen=True)
class BuildOptions:
    size: int
    seed: int = 0
    workers: int | None = None
    timeout_s: float = 300.0
    progress: bool = True


def _build_one(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: assemble one recipe, check it, describe it; files written here, a row returned."""
    from discovery.library.assembly import default_assembler
    from discovery.structures.mofchecker import mofchecker_report, porous_from
    from discovery.structures.validity import check_mof

    t0 = cpu_s()
    recipe, out, space = Recipe.parse(task["recipe"]), Path(task["out"]), DesignSpace(**task["space"])
    row: dict[str, Any] = {"id": recipe.id, "recipe": str(recipe)}
    try:
        mof = default_assembler().assemble(recipe)
    except IncompatibleCombinationError as exc:
        return {**row, "status": "failed", "reason": "incompatible", "message": str(exc)}
    except AssemblyError as exc:
        return {**row, "status": "failed", "reason": "assembly_error", "message": str(exc)}
    row.update(formula=mof.formula, n_atoms=mof.n_atoms, cell=[round(x, 4) for x in mof.structure.lattice.parameters])
    too_big = size_problem(mof, space)
    if too_big:
        return {**row, "status": "failed", **too_big, "cpu_s": cpu_s() - t0}
    report, geometry = check_mof(mof.structure, settings=GeometrySettings(**task["geometry"]), name=recipe.id)
    row.update(checks=report.to_dict()["checks"], geometry=None if geometry is None else geometry.to_dict(),
               mofchecker=mofchecker_report(mof.structure, mof.charges, recipe.id,  # beside the project's verdict
                                          porous_from(report)))
    if not report.valid:
        failed = report.failed[0]
        return {**row, "status": "invalid", "reason": failed, "message": report.reason,
                "cpu_s": cpu_s() - t0}
    mof.provenance["design_space_seed"] = task["seed"]
    mof.to_cif(out / "structures" / f"{mof.id}.cif")
    mof.to_json(out / "structures" / f"{mof.id}.json")
    return {**row, "status": "valid", "cpu_s": cpu_s() - t0}


def cpu_s() -> float:
    """CPU seconds of this process and its finished children (Zeo++ runs in a child)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def size_problem(mof, space: DesignSpace) -> dict[str, str] | None:
    if mof.n_atoms > space.max_atoms:
        return {"reason": "too_many_atoms", "message": f"{mof.n_atoms} atoms > {space.max_atoms}"}
    longest = max(mof.structure.lattice.abc)
    if longest > space.max_cell_length:
        return {"reason": "cell_too_large", "message": f"cell edge {longest:.1f} A > {space.max_cell_length} A"}
    return None


class DatasetBuilder:
    """Builds (or resumes) a dataset directory."""

    def __init__(self, out: str | Path, space: DesignSpace | None = None,
                 geometry: GeometrySettings | None = None, sampler: Sampler | None = None) -> None:
        if space is not None and sampler is not None and sampler.space != space:
            raise DatasetError("the sampler was made for another design space")
        self.out = Path(out)
        self.sampler = sampler or Sampler(space or DesignSpace())
        self.space = self.sampler.space
        self.geometry = geometry or GeometrySettings()

    def build(self, options: BuildOptions) -> dict[str, Any]:
        """Attempt ``options.size`` recipes; already-finished ones (from a previous run) are skipped."""
        if options.size < 1:
            raise DatasetError(f"--size must be at least 1, got {options.size}")
        (self.out / "structures").mkdir(parents=True, exist_ok=True)
        with exclusive(self.out):
            return self._build(options)

    def _build(self, options: BuildOptions) -> dict[str, Any]:
        self._prepare(options)
        done = self.finished()
        recipes = [str(r) for r in itertools.islice(self.sampler.recipes(options.seed), options.size)]
        if len(recipes) < options.size:
            raise DatasetError(f"the design space yields only {len(recipes)} distinct recipes; ask for fewer "
                               "or widen the DesignSpace limits")
        todo = [r for r in recipes if r not in done]
        tasks = [{"recipe": r, "out": str(self.out), "space": self.space.to_dict(), "seed": options.seed,
                  "geometry": asdict(self.geometry)} for r in todo]
        t0 = time.monotonic()
        with open_for_append(self.out / "results.jsonl") as log:
            for task, result in map_with_timeout(_build_one, tasks, timeout=options.timeout_s,
                                                 workers=options.workers, desc="building MOFs",
                                                 progress=options.progress):
                append(log, _failure_row(task["recipe"], result) if isinstance(result, TaskFailure) else result)
        return self.finalise(recipes, wall_s=time.monotonic() - t0, n_new=len(todo))

    def _prepare(self, options: BuildOptions) -> None:
        (self.out / "structures").mkdir(parents=True, exist_ok=True)
        manifest = {"manifest_version": MANIFEST_VERSION, "seed": options.seed, "design_space": self.space.to_dict(),
                    "geometry": asdict(self.geometry), "versions": _versions()}
        manifest = json.loads(json.dumps(manifest))  # compare as stored (tuples become lists)
        path = self.out / "manifest.json"
        if path.exists():
            old = json.loads(path.read_text())
            for key in ("seed", "design_space", "geometry", "versions"):
                if old.get(key) != manifest[key]:
                    raise DatasetError(f"{self.out} holds a build with a different {key} ({old.get(key)}); "
                                       "resume with the same options or choose a new --out")
        path.write_text(json.dumps({**manifest, "size": max(options.size, _old_size(path))}, indent=2))

    def finished(self) -> dict[str, dict[str, Any]]:
        """Rows already in the resume log, by recipe (the last line wins)."""
        return read_rows(self.out / "results.jsonl", "recipe")

    def finalise(self, recipes: list[str], wall_s: float = 0.0, n_new: int = 0) -> dict[str, Any]:
        """Write mofs.csv, failures.csv and summary.json from the resume log."""
        done = self.finished()
        rows = [done[r] for r in recipes if r in done]
        valid = sorted((r for r in rows if r["status"] == "valid"), key=lambda r: r["id"])
        bad = sorted((r for r in rows if r["status"] != "valid"), key=lambda r: r["id"])
        write_csv(self.out / "mofs.csv", TABLE_COLUMNS, [_table_row(r, self.sampler) for r in valid])
        write_csv(self.out / "failures.csv", ["id", "recipe", "status", "reason", "message"], bad)
        summary = {"attempted": len(rows), "valid": len(valid), "valid_fraction": len(valid) / max(1, len(rows)),
                   "failures": dict(Counter(r["reason"] for r in bad).most_common()),
                   "new_this_run": n_new, "wall_s": round(wall_s, 2),
                   "built_per_min": round(60.0 * n_new / wall_s, 2) if wall_s > 0 and n_new else None,
                   "cpu_s_per_mof": round(sum(r.get("cpu_s", 0.0) for r in rows) / max(1, len(rows)), 3),
                   "mofchecker": mofchecker_summary(rows)}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        dataset_overview(valid, summary["failures"], self.out / "overview.png")
        return summary


@contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold a lock on the directory: two builds appending to one log would repeat each other's work."""
    with (out / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetError(f"another build is running in {out}; wait for it or stop it first") from None
        yield  # the lock goes with the file handle, also when the process is killed


def _failure_row(recipe: str, failure: TaskFailure) -> dict[str, Any]:
    return {"id": recipe, "recipe": recipe, "status": "failed", "reason": failure.kind, "message": failure.message}


def _table_row(row: dict[str, Any], sampler: Sampler) -> dict[str, Any]:
    recipe = Recipe.parse(row["recipe"])
    geo = row.get("geometry") or {}
    metals = sorted({m for b in recipe.node_bbs for m in sampler.bbs.get(b).metals})
    a, b, c, alpha, beta, gamma = row["cell"]
    return {"id": row["id"], "recipe": row["recipe"], "topology": recipe.topology,
            "node_bbs": ".".join(recipe.node_bbs), "edge_bbs": ".".join(e or "-" for e in recipe.edge_bbs),
            "metals": ".".join(metals), "formula": row["formula"], "n_atoms": row["n_atoms"],
            "a": a, "b": b, "c": c, "alpha": alpha, "beta": beta, "gamma": gamma,
            **{k: geo.get(k) for k in ("lcd", "pld", "asa_m2_g", "density_g_cm3", "void_fraction",
                                      "probe_accessible_fraction")}, "valid": True}


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _old_size(path: Path) -> int:
    return int(json.loads(path.read_text()).get("size", 0)) if path.exists() else 0


def _versions() -> dict[str, str]:
    return {p: version(p) for p in ("pormake", "pyzeo", "pymatgen")}


def build_dataset(out: str | Path, size: int, seed: int = 0, workers: int | None = None,
                  progress: bool = True, space: DesignSpace | None = None) -> dict[str, Any]:
    """Build or resume a design-space dataset in ``out``; returns the summary."""
    return DatasetBuilder(out, space).build(BuildOptions(size=size, seed=seed, workers=workers, progress=progress))
