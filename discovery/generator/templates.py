"""The topology-aware prior of de novo sampling: a net, its beads at the net's embedding, blocks from noise.

Measured on the shipped 12,000-step model: with bead positions, cell and bead count all drawn from the
prior, 0 of 50 de novo samples assembled (docs/generator.md). The CPU-sized denoiser has learned which
blocks sit where, not how to lay out a whole 3-periodic net. So a de novo sample here starts from a net:

1. the latent ``z`` is drawn from the prior (steered by the property head when asked);
2. a net is drawn with probability proportional to its prior weight times the latent's count head at the
   net's bead count (nodes + edges per cell): the latent chooses among nets of its size. The prior weight
   is the net's frequency in the training set, and a share ``unseen_weight`` of the mass is spread over
   the nets the training set does not hold (RCSR nets of pormake's library whose every node type some
   library block fits), so samples can leave the design space;
3. one bead sits on each node and each edge centre of the net's RCSR embedding, the cell scaled to the
   training set's median size per unit net;
4. the building blocks are denoised from pure noise at those positions, conditioned on ``z``; every step's
   clean estimate is snapped to the nearest block that fits the bead's slot: a node block whose
   connection points fit the node type (pormake's RMSD <= ``rmsd``), an edge block on an edge. One node
   type of each net must take a metal block (drawn among the types some metal block fits), as in the
   design space's enumeration, and one slot type a block that holds hydrogen (drawn among the types some
   such block fits): MOFChecker rejects a framework without hydrogen, and 12 % of the samples were such
   before this rule. A slot offers only the blocks that can keep the design space's cell limit on that net
   (``_within_reach``);
5. each slot type takes the block most of its beads chose (a recipe: one block per node type and per edge
   type); a recipe over the design space's size limits is drawn again (``generator.SIZE_REDRAWS``), and
   pormake builds it, scaling the net to the blocks (``library.assembly``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from discovery.config import ProposerConfig
from discovery.errors import DiscoveryError, UnknownTopologyError
from discovery.generator.model import MAX_BEADS
from discovery.library.assembly import Recipe
from discovery.library.block_checks import load_block_checks, rejected_blocks
from discovery.library.designspace import DesignSpace, Sampler, table_nets
from discovery.library.topologies import TopologyInfo, TopologyLibrary
from discovery.library.units import is_pormake


_PROPOSER = ProposerConfig()  # the campaign's defaults


@dataclass(frozen=True)
class DenovoSettings:
    """What de novo sampling may use. ``rmsd``: pormake's node-slot RMSD a node block may have on its slot
    (the design space uses 0.1; pormake builds up to 0.3); ``unseen_weight``: the share of the net prior's
    mass on nets the training set does not hold; ``max_beads``: nets with more beads per cell are left out
    (the count head's range)."""

    rmsd: float = _PROPOSER.denovo_rmsd
    unseen_weight: float = _PROPOSER.denovo_unseen
    max_beads: int = MAX_BEADS
    # leave out the blocks MOFChecker rejects in most frameworks they are built into (library.block_checks)
    mofchecker_blocks: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.rmsd <= 0.3:
            raise DiscoveryError(f"de novo rmsd must be in (0, 0.3] (pormake builds up to 0.3), got {self.rmsd}")
        if not 0 <= self.unseen_weight < 1:
            raise DiscoveryError(f"de novo unseen_weight must be in [0, 1), got {self.unseen_weight}")


@dataclass(frozen=True)
class NetTemplate:
    """A net ready for sampling: per slot type the blocks that fit (node types first, then edge types),
    the types some metal block fits, and the prior weight."""

    info: TopologyInfo
    allowed: tuple[tuple[str, ...], ...]
    metal_types: tuple[int, ...]
    weight: float
    seen: bool

    @property
    def n_beads(self) -> int:
        return self.info.n_nodes + self.info.n_edges

    def recipe(self, slots: Sequence[int], blocks: Sequence[str]) -> Recipe:
        """Each slot type's most frequent block among its beads (ties: the first bead's)."""
        chosen = []
        for t in range(len(self.allowed)):
            votes = Counter(b for s, b in zip(slots, blocks) if s == t)
            chosen.append(votes.most_common(1)[0][0])
        k = len(self.info.node_types)
        return Recipe(self.info.name, tuple(chosen[:k]), tuple(chosen[k:]))


@dataclass
class Layout:
    """A net's beads: the cell (3 x 3 rows, A), Cartesian positions (nodes, then edge centres) and the slot
    type of each bead (node type index, or the number of node types plus the edge type index)."""

    lattice: np.ndarray
    positions: np.ndarray
    slots: np.ndarray


class TemplatePrior:
    """The nets de novo sampling draws from, with the blocks that fit each of their slots."""

    def __init__(self, templates: Sequence[NetTemplate], scale: float, metal_blocks: Iterable[str],
                 sampler: Sampler | None = None, hydrogen_blocks: Iterable[str] = ()) -> None:
        if not templates:
            raise DiscoveryError("no net can be filled with the generator's building blocks")
        self.templates = list(templates)
        self.scale = float(scale)
        self.metal_blocks = frozenset(metal_blocks)
        self.hydrogen_blocks = frozenset(hydrogen_blocks)  # empty: no hydrogen rule
        self.sampler = sampler or Sampler()  # the design space: its size limits and libraries
        self.topologies = self.sampler.topologies

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping], blocks: Sequence[str], settings: DenovoSettings | None = None,
                  space: DesignSpace | None = None) -> "TemplatePrior":
        """From the training rows (their nets and cells) and the blocks the generator's embedding holds."""
        settings = settings or DenovoSettings()
        sampler = Sampler(space or DesignSpace())
        topologies = sampler.topologies
        nets = Counter(r["cg"]["topology"] for r in rows if r.get("cg") and r["cg"].get("topology"))
        if not nets:
            raise DiscoveryError("de novo sampling needs training rows with a net (their CG view's topology)")
        known = {b for b in blocks if is_pormake(b)}  # real MOFs' units: not on pormake's nets (yet)
        if settings.mofchecker_blocks:
            known -= rejected_blocks(load_block_checks())
        metal = {b for b in known if sampler.bbs.get(b).has_metal}
        hydrogen = {b for b in known if "H" in sampler.bbs.get(b).composition}
        edges = tuple(b for b in sampler.edges if b in known)
        templates = []
        for info in table_nets(topologies):
            if info.n_nodes + info.n_edges > settings.max_beads or not edges:
                continue
            fits = [tuple(sorted(b for b, r in sampler.table.get(f"{info.name}:{n.index}", {}).items()
                                 if r <= settings.rmsd and b in known)) for n in info.node_types]
            if not all(fits):
                continue
            allowed = _within_reach(info, fits, edges, sampler)
            metal_types = tuple(i for i, f in enumerate(allowed[:len(fits)]) if metal.intersection(f))
            if not all(allowed) or not metal_types:
                continue
            templates.append(NetTemplate(info, allowed, metal_types, float(nets.get(info.name, 0)),
                                         info.name in nets))
        unseen = [t for t in templates if not t.seen]
        seen_mass = sum(t.weight for t in templates if t.seen)
        if unseen and settings.unseen_weight > 0 and seen_mass > 0:
            each = seen_mass * settings.unseen_weight / (1 - settings.unseen_weight) / len(unseen)
            templates = [t if t.seen else NetTemplate(t.info, t.allowed, t.metal_types, each, False)
                         for t in templates]
        templates = [t for t in templates if t.weight > 0]
        return cls(templates, _median_scale(rows, topologies), metal, sampler, hydrogen)

    def conditioned(self, nets: Mapping[str, int], share: float) -> "TemplatePrior":
        """This prior with ``share`` of its mass moved onto ``nets`` (net -> count, e.g. the nets of the best
        results so far) in proportion to their counts; nets this prior lacks are ignored."""
        counts = np.array([float(nets.get(t.info.name, 0)) for t in self.templates])
        if share <= 0 or counts.sum() == 0:
            return self
        base = np.array([t.weight for t in self.templates])
        mixed = (1 - share) * base / base.sum() + share * counts / counts.sum()
        return self.with_weights({t.info.name: float(w) for t, w in zip(self.templates, mixed)})

    def weights(self) -> dict[str, float]:
        return {t.info.name: t.weight for t in self.templates}

    def with_weights(self, weights: Mapping[str, float]) -> "TemplatePrior":
        """The same nets with new weights (a net missing from ``weights`` gets 0)."""
        templates = [replace(t, weight=float(weights.get(t.info.name, 0.0))) for t in self.templates]
        return TemplatePrior([t for t in templates if t.weight > 0], self.scale, self.metal_blocks, self.sampler,
                             self.hydrogen_blocks)

    @cached_property
    def _counts(self) -> torch.Tensor:
        return torch.tensor([t.n_beads for t in self.templates])

    @cached_property
    def _weights(self) -> torch.Tensor:
        return torch.tensor([t.weight for t in self.templates], dtype=torch.float32)

    def choose(self, count_probs: torch.Tensor) -> list[int]:
        """One template index per latent: weight x the latent's probability of the net's bead count (``count
        _probs``: G x (max beads + 1), the count head's softmax). Draws from torch's global generator."""
        p = self._weights[None, :] * count_probs[:, self._counts.clamp(max=count_probs.shape[1] - 1)]
        p = torch.where(p.sum(1, keepdim=True) > 0, p, self._weights[None, :].expand_as(p))
        return torch.multinomial(p, 1)[:, 0].tolist()

    def layout(self, template: NetTemplate) -> Layout:
        """The net's beads in its RCSR embedding, scaled to the training set's median size."""
        topo = self.topologies.pormake_topology(template.info.name)
        k = len(template.info.node_types)
        pairs = [tuple(sorted(e.pair)) for e in template.info.edge_types]
        node_slots = [int(topo.node_types[i]) for i in topo.node_indices]
        edge_slots = [k + pairs.index(tuple(sorted(int(x) for x in topo.edge_types[e]))) for e in topo.edge_indices]
        positions = np.concatenate([topo.atoms.positions[topo.node_indices], topo.atoms.positions[topo.edge_indices]])
        return Layout(np.array(topo.atoms.cell[:], dtype=float) * self.scale, positions * self.scale,
                      np.array(node_slots + edge_slots))

    def fits(self, template: NetTemplate, recipe: Recipe) -> bool:
        """Whether ``recipe`` keeps the design space's size limits, judged before building as its enumeration
        judges them (exact atoms, predicted cell edge)."""
        return self.sampler.within_limits(template.info, recipe)

    def rules(self, template: NetTemplate) -> tuple[int, int | None]:
        """The node type that must take a metal block and the slot type that must take a block holding
        hydrogen (None: no type can); each drawn among the types that can, from torch's global generator."""
        metal = template.metal_types[int(torch.randint(len(template.metal_types), ()))]
        can = [t for t, allowed in enumerate(template.allowed)
               if any(self._keeps(b, t, metal, t) for b in allowed)]
        return metal, (can[int(torch.randint(len(can), ()))] if can else None)

    def _keeps(self, block: str, slot: int, metal_type: int | None, hydrogen_type: int | None) -> bool:
        return ((slot != metal_type or block in self.metal_blocks)
                and (slot != hydrogen_type or block in self.hydrogen_blocks))

    def mask(self, template: NetTemplate, slots: np.ndarray, library: Sequence[str],
             metal_type: int | None, hydrogen_type: int | None = None) -> torch.Tensor:
        """Beads x library: which blocks each bead may snap to (``metal_type``: the node type that must
        take a metal block; ``hydrogen_type``: the slot type that must take a block holding hydrogen)."""
        index = {b: i for i, b in enumerate(library)}
        rows = []
        for t, allowed in enumerate(template.allowed):
            keep = [b for b in allowed if self._keeps(b, t, metal_type, hydrogen_type)]
            row = torch.zeros(len(library), dtype=torch.bool)
            row[[index[b] for b in keep]] = True
            rows.append(row)
        return torch.stack(rows)[torch.as_tensor(slots)]


def _within_reach(info: TopologyInfo, fits: Sequence[tuple[str, ...]], edges: tuple[str, ...],
                  sampler: Sampler) -> tuple[tuple[str, ...], ...]:
    """Each slot type's blocks (node types, then edge types), less those that break the design space's cell
    limit whatever the other slots take: the predicted cell edge (``Sampler.estimated_cell_length``) with the
    shortest-armed blocks everywhere else. Nets with a large unit embedding keep only their small blocks."""
    reach = sampler.space.max_cell_length / max(info.cell[:3])  # the longest span an edge may have
    arm = {b: sampler.bbs.get(b).descriptors["arm_length_mean"] for b in {*edges, *(b for f in fits for b in f)}}
    shortest = [min(arm[b] for b in f) for f in fits]
    shortest_edge = min(arm[b] for b in edges)
    nodes = []
    for t, f in enumerate(fits):
        # a node block spans an edge with its partner's arm and the linker's two arms
        partners = [shortest[et.pair[1] if et.pair[0] == t else et.pair[0]] if et.pair[0] != et.pair[1] else None
                    for et in info.edge_types if t in et.pair]
        nodes.append(tuple(b for b in f if all(arm[b] + (arm[b] if p is None else p) + 2 * shortest_edge <= reach
                                               for p in partners)))
    links = tuple(tuple(e for e in edges if shortest[et.pair[0]] + shortest[et.pair[1]] + 2 * arm[e] <= reach)
                  for et in info.edge_types)
    return (*nodes, *links)


def _median_scale(rows: Sequence[Mapping], topologies: TopologyLibrary) -> float:
    """The median of (cell volume / unit net's volume)^(1/3) over the training rows: how far pormake
    stretched the nets' unit embeddings for the training set's blocks."""
    from ase.geometry import cellpar_to_cell

    scales = []
    for r in rows:
        cg = r.get("cg") or {}
        try:
            info = topologies.info(cg.get("topology") or "")
        except UnknownTopologyError:  # a real MOF's net, not pormake's: it says nothing about the scale
            continue
        volume = abs(np.linalg.det(np.asarray(cg["lattice"], dtype=float)))
        scales.append((volume / abs(np.linalg.det(cellpar_to_cell(info.cell)))) ** (1 / 3))
    if not scales:
        raise DiscoveryError("de novo sampling needs training rows on known nets to size its templates")
    return float(np.median(scales))
