"""``discovery benchmark cg-assembly``: how many MOFs the generator's assembler builds back from their own CG
views (lattice, bead positions, block ids), without and with the views' orientations.

It reads MOF records with CG views (an imported dataset's ``structures/*.json``, or any folder of records):
the assembler is what every generated candidate goes through, and a real MOF's own view is the easiest
sample it will meet. Counts per outcome: valid (the atom checks pass), built but failing an atom check, and
not built (connection points unpaired or apart), with the reasons.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from discovery.errors import DiscoveryError
from discovery.generator.cg_assembly import assemble_cg_view
from discovery.library.units import UnitLibrary, block_from_row
from discovery.structures.mof import MOF


def benchmark_cg_assembly(folder: str | Path, n: int = 30, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Assemble ``n`` random records of ``folder`` (with CG views) without and with their orientations."""
    paths = _record_paths(folder)
    pick = np.random.default_rng(seed).choice(len(paths), size=min(n, len(paths)), replace=False)
    records = [MOF.from_json(paths[i]) for i in sorted(pick)]
    runs = {"positions_only": False, "with_orientations": True}
    out: dict[str, Any] = {"folder": str(folder), "n": len(records), "seed": seed}
    for name, orientations in runs.items():
        outcomes, reasons, cpu = Counter(), Counter(), time.process_time()
        for mof in tqdm(records, desc=name, unit="MOF", disable=not progress):
            outcome, reason = _assemble(mof, orientations)
            outcomes[outcome] += 1
            if reason:
                reasons[reason] += 1
        out[name] = {**{k: outcomes[k] for k in ("valid", "built_invalid", "not_built")},
                     "valid_fraction": round(outcomes["valid"] / max(1, len(records)), 3),
                     "reasons": dict(reasons.most_common()),
                     "cpu_s_per_mof": round((time.process_time() - cpu) / max(1, len(records)), 2)}
    return out


def _record_paths(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    base = folder / "structures" if (folder / "structures").is_dir() else folder
    paths = sorted(base.glob("*.json"))
    if not paths:
        raise DiscoveryError(f"{folder}: no MOF records (*.json, or structures/*.json of an imported dataset)")
    return paths


def _assemble(mof: MOF, orientations: bool) -> tuple[str, str]:
    """(valid | built_invalid | not_built, why): the reason without the numbers that make each one unique."""
    if mof.cg is None or not mof.cg.beads:
        return "not_built", "no CG view"
    library = UnitLibrary(block_from_row(i, row) for i, row in (mof.units or {}).items())
    try:
        result = assemble_cg_view(mof.cg, use_orientations=orientations, library=library)
    except DiscoveryError as exc:
        return "not_built", type(exc).__name__
    if not result.ok:
        return "not_built", _kind(result.message)
    if result.report is not None and not result.report.valid:
        return "built_invalid", _kind(result.report.reason)
    return "valid", ""


def _kind(message: str) -> str:
    """'14 of 64 connection points unpaired: ...' -> 'connection points unpaired'."""
    head = message.split(":")[0]
    return " ".join(w for w in head.split() if not w.replace(".", "").isdigit() and w != "of").strip()
