"""The labelled pool: design-space MOFs with their oracle labels, as graphs and target arrays.

Two sources: a dataset directory (``discovery dataset build`` then ``discovery dataset label``), or a
compact pool table exported from one (``discovery dataset export``: per MOF its CG view, Zeo++ descriptors
and labels, gzipped JSON lines). A small table is committed (``discovery/data/``) so that the surrogate and
acquisition benchmarks run at once, without the CPU-hours of labelling.

Targets are log10 of what the oracle measures, because K_H spans orders of magnitude across MOFs and the
planner ranks on it: ``log10_kh_co2``, ``log10_kh_n2`` (K_H in mol/kg/Pa) and, when the flue-gas level was
labelled, ``log10_flue_co2`` (mol/kg). The CO2/N2 Henry selectivity is the difference of the first two.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from discovery.errors import DiscoveryError
from discovery.jsonl import append, open_for_append, read_rows
from discovery.library.candidates import compact_cg
from discovery.oracle.core import TARGETS, target_values
from discovery.pool import POOL_TABLE, TABLE_FORMAT, read_table  # noqa: F401 - re-exported
from discovery.structures.descriptors import PROBE_KEYS, probe_descriptors
from discovery.structures.mof import MOF, CGView
from discovery.targets import ADSORPTION
from surrogates.adsorption.graphs import (
    GEOMETRY_KEYS,
    GraphError,
    GraphSettings,
    cg_graph,
)

DEFAULT_TARGETS = ADSORPTION


@dataclass
class LabelledPool:
    """Graphs, targets (``n x len(targets)``) and provenance of the labelled MOFs of one dataset."""

    ids: list[str]
    graphs: list
    y: np.ndarray
    targets: tuple[str, ...]
    data_version: str
    skipped: dict[str, str] = field(default_factory=dict)  # id -> why it is not in the pool

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: Sequence[int]) -> "LabelledPool":
        index = list(index)
        return LabelledPool([self.ids[i] for i in index], [self.graphs[i] for i in index], self.y[index],
                            self.targets, self.data_version)


# ---- from a dataset directory ----------------------------------------------------------------------
def labels_file(dataset: str | Path, charges: str = "none") -> Path:
    path = Path(dataset) / "labels" / f"{charges}.jsonl"
    if not path.exists():
        raise DiscoveryError(f"{path} does not exist: run `discovery dataset label {dataset} --charges {charges}`")
    return path


def dataset_geometry(dataset: str | Path) -> dict[str, dict[str, Any]]:
    """Zeo++ descriptors of every valid MOF of a dataset, from its build log (``results.jsonl``)."""
    rows = {}
    with open(Path(dataset) / "results.jsonl") as fh:
        for line in fh:
            row = json.loads(line)
            if row.get("status") == "valid" and row.get("geometry"):
                rows[row["id"]] = row["geometry"]
    return rows


def probe_cache(dataset: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(dataset) / "probe_descriptors.jsonl"
    return read_rows(path, "id") if path.exists() else {}


def table_rows(dataset: str | Path, charges: str = "none") -> Iterator[dict[str, Any]]:
    """Per labelled MOF: id, CG view, descriptors (Zeo++ geometry and probe energies), labels (log10 targets)
    and the oracle's CPU seconds. Probe descriptors are computed once and cached in the dataset directory."""
    geometry, cached = dataset_geometry(dataset), probe_cache(dataset)
    with open_for_append(Path(dataset) / "probe_descriptors.jsonl") as cache:
        for line in labels_file(dataset, charges).read_text().splitlines():
            row = json.loads(line)
            mof_id = row["structure"]
            mof = MOF.from_json(Path(dataset) / "structures" / f"{mof_id}.json")
            if mof_id not in cached:
                cached[mof_id] = {"id": mof_id, **probe_descriptors(mof.structure).to_dict()}
                append(cache, cached[mof_id])
            descriptors = {**{k: geometry.get(mof_id, {}).get(k) for k in GEOMETRY_KEYS},
                           **{k: cached[mof_id][k] for k in PROBE_KEYS}}
            yield {"id": mof_id, "cg": compact_cg(mof.cg), **({"units": mof.units} if mof.units else {}),
                   "descriptors": descriptors,
                   "labels": target_values(row), "failures": row.get("failures", {}), "cpu_s": row.get("cpu_s", {}),
                   # a label whose Monte Carlo ended above its target (the insertion cap) says so
                   **({"converged": False} if row.get("converged") is False else {})}


def export_table(dataset: str | Path, out: str | Path, charges: str = "none") -> dict[str, Any]:
    """Write the pool table of a labelled dataset; returns its header."""
    path = labels_file(dataset, charges)
    first = json.loads(path.read_text().splitlines()[0])
    rows = list(table_rows(dataset, charges))
    summary = Path(dataset) / "summary.json"
    source = json.loads(summary.read_text()).get("source") if summary.exists() else None  # e.g. a CoRE subset
    header = {"format": TABLE_FORMAT, "charges": charges, "n": len(rows), "oracle_settings": first.get("settings"),
              **({"structures": source} if source else {}),
              "versions": first.get("versions"), "labels_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
              "command": f"discovery dataset export {dataset} --charges {charges} --out {Path(out).name}"}
    with gzip.open(out, "wt") as fh:
        for row in [header, *rows]:
            fh.write(json.dumps(row, separators=(",", ":")) + "\n")
    return header


# ---- graphs and targets ----------------------------------------------------------------------------
def load_pool(source: str | Path | Sequence[str | Path] | None = None, charges: str = "none",
              targets: Sequence[str] = DEFAULT_TARGETS, settings: GraphSettings | None = None,
              limit: int | None = None, progress: bool = False) -> LabelledPool:
    """Every MOF of ``source`` (a labelled dataset directory or a pool table, or a list of them, e.g. both
    committed pools; default: the design-space table) whose targets are all labelled; the others are listed
    in ``skipped`` with the reason."""
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise DiscoveryError(f"unknown targets {unknown}; available: {', '.join(TARGETS)}")
    if isinstance(source, (list, tuple)):
        return _merged([load_pool(s, charges, targets, settings, limit, progress) for s in source])
    source = Path(source) if source is not None else POOL_TABLE
    if source.is_dir():
        rows = list(table_rows(source, charges))
        version = "labels-" + hashlib.sha256(labels_file(source, charges).read_bytes()).hexdigest()[:12]
    else:
        if not source.exists():
            raise DiscoveryError(f"{source}: no such pool table or dataset directory")
        header, rows = read_table(source)
        version = "labels-" + header["labels_sha256"][:12]
    pool = LabelledPool([], [], np.zeros((0, len(targets))), tuple(targets), version)
    values = []
    for row in tqdm(rows[:limit], desc="graphs", disable=not progress):
        missing = [t for t in targets if t not in row["labels"]]
        if missing:
            pool.skipped[row["id"]] = f"no label for {missing}: {row.get('failures') or 'not run'}"
            continue
        try:
            cg = CGView.from_dict(row["cg"]) if row.get("cg") else None
            graph = cg_graph(cg, row["descriptors"], row["id"], settings, row.get("units"))
        except GraphError as exc:
            pool.skipped[row["id"]] = str(exc)
            continue
        pool.ids.append(row["id"])
        pool.graphs.append(graph)
        values.append([row["labels"][t] for t in targets])
    pool.y = np.array(values, dtype=float).reshape(-1, len(targets))
    return pool


def _merged(pools: list[LabelledPool]) -> LabelledPool:
    """One pool of several (their ids must not clash: a MOF labelled twice would be counted twice)."""
    ids = [i for p in pools for i in p.ids]
    clash = sorted(i for i, n in Counter(ids).items() if n > 1)
    if clash:
        raise DiscoveryError(f"the pools share MOF ids {clash[:3]}: merge them into one table instead")
    return LabelledPool(ids, [g for p in pools for g in p.graphs], np.concatenate([p.y for p in pools]),
                        pools[0].targets, "+".join(p.data_version for p in pools),
                        {k: v for p in pools for k, v in p.skipped.items()})
