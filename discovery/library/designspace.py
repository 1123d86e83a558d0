"""The hypothetical-MOF design space: curated building blocks and nets, their compatibility, and
seeded sampling of buildable recipes (the way hMOF and BW-DB were enumerated).

Compatibility (pormake's node-to-slot RMSD) costs ~20 ms per pair and there are tens of thousands of
pairs, so the table is computed once per pormake version and shipped in ``data/compatibility.json``
(``discovery library rebuild`` regenerates it together with the topology catalogue).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator

import numpy as np

from discovery.library._pormake import pormake_version
from discovery.library.assembly import Recipe
from discovery.library.building_blocks import BuildingBlock, BuildingBlockLibrary, natural_key
from discovery.structures.elements import DESIGN_SPACE_METALS
from discovery.errors import DatasetError
from discovery.library.topologies import TopologyInfo, TopologyLibrary

COMPAT_PATH = Path(__file__).resolve().parents[1] / "data" / "compatibility.json"
TABLE_MAX_RMSD = 0.5  # pairs stored in the shipped table; any threshold up to this can be used
TABLE_MAX_NODES = 16  # nets with more vertices per cell are left out of the table
TABLE_MAX_TYPES = 2  # ... and nets with more node types or more edge types


@dataclass(frozen=True)
class DesignSpace:
    """Which building blocks and nets make up the design space, and the size limits of a MOF."""

    metals: tuple[str, ...] = tuple(sorted(DESIGN_SPACE_METALS))
    max_node_atoms: int = 60
    max_organic_node_atoms: int = 40
    max_edge_atoms: int = 30
    # pormake aligns connection-point arms, not bonds: BBs whose outward bonds tilt away from their arms
    # build with clashes. Measured on 40 random uninodal recipes: 30 % pass the atom checks without this
    # limit, ~70 % with 20 degrees (see BuildingBlock.bond_tilt_max).
    max_bond_tilt: float = 20.0
    max_net_nodes: int = 8
    max_node_types: int = 2
    # One kind of edge: with several edge types pormake must stretch some linkers and squeeze others.
    # In one 40-recipe sample (RMSD limit 0.3, nets a-e), 20 % passed every check with up to 3 edge
    # types against 68 % with 1.
    max_edge_types: int = 1
    max_atoms: int = 1500
    max_cell_length: float = 60.0
    # Stricter than the 0.3 at which pormake can assemble at all: on 60 random recipes (seed 3), 52 %
    # passed every check at 0.15 and 73 % at 0.1, where 41 nets remain usable.
    rmsd_threshold: float = 0.1
    p_no_edge: float = 0.5  # chance of a direct bond on an edge joining a metal node and an organic node

    def __post_init__(self) -> None:
        if not 0 < self.rmsd_threshold <= TABLE_MAX_RMSD:
            raise DatasetError(f"rmsd_threshold must be in (0, {TABLE_MAX_RMSD}], got {self.rmsd_threshold}")
        if self.max_net_nodes > TABLE_MAX_NODES:
            raise DatasetError(f"max_net_nodes must be <= {TABLE_MAX_NODES} (the compatibility table's limit)")
        if max(self.max_node_types, self.max_edge_types) > TABLE_MAX_TYPES:
            raise DatasetError(f"max_node_types and max_edge_types must be <= {TABLE_MAX_TYPES} "
                               "(the compatibility table's limit)")

    def to_dict(self) -> dict:
        return asdict(self)

    # ---- curation ---------------------------------------------------------------------------
    def keeps_metal_node(self, bb: BuildingBlock) -> bool:
        return bb.kind == "node" and bb.has_metal and set(bb.metals) <= set(self.metals) \
            and bb.n_atoms <= self.max_node_atoms and bb.bond_tilt_max <= self.max_bond_tilt

    def keeps_organic_node(self, bb: BuildingBlock) -> bool:
        return bb.kind == "node" and not bb.has_metal and bb.n_atoms <= self.max_organic_node_atoms \
            and bb.bond_tilt_max <= self.max_bond_tilt

    def keeps_edge(self, bb: BuildingBlock) -> bool:
        return bb.kind == "edge" and not bb.has_metal and bb.n_atoms <= self.max_edge_atoms \
            and bb.bond_tilt_max <= self.max_bond_tilt

    def keeps_net(self, t: TopologyInfo) -> bool:
        return (t.n_nodes <= self.max_net_nodes and len(t.node_types) <= self.max_node_types
                and len(t.edge_types) <= self.max_edge_types and all(3 <= n.cn <= 12 for n in t.node_types))


def table_nets(topologies: TopologyLibrary) -> list[TopologyInfo]:
    """Nets covered by the compatibility table."""
    return topologies.select(lambda t: t.n_nodes <= TABLE_MAX_NODES and len(t.node_types) <= TABLE_MAX_TYPES
                             and len(t.edge_types) <= TABLE_MAX_TYPES and all(3 <= n.cn <= 12 for n in t.node_types))


def _slot_rmsds(task: tuple[str, int, list[str]]) -> list[tuple[str, float]]:
    """Worker: RMSD of each candidate node BB on one node type of one net."""
    from discovery.library.assembly import default_assembler

    topology, node_type, candidates = task
    asm = default_assembler()
    return [(bb, round(asm.node_rmsd(topology, node_type, bb), 4)) for bb in candidates]


def build_compatibility_table(path: Path = COMPAT_PATH, workers: int | None = None, progress: bool = True) -> Path:
    """Compute the node-slot RMSD of every node BB on every table net's node types (CPU-minutes).

    Resumable: slots already in the table at ``path`` are kept, new ones are saved as they finish.
    """
    from discovery.parallel import TaskFailure, map_with_timeout

    bbs, topologies = BuildingBlockLibrary(), TopologyLibrary()
    table = _load_table(path)
    by_cn: dict[int, list[str]] = {}
    for bb in bbs:
        if bb.kind == "node":
            by_cn.setdefault(bb.n_connection_points, []).append(bb.id)
    tasks = [(t.name, n.index, by_cn.get(n.cn, [])) for t in table_nets(topologies) for n in t.node_types
             if f"{t.name}:{n.index}" not in table]
    results = map_with_timeout(_slot_rmsds, tasks, timeout=1800.0, workers=workers, desc="node-slot RMSD",
                               progress=progress)
    for k, ((name, node_type, _), result) in enumerate(results, start=1):
        # A slot that failed is stored empty: no BB is known to fit it.
        fits = {} if isinstance(result, TaskFailure) else {bb: r for bb, r in result if r <= TABLE_MAX_RMSD}
        table[f"{name}:{node_type}"] = fits
        if k % 10 == 0:
            _save_table(path, table)
    _save_table(path, table)
    return path


def _load_table(path: Path) -> dict[str, dict[str, float]]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return data["slots"] if data.get("pormake_version") == pormake_version() else {}


def _save_table(path: Path, table: dict[str, dict[str, float]]) -> None:
    payload = {"pormake_version": pormake_version(), "max_rmsd": TABLE_MAX_RMSD, "slots": table}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, separators=(",", ":"), sort_keys=True))
    tmp.replace(path)


@dataclass
class Sampler:
    """Seeded sampling of distinct, compatible, size-limited recipes from a design space."""

    space: DesignSpace = field(default_factory=DesignSpace)
    bbs: BuildingBlockLibrary = field(default_factory=BuildingBlockLibrary)
    topologies: TopologyLibrary = field(default_factory=TopologyLibrary)
    table_path: Path = COMPAT_PATH

    @cached_property
    def table(self) -> dict[str, dict[str, float]]:
        if not self.table_path.exists():
            raise DatasetError(f"no compatibility table at {self.table_path}; run `discovery library rebuild`")
        data = json.loads(self.table_path.read_text())
        if data["pormake_version"] != pormake_version():
            raise DatasetError(f"the compatibility table was made with pormake {data['pormake_version']}, "
                               f"pormake {pormake_version()} is installed; run `discovery library rebuild`")
        return data["slots"]

    @cached_property
    def edges(self) -> list[str]:
        return [bb.id for bb in self.bbs if self.space.keeps_edge(bb)]

    def slot_candidates(self, net: TopologyInfo, node_type: int) -> tuple[list[str], list[str]]:
        """(metal, organic) node BB ids that fit a node type under the RMSD threshold."""
        fits = self.table.get(f"{net.name}:{node_type}", {})
        ids = sorted((b for b, r in fits.items() if r <= self.space.rmsd_threshold), key=natural_key)
        metal = [b for b in ids if self.space.keeps_metal_node(self.bbs.get(b))]
        organic = [b for b in ids if self.space.keeps_organic_node(self.bbs.get(b))]
        return metal, organic

    @cached_property
    def nets(self) -> list[tuple[TopologyInfo, list[tuple[list[str], list[str]]]]]:
        """Usable nets with their per-node-type candidates: every type fillable, some type by a metal node."""
        out = []
        for net in self.topologies.select(self.space.keeps_net):
            cands = [self.slot_candidates(net, n.index) for n in net.node_types]
            if all(m or o for m, o in cands) and any(m for m, _ in cands):
                out.append((net, cands))
        return out

    def recipes(self, seed: int) -> Iterator[Recipe]:
        """An endless stream of distinct recipes; the first N are the same for any later request of M > N."""
        if not self.nets or not self.edges:
            raise DatasetError("the design space is empty: no net has a compatible metal node")
        rng = np.random.default_rng(seed)
        seen: set[str] = set()
        for _ in range(1000 * (len(self.nets) + 100)):
            recipe = self._draw(rng)
            if recipe is not None and str(recipe) not in seen:
                seen.add(str(recipe))
                yield recipe

    def _draw(self, rng: np.random.Generator) -> Recipe | None:
        net, cands = self.nets[rng.integers(len(self.nets))]
        metal_type = rng.choice([i for i, (m, _) in enumerate(cands) if m])  # this type gets a metal node
        nodes = []
        for i, (metal, organic) in enumerate(cands):
            pool = metal if i == metal_type else metal + organic
            nodes.append(pool[rng.integers(len(pool))])
        edges = [self._edge(rng, nodes, et.pair) for et in net.edge_types]
        recipe = Recipe(net.name, tuple(nodes), tuple(edges))
        return recipe if self.within_limits(net, recipe) else None

    def contains(self, recipe: Recipe) -> bool:
        """Whether ``recipes`` can produce ``recipe``: a usable net, each node block among its slot's candidates
        (a metal block on some type), the space's edges, and its size limits."""
        nets = self._nets_by_name
        if recipe.topology not in nets:
            return False
        net, cands = nets[recipe.topology]
        if len(recipe.node_bbs) != len(cands) or len(recipe.edge_bbs) != len(net.edge_types):
            return False
        if not any(b in m for b, (m, _) in zip(recipe.node_bbs, cands)) \
                or not all(b in m or b in o for b, (m, o) in zip(recipe.node_bbs, cands)):
            return False
        if any(e is not None and e not in self.edges for e in recipe.edge_bbs):
            return False
        return self.within_limits(net, recipe)

    def within_limits(self, net: TopologyInfo, recipe: Recipe) -> bool:
        """The space's size limits, judged before building: the exact atom count and the predicted cell."""
        return self.estimated_atoms(net, recipe) <= self.space.max_atoms \
            and self.estimated_cell_length(net, recipe) <= self.space.max_cell_length

    @cached_property
    def _nets_by_name(self) -> dict[str, tuple[TopologyInfo, list[tuple[list[str], list[str]]]]]:
        return {net.name: (net, cands) for net, cands in self.nets}

    def _edge(self, rng: np.random.Generator, nodes: list[str], pair: tuple[int, int]) -> str | None:
        has_metal = [self.bbs.get(nodes[t]).has_metal for t in pair]
        edge = self.edges[rng.integers(len(self.edges))]
        mixed = has_metal[0] != has_metal[1]
        return None if mixed and rng.random() < self.space.p_no_edge else edge

    def estimated_cell_length(self, net: TopologyInfo, recipe: Recipe) -> float:
        """Longest cell edge (A) after pormake scales the net, predicted before building.

        RCSR embeddings have unit edge length, and pormake stretches each edge to span both node arms
        plus the linker; over 340 builds the built/predicted ratio had median 1.00 (5-95 %: 0.84-1.20).
        """
        spans = []
        for et, edge in zip(net.edge_types, recipe.edge_bbs):
            span = sum(self.bbs.get(recipe.node_bbs[t]).descriptors["arm_length_mean"] for t in et.pair)
            spans.append(span + (0.0 if edge is None else 2 * self.bbs.get(edge).descriptors["arm_length_mean"]))
        return max(net.cell[:3]) * max(spans)

    def estimated_atoms(self, net: TopologyInfo, recipe: Recipe) -> int:
        """Exact atom count of the built MOF (every slot's BB atoms, connection points removed)."""
        n = sum(self.bbs.get(b).n_atoms * t.count for b, t in zip(recipe.node_bbs, net.node_types))
        return n + sum(self.bbs.get(b).n_atoms * t.count for b, t in zip(recipe.edge_bbs, net.edge_types) if b)
