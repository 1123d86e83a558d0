"""The committed pool table: per labelled design-space MOF its id, CG view, descriptors and oracle labels
(gzipped JSON lines under a header line). ``discovery dataset export`` writes one; the surrogate and the
generator train on it, so that their benchmarks run without the CPU-hours of labelling."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from discovery.errors import DiscoveryError

TABLE_FORMAT = 1
_DATA = Path(__file__).resolve().parent / "data"
POOL_TABLE = _DATA / "pool_henry_none_v1.jsonl.gz"  # the design space (the default everywhere)
EQEQ_POOL_TABLE = _DATA / "pool_henry_eqeq_v1.jsonl.gz"  # the design space labelled with EQeq charges
CORE_POOL_TABLE = _DATA / "pool_core_henry_none_v1.jsonl.gz"  # real MOFs: CoRE MOF 2019-ASR
POOLS = {"design": POOL_TABLE, "design-eqeq": EQEQ_POOL_TABLE, "core": CORE_POOL_TABLE}
# The design space's labelled table per framework-charge scheme of the oracle.
DESIGN_TABLES = {"none": POOL_TABLE, "eqeq": EQEQ_POOL_TABLE}


def pool_tables(names: str) -> list[Path]:
    """The committed tables of comma-separated pool names (``design``, ``design-eqeq``, ``core``, ``design,core``)."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in POOLS]
    if unknown or not wanted:
        raise DiscoveryError(f"unknown pool {names!r}; choose from {', '.join(POOLS)} (comma-separated for several)")
    missing = [n for n in wanted if not POOLS[n].exists()]
    if missing:
        raise DiscoveryError(f"pool {missing[0]}: its table {POOLS[missing[0]].name} is not in this checkout yet")
    return [POOLS[n] for n in dict.fromkeys(wanted)]


def design_table(charges: str) -> Path | None:
    """The committed design-space table labelled with ``charges`` (``none``, ``eqeq``); None if there is none."""
    table = DESIGN_TABLES.get(charges)
    return table if table is not None and table.exists() else None


def committed_name(path: str | Path) -> str | None:
    """The name of a committed pool table (``design``, ``core``); None for any other path. Models record
    their training data by it, so that no path of the machine that trained them is written down."""
    resolved = Path(path).resolve()
    return next((name for name, table in POOLS.items() if table.resolve() == resolved), None)


def resolve_table(spec: str | Path | None) -> Path:
    """A pool table by committed name (``design``, ``core``) or path; None: the design-space table."""
    if spec is None:
        return POOL_TABLE
    return POOLS.get(str(spec), Path(spec))


def read_table(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and rows of a pool table."""
    try:
        with gzip.open(path, "rt") as fh:
            lines = [json.loads(line) for line in fh if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise DiscoveryError(f"{path}: not a pool table ({exc})") from exc
    if not lines or lines[0].get("format") != TABLE_FORMAT:
        raise DiscoveryError(f"{path}: not a pool table of format {TABLE_FORMAT}")
    return lines[0], lines[1:]
