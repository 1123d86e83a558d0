"""Proposes new MOF recipes for a discovery campaign: fresh draws from the design space plus one-step
mutations of the best MOFs found so far.

A stand-in until a diffusion generator replaces it. Fresh draws explore (the Sampler's own draw, so
they follow the same compatibility and size rules as the pool); mutations exploit, by swapping one
node BB, one edge BB or the net of a good parent. Every single-step neighbour of a parent is listed
and checked once per call, so a parent without valid new neighbours is simply dropped, never retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Mapping, Sequence

import numpy as np

from discovery.library.assembly import Recipe
from discovery.library.designspace import DesignSpace, Sampler
from discovery.errors import DatasetError, DiscoveryError
from discovery.library.topologies import TopologyInfo

# Consecutive fresh draws that give nothing new (too big, or already used) before the design space
# counts as exhausted; the Sampler has no cheap exact count of its recipes.
MAX_FRESH_MISSES = 2000
MUTATION_KINDS = ("node", "edge", "net")

Neighbour = tuple[str, str]  # (recipe string, mutation label)


@dataclass(frozen=True)
class Proposal:
    """One proposed recipe and where it came from."""

    recipe: str  # str(Recipe)
    origin: str  # "designspace" (fresh draw) or "mutation"
    parent: str | None = None  # recipe string of the parent, for mutations
    mutation: str | None = None  # e.g. "node:0:N16->N17", "edge:0:E14->E3", "net:pcu->dia"


class DesignSpaceProposer:
    """Fresh draws from a DesignSpace mixed with mutations of parents (``mutation_fraction`` of them)."""

    name = "designspace"

    def __init__(self, space: DesignSpace | None = None, mutation_fraction: float = 0.5,
                 sampler: Sampler | None = None) -> None:
        if not 0.0 <= mutation_fraction <= 1.0:
            raise DiscoveryError(f"mutation_fraction must be in [0, 1], got {mutation_fraction}")
        if sampler is not None and space is not None and space != sampler.space:
            raise DiscoveryError("give either a design space or a sampler, or a sampler built on that space")
        self.space = sampler.space if sampler is not None else (space or DesignSpace())
        self.mutation_fraction = mutation_fraction
        self._sampler = sampler

    @property
    def sampler(self) -> Sampler:
        # Built on first use: loading the compatibility table and pormake takes seconds.
        if self._sampler is None:
            self._sampler = Sampler(self.space)
        return self._sampler

    def propose(self, n: int, rng: np.random.Generator, exclude: Collection[str] = (),
                parents: Sequence[str] = ()) -> list[Proposal]:
        """Up to ``n`` distinct proposals not in ``exclude`` (nor among ``parents``, already known).

        ``parents`` are recipe strings, best first; better parents are mutated more often. Fewer than
        ``n`` come back only when both mutations and fresh draws run out.
        """
        if n < 0:
            raise DiscoveryError(f"n must be >= 0, got {n}")
        parsed = [self._parse_parent(p) for p in dict.fromkeys(parents)]
        used = set(exclude) | {str(r) for _, r in parsed}
        out: list[Proposal] = []
        neighbours: dict[int, dict[str, list[Neighbour]]] = {}
        self._add_mutations(out, int(self.mutation_fraction * n + 0.5), rng, used, parsed, neighbours)
        self._add_fresh(out, n, rng, used)
        self._add_mutations(out, n, rng, used, parsed, neighbours)  # fresh draws ran dry: fill with mutations
        return out

    # ---- fresh draws ------------------------------------------------------------------------
    def _add_fresh(self, out: list[Proposal], n: int, rng: np.random.Generator, used: set[str]) -> None:
        misses = 0
        while len(out) < n and misses < MAX_FRESH_MISSES:
            if not self.sampler.nets or not self.sampler.edges:
                raise DatasetError("the design space is empty: no net has a compatible metal node")
            recipe = self.sampler._draw(rng)
            key = None if recipe is None else str(recipe)
            if key is None or key in used:
                misses += 1
                continue
            misses = 0
            used.add(key)
            out.append(Proposal(key, "designspace"))

    # ---- mutations --------------------------------------------------------------------------
    def _add_mutations(self, out: list[Proposal], n: int, rng: np.random.Generator, used: set[str],
                       parsed: list[tuple[TopologyInfo, Recipe]],
                       neighbours: dict[int, dict[str, list[Neighbour]]]) -> None:
        live = list(range(len(parsed)))
        # Each pass adds a proposal or drops a parent, so this ends after at most n + len(parents) passes.
        while len(out) < n and live:
            weights = 1.0 / (np.array(live) + 1.0)  # rank-based bias toward the best parents
            i = live[rng.choice(len(live), p=weights / weights.sum())]
            if i not in neighbours:
                neighbours[i] = self._neighbours(*parsed[i])
            kinds = {k: [c for c in v if c[0] not in used] for k, v in neighbours[i].items()}
            kinds = {k: v for k, v in kinds.items() if v}
            if not kinds:
                live.remove(i)
                continue
            options = kinds[list(kinds)[rng.integers(len(kinds))]]
            recipe, label = options[rng.integers(len(options))]
            used.add(recipe)
            out.append(Proposal(recipe, "mutation", str(parsed[i][1]), label))

    def _neighbours(self, net: TopologyInfo, parent: Recipe) -> dict[str, list[Neighbour]]:
        """Every valid one-step mutation of ``parent``, by kind, in a fixed order."""
        s = self.sampler
        out: dict[str, list[Neighbour]] = {k: [] for k in MUTATION_KINDS}
        for t, old in enumerate(parent.node_bbs):
            metal, organic = s.slot_candidates(net, t)
            for bb in metal + organic:
                nodes = parent.node_bbs[:t] + (bb,) + parent.node_bbs[t + 1:]
                recipe = Recipe(net.name, nodes, parent.edge_bbs)
                self._keep(out["node"], net, recipe, f"node:{t}:{old}->{bb}", old != bb)
        for k, old in enumerate(parent.edge_bbs):
            for bb in s.edges if old is not None else ():  # a direct bond stays a direct bond
                edges = parent.edge_bbs[:k] + (bb,) + parent.edge_bbs[k + 1:]
                recipe = Recipe(net.name, parent.node_bbs, edges)
                self._keep(out["edge"], net, recipe, f"edge:{k}:{old}->{bb}", old != bb)
        for other, cands in s.nets:
            same_shape = len(other.node_types) == len(net.node_types) and len(other.edge_types) == len(net.edge_types)
            fits = same_shape and all(b in m + o for b, (m, o) in zip(parent.node_bbs, cands))
            recipe = Recipe(other.name, parent.node_bbs, parent.edge_bbs)
            self._keep(out["net"], other, recipe, f"net:{net.name}->{other.name}", fits and other.name != net.name)
        return out

    def _keep(self, into: list[Neighbour], net: TopologyInfo, recipe: Recipe, label: str, ok: bool) -> None:
        if ok and self._valid(net, recipe):
            into.append((str(recipe), label))

    def _valid(self, net: TopologyInfo, recipe: Recipe) -> bool:
        """The rules of a fresh draw, slot fit aside: a metal node somewhere, direct bonds only between a
        metal and an organic node, and the size estimates within the space's limits."""
        s = self.sampler
        metal = [s.bbs.get(b).has_metal for b in recipe.node_bbs]
        if not any(metal):
            return False
        if any(e is None and metal[et.pair[0]] == metal[et.pair[1]] for e, et in zip(recipe.edge_bbs, net.edge_types)):
            return False
        return s.estimated_atoms(net, recipe) <= self.space.max_atoms \
            and s.estimated_cell_length(net, recipe) <= self.space.max_cell_length

    def _parse_parent(self, text: str) -> tuple[TopologyInfo, Recipe]:
        try:
            recipe = Recipe.parse(text)
            net = self.sampler.topologies.info(recipe.topology)
            for bb in recipe.node_bbs + tuple(e for e in recipe.edge_bbs if e is not None):
                self.sampler.bbs.get(bb)
        except DiscoveryError as exc:
            raise DiscoveryError(f"bad parent recipe {text!r}: {exc}") from exc
        if (len(recipe.node_bbs), len(recipe.edge_bbs)) != (len(net.node_types), len(net.edge_types)):
            raise DiscoveryError(f"bad parent recipe {text!r}: net {net.name} has {len(net.node_types)} node "
                                 f"type(s) and {len(net.edge_types)} edge type(s)")
        return net, recipe


class TableProposer:
    """Proposes rows of a fixed pool (a pool table): random unseen rows, plus rows one building block or
    net away from the parents (the table's version of a mutation). For benchmark campaigns, where the
    oracle looks the labels up in the same table.

    Real MOFs have no recipe in their id: ``units`` gives each its net and building units, and a row is then
    near a parent when it has the same (named) net and shares a unit with it."""

    name = "table"

    def __init__(self, ids: Sequence[str], mutation_fraction: float = 0.5,
                 units: Mapping[str, tuple[str, frozenset[str]]] | None = None) -> None:
        if not 0.0 <= mutation_fraction <= 1.0:
            raise DiscoveryError(f"mutation_fraction must be in [0, 1], got {mutation_fraction}")
        self.ids, self.mutation_fraction = list(ids), mutation_fraction
        self._parts = {i: _parts(i) for i in self.ids}
        self._units = dict(units or {})

    def _near(self, row: str, parent: str) -> bool:
        if row in self._units and parent in self._units:
            (net, units), (parent_net, parent_units) = self._units[row], self._units[parent]
            return bool(net) and net == parent_net and bool(units & parent_units)
        if "+" not in row or "+" not in parent:  # a recipe is needed to be one block apart
            return False
        return _one_apart(self._parts[row], _parts(parent))

    def propose(self, n: int, rng: np.random.Generator, exclude: Collection[str] = (),
                parents: Sequence[str] = ()) -> list[Proposal]:
        if n < 0:
            raise DiscoveryError(f"cannot propose {n} candidates")
        used = set(exclude) | set(parents)
        out: list[Proposal] = []
        for parent in parents:
            if len(out) >= round(self.mutation_fraction * n):
                break
            near = [i for i in self.ids if i not in used and self._near(i, parent)]
            if near:
                pick = near[int(rng.integers(len(near)))]
                used.add(pick)
                out.append(Proposal(pick, "mutation", parent, "table-neighbour"))
        fresh = [i for i in self.ids if i not in used]
        for k in rng.permutation(len(fresh))[: n - len(out)]:
            out.append(Proposal(fresh[int(k)], "table"))
        return out


def _parts(recipe: str) -> tuple[str, ...]:
    topology, nodes, edges = (recipe.split("+") + ["", ""])[:3]
    return (topology, *nodes.split("."), *edges.split("."))


def _one_apart(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1
