"""The physics oracle: ``Oracle().evaluate(mof)`` runs the requested levels and returns a typed record.

Levels so far: ``geometry`` (Zeo++, the cheap first fidelity) and ``henry`` (RASPA3 Widom K_H of CO2 and
N2 at 298 K with adaptive cycles, and their ratio). Every level records its CPU seconds; a level that
fails is recorded with its reason and message, and the other levels still run.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from typing import Any

from .errors import DiscoveryError
from .forcefield import CO2, N2
from .geometry import compute_geometry
from .mof import MOF
from .raspa import adaptive_henry

LEVELS = ("geometry", "henry")


@dataclass(frozen=True)
class OracleSettings:
    charges: str = "cif"  # "cif" (charges from the structure), "eqeq" (computed) or "none"
    target: float = 0.05  # relative 95 % half-width of K_H at which cycles stop
    first_cycles: int = 500
    max_cycles: int = 5000
    seed: int = 0
    temperature: float = 298.0


@dataclass
class OracleResult:
    structure: str
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, dict[str, str]] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Oracle:
    """Runs the oracle levels on one structure at a time."""

    def __init__(self, settings: OracleSettings | None = None) -> None:
        self.settings = settings or OracleSettings()

    def evaluate(self, mof: MOF, properties: tuple[str, ...] = LEVELS) -> OracleResult:
        unknown = [p for p in properties if p not in LEVELS]
        if unknown:
            raise DiscoveryError(f"unknown oracle level(s) {unknown}; available: {', '.join(LEVELS)}")
        result = OracleResult(structure=mof.id, settings=asdict(self.settings),
                              versions={p: version(p) for p in ("raspalib", "pyzeo", "pymatgen")})
        for level in properties:
            t0 = time.process_time()
            try:
                result.properties[level] = getattr(self, f"_{level}")(mof)
            except DiscoveryError as exc:
                result.failures[level] = {"reason": type(exc).__name__, "message": str(exc)}
            result.cpu_s[level] = round(time.process_time() - t0, 3)
        return result

    def _geometry(self, mof: MOF) -> dict[str, Any]:
        geometry = compute_geometry(mof.structure, name=mof.id)
        result = geometry.to_dict()
        result["cpu_s_zeo"] = result.pop("cpu_s")  # Zeo++ runs in a child; its CPU is not in the level's
        return result

    def _henry(self, mof: MOF) -> dict[str, Any]:
        s = self.settings
        runs = {g.name: adaptive_henry(mof, g, charges=s.charges, target=s.target, first_cycles=s.first_cycles,
                                       max_cycles=s.max_cycles, seed=s.seed, temperature=s.temperature)
                for g in (CO2, N2)}
        out: dict[str, Any] = {}
        for name, r in runs.items():
            key = name.lower()
            out.update({f"kh_{key}": r.kh, f"kh_{key}_ci95": r.kh_ci95, f"cycles_{key}": r.cycles})
        out["kh_ratio_co2_n2"] = runs["CO2"].kh / runs["N2"].kh
        out["unit_cells"] = list(runs["CO2"].unit_cells)
        out["protocol"] = runs["CO2"].settings
        return out


def _evaluate_task(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: load one structure file and evaluate it (errors become failure records)."""
    from .mof import load_structure

    try:
        mof = load_structure(task["path"])
    except DiscoveryError as exc:
        return {"structure": task["path"], "failures": {"read": {"reason": type(exc).__name__, "message": str(exc)}}}
    settings = OracleSettings(**task["settings"])
    return {"file": task["path"], **Oracle(settings).evaluate(mof, tuple(task["properties"])).to_dict()}


def evaluate_files(paths: list[str], properties: tuple[str, ...], settings: OracleSettings,
                   out: str | None = None, workers: int | None = None, timeout_s: float = 1800.0,
                   progress: bool = True) -> list[dict[str, Any]]:
    """Evaluate many structures, one process per core; with ``out`` (JSONL) results are saved as they
    finish and files already there are skipped, so an interrupted batch resumes."""
    from pathlib import Path

    from .jsonl import append, open_for_append, read_rows
    from .parallel import TaskFailure, map_with_timeout

    done = read_rows(Path(out), "file") if out else {}
    tasks = [{"path": p, "properties": list(properties), "settings": asdict(settings)} for p in paths if p not in done]
    log = open_for_append(Path(out)) if out else None
    try:
        for task, row in map_with_timeout(_evaluate_task, tasks, timeout=timeout_s, workers=workers,
                                          desc="evaluating", progress=progress):
            if isinstance(row, TaskFailure):
                row = {"structure": task["path"], "failures": {"worker": {"reason": row.kind, "message": row.message}}}
            row["file"] = task["path"]
            done[task["path"]] = row
            if log:
                append(log, row)
    finally:
        if log:
            log.close()
    return [done[p] for p in paths if p in done]
