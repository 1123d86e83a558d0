"""The extended building-block library: units cut from real MOFs, beside pormake's blocks.

A unit that ``discovery.library.decompose`` cuts from a structure is a ``BuildingBlock`` like pormake's: its
atoms in a local frame, ``X`` connection points where the cut bonds' partner atoms were, and its bonds. Its
id is derived from its content, so the same chemical unit cut from two MOFs (or on two machines) gets the
same id: ``U`` and 12 hex digits of a hash of its bond graph (elements, ``X`` included, Weisfeiler-Lehman,
networkx). A unit whose graph equals a pormake block's takes the pormake id instead, so real and design-space
MOFs share vectors where they share chemistry.

The library file (``UnitLibrary.save``) is gzipped JSON: no pickle; its version is a digest of its content.
The geometry kept for an id is the first one seen: later instances of the id are placed by rotation
(``decompose`` reports how well each fits).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import networkx as nx
import numpy as np

from discovery.errors import DiscoveryError
from discovery.library.building_blocks import BuildingBlock

FORMAT_VERSION = 1


def unit_graph(bb: BuildingBlock) -> nx.Graph:
    """The block's bond graph, nodes labelled by element (``X`` for connection points)."""
    g = nx.Graph()
    g.add_nodes_from((i, {"el": s}) for i, s in enumerate(bb.symbols))
    g.add_edges_from((int(a), int(b)) for a, b in np.asarray(bb.bonds).reshape(-1, 2))
    return g


def graph_key(graph: nx.Graph) -> str:
    """A digest of the graph up to isomorphism (WL hash with element labels, plus the counts)."""
    wl = nx.weisfeiler_lehman_graph_hash(graph, node_attr="el", iterations=4)
    counts = sorted((d["el"] for _, d in graph.nodes(data=True)))
    return hashlib.sha256(f"{wl}|{','.join(counts)}|{graph.number_of_edges()}".encode()).hexdigest()


def content_id(bb: BuildingBlock) -> str:
    """The unit's stable id: a pormake id when a pormake block has the same bond graph, else ``U`` + hex."""
    key = graph_key(unit_graph(bb))
    return _pormake_keys().get(key) or f"U{key[:12]}"


@lru_cache(maxsize=1)
def _pormake_keys() -> dict[str, str]:
    from discovery.library.building_blocks import BuildingBlockLibrary

    keys: dict[str, str] = {}
    for bb in BuildingBlockLibrary():  # first id wins where pormake holds two copies of one graph
        keys.setdefault(graph_key(unit_graph(bb)), bb.id)
    return keys


class UnitLibrary:
    """Units by id; ``get`` falls back on pormake's library for pormake ids."""

    def __init__(self, units: Iterable[BuildingBlock] = ()) -> None:
        self._units: dict[str, BuildingBlock] = {}
        self.add(units)

    def add(self, units: Iterable[BuildingBlock]) -> list[str]:
        """Adds the units not yet held (by id); returns the ids that were new."""
        new = []
        for bb in units:
            if bb.id not in self._units and not is_pormake(bb.id):
                self._units[bb.id] = bb
                new.append(bb.id)
        return new

    def __contains__(self, bb_id: object) -> bool:
        return bb_id in self._units or (isinstance(bb_id, str) and is_pormake(bb_id))

    def __len__(self) -> int:
        return len(self._units)

    def __iter__(self) -> Iterator[BuildingBlock]:
        return iter(self._units.values())

    def get(self, bb_id: str) -> BuildingBlock:
        if bb_id in self._units:
            return self._units[bb_id]
        return _pormake().get(bb_id)  # a pormake id, or the named error

    @property
    def version(self) -> str:
        return hashlib.sha256(json.dumps(self._rows(), sort_keys=True).encode()).hexdigest()[:16]

    def _rows(self) -> dict:
        return {i: block_row(bb) for i, bb in sorted(self._units.items())}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"format_version": FORMAT_VERSION, "version": self.version, "units": self._rows()}
        tmp = path.with_name(path.name + ".tmp")
        with gzip.open(tmp, "wt") as f:
            json.dump(doc, f)
        tmp.replace(path)  # a reader never sees half a library
        return path

    @classmethod
    def load(cls, path: str | Path) -> "UnitLibrary":
        try:
            with gzip.open(path, "rt") as f:
                doc = json.load(f)
        except (OSError, ValueError) as exc:
            raise DiscoveryError(f"{path}: not a unit library (gzipped JSON): {exc}") from exc
        if doc.get("format_version") != FORMAT_VERSION:
            raise DiscoveryError(f"{path}: unit library format {doc.get('format_version')}, this version reads "
                                 f"{FORMAT_VERSION}")
        return cls(block_from_row(i, u) for i, u in doc["units"].items())


@lru_cache(maxsize=1)
def _pormake():
    """pormake's library, once per process (it caches the blocks it has read)."""
    from discovery.library.building_blocks import BuildingBlockLibrary

    return BuildingBlockLibrary()


def block_row(bb: BuildingBlock) -> dict:
    """A block as plain JSON (how the library file and a MOF record's ``units`` hold it)."""
    return {"symbols": list(bb.symbols), "positions": np.round(bb.positions, 4).tolist(),
            "connection_point_indices": list(bb.connection_point_indices),
            "bonds": np.asarray(bb.bonds).reshape(-1, 2).tolist()}


def block_from_row(bb_id: str, row: dict) -> BuildingBlock:
    try:
        return BuildingBlock(id=bb_id, symbols=tuple(row["symbols"]), positions=np.array(row["positions"], float),
                             connection_point_indices=tuple(row["connection_point_indices"]),
                             bonds=np.array(row["bonds"], int).reshape(-1, 2))
    except (KeyError, TypeError, ValueError) as exc:
        raise DiscoveryError(f"unit {bb_id}: not a building-block record ({exc})") from None


def assembly_form(bb: BuildingBlock) -> BuildingBlock:
    """The unit with each ``X`` moved to the midpoint of its bond, pormake's convention (where the two X's of
    a bond coincide, and what CG assembly pairs). A cut unit keeps its X at the partner atom, where the
    decomposition found it: the two X's of one bond are then a bond length apart and would never pair. Ids,
    bonds and atoms are unchanged; pormake's blocks are returned as they are."""
    if is_pormake(bb.id):
        return bb
    # every sample's every bead comes through here: whole-array work, not a loop over bonds per X
    bonds = np.asarray(bb.bonds, dtype=int).reshape(-1, 2)
    is_x = np.zeros(len(bb.symbols), dtype=bool)
    is_x[list(bb.connection_point_indices)] = True
    first_is_x = is_x[bonds[:, 0]]
    touching = first_is_x | is_x[bonds[:, 1]]
    x = np.where(first_is_x, bonds[:, 0], bonds[:, 1])[touching]
    anchor = np.where(first_is_x, bonds[:, 1], bonds[:, 0])[touching]
    single = (np.bincount(x, minlength=len(is_x)) == 1)[x]  # an X with one bond: its anchor is defined
    positions = bb.positions.copy()
    positions[x[single]] = (bb.positions[x[single]] + bb.positions[anchor[single]]) / 2
    return BuildingBlock(id=bb.id, symbols=bb.symbols, positions=positions,
                         connection_point_indices=bb.connection_point_indices, bonds=bb.bonds)


def is_pormake(bb_id: str) -> bool:
    return bb_id[:1] in ("N", "E") and bb_id[1:].isdigit()
