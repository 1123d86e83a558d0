"""``discovery benchmark decompose``: a random CoRE MOF sample imported (the project's checks), cut into units
and reassembled from its CG view, with the fraction at each stage and the reasons for each loss."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from discovery.library.importer import core_mof_names, import_structures, unpack_core_mof


def benchmark_decompose(n: int = 200, seed: int = 0, subset: str = "2019-ASR", workers: int | None = None,
                        timeout_s: float = 300.0, out: str | Path | None = None,
                        progress: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out or tmp)
        names = core_mof_names(subset, n, seed)
        paths = unpack_core_mof(subset, names, folder / "source")
        summary = import_structures(paths, folder, f"core-mof:{subset}", workers=workers, timeout_s=timeout_s,
                                    progress=progress, decompose_refused=True)
    dec, read = summary["decomposition"], summary["decomposition_of_all_read"]
    return {"subset": subset, "seed": seed, "attempted": summary["attempted"], "imported": summary["valid"],
            "imported_fraction": summary["valid_fraction"], "import_failures": summary["failures"],
            "decomposed": dec["decomposed"], "decomposed_fraction_of_imported": dec["decomposed_fraction"],
            "decomposed_fraction_of_attempted": round(dec["decomposed"] / max(1, summary["attempted"]), 3),
            "reassembled": dec["reassembled"], "reassembled_fraction_of_imported": dec["reassembled_fraction"],
            "decomposition_failures": dec["failures"],
            # the import's checks refuse many real MOFs (overlaps, odd coordination, no CO2 channel); cutting
            # does not need them to pass, so it is measured over every structure that could be read too
            "read_and_ordered": read["n"],
            "decomposed_fraction_of_read": read["decomposed_fraction"],
            "reassembled_fraction_of_read": read["reassembled_fraction"],
            "decomposition_failures_of_read": read["failures"], **{k: dec[k] for k in (
                "topology_named", "topologies", "distinct_units", "pormake_units", "extended_library",
                "max_deviation_A_median")},
            "mofchecker": summary["mofchecker"],
            "cpu_s_per_structure": {"import_and_checks": summary["cpu_s_per_structure"],
                                    "decomposition": dec["cpu_s_per_structure"]},
            "wall_s": summary["wall_s"]}
