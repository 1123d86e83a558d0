"""Generation metrics: validity, uniqueness, novelty, and the cost of a valid MOF.

Two MOFs count as the same when their fingerprints agree: the building blocks in their smallest whole
ratio and the density (to 0.01 g/cm3). The same blocks on another net, or packed differently, change the
density; a mere change of cell (a supercell, another setting) does not. Pore sizes are left out on purpose:
an edit that keeps its parent's blocks and cell and only moves beads reassembles into the parent, yet its
Zeo++ pore-limiting diameter can differ by tenths of an Angstrom, which would count it as new (with the
PLD in the fingerprint, 0.79 of the valid edits at strength 0.3 counted as novel; 0.26 have new blocks or
density). Both sides of a novelty check need the density, which the design-space table and every prepared
candidate have.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import reduce
from typing import Any, Iterable, Mapping, Sequence


def fingerprint(cg: Mapping[str, Any], descriptors: Mapping[str, Any]) -> tuple:
    counts = Counter(b["bb_id"] for b in cg["beads"])
    g = reduce(math.gcd, counts.values())
    blocks = tuple(sorted((bb, n // g) for bb, n in counts.items()))
    density = descriptors.get("density_g_cm3")
    return blocks, None if density is None else round(float(density), 2)


def generation_metrics(records: Sequence[Mapping[str, Any]], training: Iterable[Mapping[str, Any]],
                       cpu_s: float) -> dict[str, Any]:
    """``records``: prepared samples (``status``, ``cg``, ``descriptors``); ``training``: rows the model was
    trained on; ``cpu_s``: CPU seconds of sampling and preparation together."""
    valid = [r for r in records if r.get("status") == "valid"]
    prints = [fingerprint(r["cg"], r["descriptors"]) for r in valid]
    known = {fingerprint(r["cg"], r.get("descriptors") or {}) for r in training if r.get("cg")}
    both = [p for p, r in zip(prints, valid) if r.get("mofchecker_valid")]  # MOFChecker's checks passed too
    reasons = Counter(r.get("reason", "?") for r in records if r.get("status") != "valid")
    n = len(records)
    return {"n_sampled": n, "n_valid": len(valid),
            "validity": round(len(valid) / n, 4) if n else 0.0,
            # MOFChecker's validity (MOFDiff's definition, discovery.structures.mofchecker) over the same samples
            "mofchecker_validity": round(sum(bool(r.get("mofchecker_valid")) for r in records) / n, 4) if n else 0.0,
            "uniqueness": round(len(set(prints)) / len(valid), 4) if valid else 0.0,
            "novelty": round(sum(p not in known for p in prints) / len(valid), 4) if valid else 0.0,
            # valid, novel and unique: distinct new fingerprints per sample (MOFDiff's and Mofasa's VNU)
            "vnu": round(len({p for p in prints if p not in known}) / n, 4) if n else 0.0,
            # the same where MOFChecker's checks (MOFDiff's set) pass as well as the project's
            "validity_with_mofchecker": round(len(both) / n, 4) if n else 0.0,
            "vnu_with_mofchecker": round(len({p for p in both if p not in known}) / n, 4) if n else 0.0,
            "valid_per_cpu_s": round(len(valid) / cpu_s, 4) if cpu_s > 0 else 0.0,
            "cpu_s": round(cpu_s, 1), "invalid_reasons": dict(reasons.most_common()),
            # edits of parents known unit by unit (real MOFs: units swapped in place, generator.substitution)
            "edited_in_place": sum(r.get("origin") == "diffusion-edit" and isinstance(r.get("mutation"), str)
                                   for r in records),
            **check_pass_rates(records)}


def check_pass_rates(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Each check's pass rate over the samples that reached the checks (assembled, within the size limits):
    the project's (``failed_checks``; Zeo++'s pore checks run only where the atom checks passed) and
    MOFChecker's (``mofchecker_failed``, MOFDiff's set)."""
    checked = [r for r in records if "failed_checks" in r]
    if not checked:
        return {}
    def rates(field: str) -> dict[str, float]:  # checks no sample failed are left out
        failed = Counter(c for r in checked for c in r.get(field) or ())
        return {c: round(1 - k / len(checked), 4) for c, k in sorted(failed.items())}
    return {"n_checked": len(checked), "check_pass_rates": rates("failed_checks"),
            "mofchecker_pass_rates": rates("mofchecker_failed")}
