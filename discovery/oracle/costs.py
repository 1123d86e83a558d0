"""What each oracle level costs, in CPU-seconds per MOF, as measured on this project's 2-core machine: the
numbers a campaign's multi-fidelity funnel weighs its choices with (``planner.costs`` overrides them).

They are fixed numbers, not the campaign's own timings: a selection must not depend on how busy a machine was,
or a resumed campaign (or the same seed on a Ray cluster) would choose differently. What a campaign's calls
really cost is in its results (``cpu_s`` per level) and in its round metrics; set ``planner.costs`` from them
for a machine that differs. Sources (docs/oracle.md, docs/transport.md, README):
- geometry: Zeo++ on design MOFs, ~0.1-1 s;
- henry, grid engine with EQeq charges: 5.35 CPU-s per quickstart oracle call (charges, box, grids and
  CO2 + N2 insertions; `discovery run configs/quickstart.yaml`, 2026-12-04); RASPA3 Widom at 5 % with EQeq:
  64 CPU-s per MOF (`discovery benchmark oracle --compare-engines`, 50 design MOFs);
- flue_gas: RASPA3 GCMC, 37 s on average (IRMOF-1, ZIF-8); working_capacity: 12 s more;
- diffusivity: LAMMPS MD of 10 CO2 for 2 ns, 572 CPU-s per MOF with EQeq charges (co2_capture campaign, 16
  MOFs), 208-275 without charges (6 reference MOFs).
"""

from __future__ import annotations

from typing import Mapping

from discovery.errors import DiscoveryError

LEVEL_CPU_S = {"geometry": 1.0, "flue_gas": 37.0, "working_capacity": 12.0}
HENRY_CPU_S = {"grid": 5.4, "raspa": 64.0}
DIFFUSIVITY_CPU_S = {"charged": 572.0, "none": 240.0}


def level_cost(level: str, engine: str = "grid", charges: str = "eqeq") -> float:
    """Measured CPU-s per MOF of one level, for the henry engine and the framework charges given."""
    if level == "henry":
        return HENRY_CPU_S[engine]
    if level == "diffusivity":
        return DIFFUSIVITY_CPU_S["none" if charges == "none" else "charged"]
    if level not in LEVEL_CPU_S:
        raise DiscoveryError(f"no measured cost for oracle level {level!r}")
    return LEVEL_CPU_S[level]


def stage_cost(levels: tuple[str, ...] | list[str], engine: str = "grid", charges: str = "eqeq",
               overrides: Mapping[str, float] | None = None) -> float:
    """CPU-s of running ``levels`` on one MOF (``overrides``: level -> CPU-s, e.g. ``planner.costs``)."""
    overrides = overrides or {}
    return float(sum(overrides[level] if level in overrides else level_cost(level, engine, charges)
                     for level in levels))
