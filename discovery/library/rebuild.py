"""A committed pool table's design-space MOFs as a dataset directory again, to label them with other oracle
settings (``discovery dataset rebuild``).

Each MOF is reassembled from its recipe (its id). The assembler is deterministic: the CIF is byte for byte
the one ``dataset build`` wrote, so labels saved from either resume on the other (the oracle's resume key
is the file's hash). The table's Zeo++ and probe descriptors go to the build log and the probe cache, where
``dataset export`` reads them, so nothing is recomputed; the validity checks are not run again either: the
table's MOFs are the set being relabelled, whatever today's checks say of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from discovery.errors import DatasetError, DiscoveryError
from discovery.jsonl import append, open_for_append, read_rows
from discovery.library.assembly import Recipe
from discovery.library.dataset import exclusive
from discovery.parallel import TaskFailure, map_with_timeout
from discovery.pool import committed_name, read_table, resolve_table
from discovery.structures.descriptors import PROBE_KEYS


def rebuild_dataset(table: str | Path, out: str | Path, ids: Sequence[str] | None = None,
                    workers: int | None = None, progress: bool = True, timeout_s: float = 300.0) -> dict[str, Any]:
    """Write the MOFs of ``table`` (a committed name or a path; ``ids``: only these) into dataset directory
    ``out``; resumable. Returns a summary."""
    path = resolve_table(table)
    _, rows = read_table(path)
    by_id = {r["id"]: r for r in rows}
    wanted = list(dict.fromkeys(ids)) if ids is not None else list(by_id)
    _check_ids(wanted, by_id, path)
    source = f"pool table {committed_name(path) or path.name}"
    out = Path(out)
    (out / "structures").mkdir(parents=True, exist_ok=True)
    with exclusive(out):
        done = {i for i, r in read_rows(out / "results.jsonl", "id").items()
                if r.get("status") == "valid" and (out / "structures" / f"{i}.cif").exists()}
        tasks = [{"id": i, "out": str(out), "source": source} for i in wanted if i not in done]
        failed = _assemble_all(tasks, by_id, out, workers, timeout_s, progress)
    summary = {"source": source, "structures": len(wanted) - len(failed), "new_this_run": len(tasks) - len(failed),
               "failed": failed}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))  # ``source`` goes to the exported header
    return summary


def _check_ids(wanted: list[str], by_id: dict[str, Any], path: Path) -> None:
    unknown = [i for i in wanted if i not in by_id]
    if unknown:
        raise DiscoveryError(f"{len(unknown)} id(s) not in {path.name}, e.g. {unknown[:3]}")
    not_recipes = [i for i in wanted if not _is_recipe(i)]
    if not_recipes:
        raise DiscoveryError(f"{len(not_recipes)} MOF(s) of {path.name} are not design-space recipes (e.g. "
                             f"{not_recipes[:3]}) and cannot be reassembled; label the dataset they were imported "
                             "into instead")
    if not wanted:
        raise DiscoveryError(f"no MOF of {path.name} to rebuild")


def _is_recipe(mof_id: str) -> bool:
    try:
        Recipe.parse(mof_id)
    except DiscoveryError:
        return False
    return True


def _assemble_all(tasks: list[dict[str, Any]], by_id: dict[str, Any], out: Path, workers: int | None,
                  timeout_s: float, progress: bool) -> dict[str, str]:
    """Assemble ``tasks`` on all cores, logging each with the table's descriptors; returns id -> why failed."""
    failed: dict[str, str] = {}
    with open_for_append(out / "results.jsonl") as log, open_for_append(out / "probe_descriptors.jsonl") as probes:
        for task, result in map_with_timeout(_assemble_one, tasks, timeout=timeout_s, workers=workers,
                                             desc="reassembling MOFs", progress=progress):
            mof_id = task["id"]
            if isinstance(result, TaskFailure):
                result = {"id": mof_id, "recipe": mof_id, "status": "failed", "reason": result.kind,
                          "message": result.message}
            if result["status"] != "valid":
                failed[mof_id] = f"{result['reason']}: {result['message']}"
                append(log, result)
                continue
            descriptors = by_id[mof_id].get("descriptors", {})
            append(probes, {"id": mof_id, **{k: descriptors.get(k) for k in PROBE_KEYS}})
            append(log, {**result, "geometry": {k: v for k, v in descriptors.items() if k not in PROBE_KEYS}})
    return failed


def _assemble_one(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: one recipe assembled and written (CIF and MOF record), as ``dataset build`` writes it."""
    from discovery.library.assembly import default_assembler

    recipe = Recipe.parse(task["id"])
    row = {"id": recipe.id, "recipe": str(recipe)}
    try:
        mof = default_assembler().assemble(recipe)
    except DiscoveryError as exc:
        return {**row, "status": "failed", "reason": "assembly_error", "message": str(exc)}
    if mof.id != task["id"]:
        raise DatasetError(f"{task['id']} reassembled as {mof.id}")
    mof.provenance["rebuilt_from"] = task["source"]
    mof.to_cif(Path(task["out"]) / "structures" / f"{mof.id}.cif")
    mof.to_json(Path(task["out"]) / "structures" / f"{mof.id}.json")
    return {**row, "status": "valid", "source": task["source"]}
