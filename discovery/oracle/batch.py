"""Many structure files through the oracle, one process per core, saved as they finish (``discovery evaluate
--out``, ``discovery dataset label``).

Resuming is keyed on what determines a result: the file's content (SHA-256), the levels, every setting and
the software versions. A rerun reuses a saved record only when all of these are the same (the returned record
says so, ``reused``); a failed record is retried on request (``retry_failed``); anything else is computed
again and appended.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from discovery.errors import DiscoveryError
from discovery.jsonl import append, open_for_append, read_rows
from discovery.oracle.core import Oracle, versions
from discovery.oracle.settings import TIMEOUT_S, OracleSettings
from discovery.parallel import TaskFailure, map_with_timeout

REUSED = "same file content, levels, settings and software versions as the saved result"


def resume_inputs(path: str, properties: tuple[str, ...], settings: OracleSettings) -> dict[str, Any]:
    """What determines a file's result; its hash is the resume key."""
    try:
        content = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        content = None  # unreadable: never reused; the evaluation records why it failed
    return {"sha256": content, "properties": sorted(properties), "settings": asdict(settings), "versions": versions()}


def resume_key(inputs: dict[str, Any]) -> str | None:
    if inputs["sha256"] is None:
        return None
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]


def evaluate_files(paths: list[str], properties: tuple[str, ...], settings: OracleSettings,
                   out: str | None = None, workers: int | None = None, timeout_s: float = TIMEOUT_S,
                   progress: bool = True, retry_failed: bool = False) -> list[dict[str, Any]]:
    """Evaluate many structures, one process per core; with ``out`` (JSONL) results are saved as they
    finish and a rerun reuses those computed from the same inputs (module docstring). A structure that
    crashes its worker or runs past ``timeout_s`` is recorded as a failure; the batch carries on."""
    inputs = {p: resume_inputs(p, properties, settings) for p in paths}
    done = _reusable(Path(out), inputs, retry_failed) if out else {}
    tasks = [{"path": p, "properties": list(properties), "settings": asdict(settings)} for p in paths if p not in done]
    log = open_for_append(Path(out)) if out else None
    try:
        for task, row in map_with_timeout(_evaluate_task, tasks, timeout=timeout_s, workers=workers,
                                          desc="evaluating", progress=progress):
            if isinstance(row, TaskFailure):
                row = {"structure": task["path"], "failures": {"worker": {"reason": row.kind, "message": row.message}}}
            key_inputs = inputs[task["path"]]
            row.update(file=task["path"], resume_key=resume_key(key_inputs), sha256=key_inputs["sha256"])
            done[task["path"]] = row
            if log:
                append(log, row)
    finally:
        if log:
            log.close()
    return [done[p] for p in paths if p in done]


def _reusable(out: Path, inputs: dict[str, dict[str, Any]], retry_failed: bool) -> dict[str, dict[str, Any]]:
    """Saved records whose key matches today's inputs (failed ones only without ``retry_failed``)."""
    _check_results_file(out)
    saved = read_rows(out, "resume_key")  # any earlier record of the same inputs, not only a file's last one
    reuse = {}
    for path, what in inputs.items():
        row = saved.get(resume_key(what))
        if row is not None and not (retry_failed and row.get("failures")):
            reuse[path] = {**row, "file": path, "reused": REUSED}
    return reuse


def _check_results_file(out: Path) -> None:
    """``--out`` must be a results file (JSON lines) or new: never append to a CIF or another file."""
    if out.is_dir():
        raise DiscoveryError(f"--out {out} is a folder; give a file such as {out / 'results.jsonl'}")
    if not out.exists() or out.stat().st_size == 0:
        return
    with out.open("rb") as fh:
        first = fh.readline()
    try:
        ok = isinstance(json.loads(first), dict)
    except ValueError:
        ok = False
    if not ok:
        raise DiscoveryError(f"--out {out} exists and is not a results file (JSON lines): choose another path")


def _evaluate_task(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: load one structure file and evaluate it (errors become failure records)."""
    from discovery.structures.mof import load_structure

    settings = OracleSettings(**{**task["settings"], "skip_checks": tuple(task["settings"]["skip_checks"])})
    try:
        mof = load_structure(task["path"], skip=settings.skip_checks)
    except DiscoveryError as exc:
        return {"structure": task["path"], "failures": {"read": {"reason": type(exc).__name__, "message": str(exc)}}}
    return {"file": task["path"], **Oracle(settings).evaluate(mof, tuple(task["properties"])).to_dict()}
