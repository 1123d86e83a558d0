"""Campaign candidates: a proposal turned into what the surrogate scores and the oracle evaluates.

A design-space proposal is assembled, checked (the foundation's validity checks, Zeo++ included) and
described (Zeo++ geometry and the probe-energy descriptors); an invalid one is a record too, with its
reason. A pool-table row (benchmark campaigns with the lookup oracle) is already described. Assembly runs
in child processes with a time limit, so a hung or crashing pormake build costs one candidate, not the
campaign.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict
from typing import Any, Iterator, Sequence

import numpy as np

from discovery.library.designspace import DesignSpace
from discovery.errors import AssemblyError, DiscoveryError, IncompatibleCombinationError
from discovery.structures.mof import CGView
from discovery.parallel import TaskFailure, map_with_timeout
from discovery.library.proposer import Proposal

GEOMETRY_KEYS = ("lcd", "pld", "asa_m2_g", "density_g_cm3", "void_fraction")


def candidate_record(proposal: Proposal, **extra: Any) -> dict[str, Any]:
    return {"id": proposal.recipe, "recipe": proposal.recipe, "origin": proposal.origin,
            "parent": proposal.parent, "mutation": proposal.mutation, **extra}


def prepare_proposals(proposals: Sequence[Proposal], space: DesignSpace | None = None, timeout_s: float = 120.0,
                      workers: int = 0) -> Iterator[dict[str, Any]]:
    """One record per proposal: ``status`` ``valid`` (with ``mof_json``, ``cg`` and ``descriptors``) or
    ``invalid`` (with ``reason`` and ``message``). ``workers=0`` prepares them in this process (a campaign's
    generator agent is already its own process, and pormake's import costs seconds per fresh child);
    ``workers>0`` in child processes with a time limit each, in completion order."""
    space_dict = asdict(space or DesignSpace())
    tasks = [{"proposal": asdict(p), "space": space_dict} for p in proposals]
    if workers == 0:
        yield from map(_prepare_safely, tasks)
        return
    for task, out in map_with_timeout(_prepare_task, tasks, timeout=timeout_s, workers=workers, progress=False):
        if isinstance(out, TaskFailure):
            out = candidate_record(Proposal(**task["proposal"]), status="invalid", reason=f"worker_{out.kind}",
                                   message=out.message)
        yield out


def _prepare_safely(task: dict[str, Any]) -> dict[str, Any]:
    """In-process preparation: an unexpected error in a third-party builder rejects the candidate only."""
    try:
        return _prepare_task(task)
    except Exception as exc:  # noqa: BLE001 - pormake/pymatgen raise anything on odd inputs; keep it as data
        return candidate_record(Proposal(**task["proposal"]), status="invalid", reason="error",
                                message=f"{type(exc).__name__}: {exc}")


def _prepare_task(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: assemble, check and describe one proposal."""
    from discovery.library.assembly import Recipe, default_assembler

    warnings.filterwarnings("ignore", category=RuntimeWarning, module="pormake")  # 0/0 RMSD ratios: noise
    t0 = time.process_time()
    proposal, space = Proposal(**task["proposal"]), DesignSpace(**task["space"])
    record = candidate_record(proposal)
    try:
        mof = default_assembler().assemble(Recipe.parse(proposal.recipe))
    except (IncompatibleCombinationError, AssemblyError) as exc:
        return {**record, "status": "invalid", "reason": type(exc).__name__, "message": str(exc)}
    return describe(mof, record, space, t0)


def describe(mof, record: dict[str, Any], space: DesignSpace, t0: float, probe: bool = True,
             geometry: bool = True) -> dict[str, Any]:
    """An assembled MOF as a candidate: size limits, every validity check (Zeo++ included), then the
    descriptors the surrogate needs (the probe energies only when ``probe``); ``t0`` is the process time
    the preparation started at. ``geometry=False`` (only with ``probe=False``): the pore checks from Zeo++'s
    channel analysis alone, about half the cost, and of the descriptors only the density: what measuring a
    generator needs."""
    from discovery.library.dataset import size_problem
    from discovery.structures.descriptors import probe_descriptors
    from discovery.structures.mofchecker import mofchecker_failures, mofchecker_report, porous_from
    from discovery.structures.validity import check_mof

    problem = size_problem(mof, space)
    if problem:
        return {**record, "status": "invalid", **problem}
    report, pores = check_mof(mof.structure, name=mof.id, descriptors=geometry or probe)
    # MOFChecker's verdict (MOFDiff's definition) beside the project's, for generator metrics and campaigns;
    # every failed check of both is kept (generator metrics report each check's pass rate). Its porosity test
    # is Zeo++'s PLD >= 2.4 A, the project's own pore check, wherever that ran.
    mofchecker_failed = mofchecker_failures(mofchecker_report(mof.structure, name=mof.id, porous=porous_from(report)))
    record = {**record, "mofchecker_valid": not mofchecker_failed, "mofchecker_failed": mofchecker_failed,
              "failed_checks": report.failed}
    if not report.valid:
        return {**record, "status": "invalid", "reason": report.failed[0], "message": report.reason}
    # without Zeo++'s descriptors, the density alone: novelty's fingerprint needs it (pymatgen's equals Zeo++'s
    # to 1e-4 g/cm3 on generated MOFs)
    descriptors = ({k: pores.to_dict()[k] for k in GEOMETRY_KEYS} if pores is not None
                   else {"density_g_cm3": round(float(mof.structure.density), 6)})
    if probe:
        descriptors.update(probe_descriptors(mof.structure).to_dict())
    mof.provenance.update({k: record.get(k) for k in ("origin", "parent", "mutation")})
    return {**record, "status": "valid", "formula": mof.formula, "n_atoms": mof.n_atoms,
            "cg": compact_cg(mof.cg), "descriptors": descriptors, "mof_json": mof.to_json(),
            "prepare_cpu_s": round(time.process_time() - t0, 3)}


def compact_cg(cg: CGView | None) -> dict[str, Any] | None:
    """The CG view the surrogate's graphs need (the pool table's form): lattice and beads (block, role,
    position); orientations are dropped."""
    if cg is None:
        return None
    beads = [{"bb_id": b.bb_id, "role": b.role, "frac_coords": np.round(b.frac_coords, 5).tolist()} for b in cg.beads]
    return {"topology": cg.topology, "lattice": np.round(cg.lattice, 4).tolist(), "beads": beads}


def table_candidate(row: dict[str, Any], origin: str = "table") -> dict[str, Any]:
    """A pool-table row as a candidate (already assembled, checked and described)."""
    if not row.get("cg"):
        raise DiscoveryError(f"pool-table row {row.get('id')!r} has no CG view")
    return {"id": row["id"], "recipe": row["id"], "origin": origin, "parent": None, "mutation": None,
            "status": "valid", "cg": row["cg"], "descriptors": row["descriptors"],
            **({"units": row["units"]} if row.get("units") else {})}  # a real MOF's blocks beyond pormake's
