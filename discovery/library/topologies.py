"""Topologies: the RCSR nets shipped by pormake, with their node and edge slots.

Parsing a net's .cgd file takes from a tenth of a second to minutes, so a catalogue of slot counts and
types for every net is shipped with the package (``data/topologies.json``; rebuild it with
``discovery topology catalogue --rebuild``). The pormake Topology objects themselves are parsed on
demand and kept per process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from discovery.library._pormake import database_dir, pormake, pormake_version, quiet
from discovery.errors import UnknownTopologyError

CATALOGUE_PATH = Path(__file__).resolve().parents[1] / "data" / "topologies.json"


@dataclass(frozen=True)
class NodeSlotType:
    """A node type of a net: its index, coordination number and how many nodes of it a cell has."""

    index: int
    cn: int
    count: int


@dataclass(frozen=True)
class EdgeSlotType:
    """An edge type: the pair of node types it joins and how many such edges a cell has."""

    pair: tuple[int, int]
    count: int


@dataclass(frozen=True)
class TopologyInfo:
    """Summary of a net; ``cell`` is the unscaled net's (a, b, c, alpha, beta, gamma)."""

    name: str
    node_types: tuple[NodeSlotType, ...]
    edge_types: tuple[EdgeSlotType, ...]
    cell: tuple[float, ...]

    @property
    def n_nodes(self) -> int:
        return sum(t.count for t in self.node_types)

    @property
    def n_edges(self) -> int:
        return sum(t.count for t in self.edge_types)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cell": list(self.cell),
                "node_types": [[t.index, t.cn, t.count] for t in self.node_types],
                "edge_types": [[list(t.pair), t.count] for t in self.edge_types]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TopologyInfo":
        return cls(name=d["name"], cell=tuple(d["cell"]),
                   node_types=tuple(NodeSlotType(*t) for t in d["node_types"]),
                   edge_types=tuple(EdgeSlotType(tuple(p), c) for p, c in d["edge_types"]))

    @classmethod
    def from_pormake(cls, topo) -> "TopologyInfo":
        types = [int(t) for t in topo.node_types[topo.node_indices]]
        node_types = tuple(NodeSlotType(t, int(cn), types.count(t)) for t, cn in zip(sorted(set(types)), topo.unique_cn))
        pairs = [tuple(int(x) for x in topo.edge_types[i]) for i in topo.edge_indices]
        edge_types = tuple(EdgeSlotType(p, pairs.count(p)) for p in sorted(set(pairs)))
        return cls(name=topo.name, node_types=node_types, edge_types=edge_types,
                   cell=tuple(round(float(x), 6) for x in topo.atoms.cell.cellpar()))


class TopologyLibrary:
    """The nets pormake ships, by RCSR name."""

    def __init__(self, catalogue_path: Path | None = None) -> None:
        self._names = sorted(p.stem for p in (database_dir() / "topologies").glob("*.cgd"))
        self._catalogue = _load_catalogue(catalogue_path or CATALOGUE_PATH)

    def names(self) -> list[str]:
        return list(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __len__(self) -> int:
        return len(self._names)

    def info(self, name: str) -> TopologyInfo:
        """Slot summary of a net; UnknownTopologyError for names not in the library or unparsable."""
        self._require(name)
        entry = self._catalogue.get(name)
        if entry is None or str(entry.get("error", "")).startswith("timeout"):
            # not catalogued (a newer pormake) or too slow to catalogue: parse it now, however long it takes
            entry = _catalogue_entry(name)
            self._catalogue[name] = entry
        if "error" in entry:
            raise UnknownTopologyError(f"topology {name!r} cannot be used: pormake cannot parse it ({entry['error']})")
        return TopologyInfo.from_dict(entry)

    def select(self, keep: Callable[[TopologyInfo], bool]) -> list[TopologyInfo]:
        """Catalogued, parsable nets for which ``keep(info)`` is true, by name."""
        out = []
        for name in self._names:
            entry = self._catalogue.get(name)
            if entry is not None and "error" not in entry and keep(info := TopologyInfo.from_dict(entry)):
                out.append(info)
        return out

    def pormake_topology(self, name: str):
        self._require(name)
        return _parse(name)

    def _require(self, name: str) -> None:
        if name not in self._names:
            raise UnknownTopologyError(f"unknown topology {name!r}: not among pormake's {len(self._names)} RCSR nets")


@lru_cache(maxsize=64)
def _parse(name: str):
    with quiet():
        return pormake().Topology(str(database_dir() / "topologies" / f"{name}.cgd"))


def _catalogue_entry(name: str) -> dict[str, Any]:
    try:
        return TopologyInfo.from_pormake(_parse(name)).to_dict()
    except Exception as exc:  # pormake raises bare Exceptions for nets it cannot parse
        return {"name": name, "error": str(exc)[:200]}


def _load_catalogue(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if data.get("pormake_version") != pormake_version():
        return {}  # slot numbering may differ between pormake versions; parse on demand instead
    return {e["name"]: e for e in data["topologies"]}


def build_catalogue(path: Path = CATALOGUE_PATH, workers: int | None = None, progress: bool = True,
                    timeout_s: float = 120.0) -> Path:
    """Parse every net not yet in the catalogue at ``path`` (in parallel) and save as it goes.

    Slow (CPU-hours for all 2,404 nets) and resumable: an interrupted run keeps what it saved. A net
    that takes longer than ``timeout_s`` is recorded as unusable.
    """
    from discovery.parallel import map_with_timeout

    catalogue = _load_catalogue(path)
    todo = [n for n in sorted(p.stem for p in (database_dir() / "topologies").glob("*.cgd")) if n not in catalogue]
    results = map_with_timeout(_catalogue_entry, todo, timeout=timeout_s, workers=workers, desc="topologies",
                               progress=progress)
    for k, (name, result) in enumerate(results, start=1):
        catalogue[name] = result if isinstance(result, dict) else {"name": name, "error": str(result)}
        if k % 25 == 0 or k == len(todo):
            _save_catalogue(path, catalogue)
    _save_catalogue(path, catalogue)
    return path


def _save_catalogue(path: Path, catalogue: dict[str, dict[str, Any]]) -> None:
    entries = [catalogue[k] for k in sorted(catalogue)]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pormake_version": pormake_version(), "topologies": entries}, separators=(",", ":")))
    tmp.replace(path)  # atomic: an interruption never leaves half a file
