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
POOL_TABLE = Path(__file__).resolve().parent / "data" / "pool_henry_none_v1.jsonl.gz"


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
