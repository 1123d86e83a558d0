"""DesignSpaceProposer: distinct, compatible, size-limited proposals; one-step mutations of parents."""

from __future__ import annotations

from itertools import islice, product

import numpy as np
import pytest

from discovery.library.assembly import Recipe
from discovery.library.designspace import DesignSpace, Sampler
from discovery.errors import DiscoveryError
from discovery.library.proposer import DesignSpaceProposer, Proposal


@pytest.fixture(scope="module")
def sampler() -> Sampler:
    return Sampler()


@pytest.fixture(scope="module")
def proposer(sampler) -> DesignSpaceProposer:
    return DesignSpaceProposer(sampler=sampler)


@pytest.fixture(scope="module")
def parents(sampler) -> list[str]:
    """Six fresh recipes plus one with a direct metal-organic bond (no edge BB)."""
    stream = sampler.recipes(seed=0)
    first = [str(r) for r in islice(stream, 6)]
    direct = next(str(r) for r in stream if None in r.edge_bbs)
    return first + [direct]


def assert_compatible(sampler: Sampler, text: str) -> None:
    recipe = Recipe.parse(text)
    net = sampler.topologies.info(recipe.topology)
    assert net.name in {n.name for n, _ in sampler.nets}
    metal = []
    for t, bb in enumerate(recipe.node_bbs):
        m, o = sampler.slot_candidates(net, t)
        assert bb in m + o, f"{bb} does not fit slot {t} of {net.name}"
        metal.append(bb in m)
    assert any(metal), text
    for e, et in zip(recipe.edge_bbs, net.edge_types, strict=True):
        assert e in sampler.edges if e is not None else metal[et.pair[0]] != metal[et.pair[1]]
    assert sampler.estimated_atoms(net, recipe) <= sampler.space.max_atoms
    assert sampler.estimated_cell_length(net, recipe) <= sampler.space.max_cell_length


def differences(parent: Recipe, child: Recipe) -> list[str]:
    out = ["net"] if parent.topology != child.topology else []
    out += [f"node:{i}" for i, (a, b) in enumerate(zip(parent.node_bbs, child.node_bbs, strict=True)) if a != b]
    out += [f"edge:{i}" for i, (a, b) in enumerate(zip(parent.edge_bbs, child.edge_bbs, strict=True)) if a != b]
    return out


def test_distinct_and_not_excluded(proposer):
    first = proposer.propose(30, np.random.default_rng(1))
    recipes = [p.recipe for p in first]
    assert len(recipes) == 30 and len(set(recipes)) == 30
    exclude = set(recipes[:15])
    again = proposer.propose(30, np.random.default_rng(1), exclude=exclude)  # same rng: would repeat them
    assert len(again) == 30 and not exclude & {p.recipe for p in again}


def test_fresh_only_without_parents(proposer):
    props = proposer.propose(12, np.random.default_rng(2))
    assert len(props) == 12
    assert all(p.origin == "designspace" and p.parent is None and p.mutation is None for p in props)


@pytest.mark.parametrize("fraction, expected", [(0.0, 0), (0.5, 5), (1.0, 10)])
def test_mutation_fraction(sampler, parents, fraction, expected):
    props = DesignSpaceProposer(sampler=sampler, mutation_fraction=fraction).propose(
        10, np.random.default_rng(3), parents=parents)
    assert len(props) == 10
    assert sum(p.origin == "mutation" for p in props) == expected


def test_mutations_change_exactly_one_thing(sampler, parents):
    proposer = DesignSpaceProposer(sampler=sampler, mutation_fraction=1.0)
    props = proposer.propose(80, np.random.default_rng(4), parents=parents)
    assert len(props) == 80 and all(p.origin == "mutation" for p in props)
    assert not set(parents) & {p.recipe for p in props}
    kinds = set()
    for p in props:
        assert p.parent in parents
        parent, child = Recipe.parse(p.parent), Recipe.parse(p.recipe)
        (changed,) = differences(parent, child)
        kind, *rest = p.mutation.split(":")
        kinds.add(kind)
        if kind == "net":
            assert changed == "net" and p.mutation == f"net:{parent.topology}->{child.topology}"
        else:
            i = int(rest[0])
            bbs = (parent.node_bbs, child.node_bbs) if kind == "node" else (parent.edge_bbs, child.edge_bbs)
            old, new = bbs[0][i], bbs[1][i]
            assert changed == f"{kind}:{i}" and p.mutation == f"{kind}:{i}:{old}->{new}"
        assert [e is None for e in child.edge_bbs] == [e is None for e in parent.edge_bbs]  # direct bonds kept
        assert_compatible(sampler, p.recipe)
    assert kinds == {"node", "edge", "net"}


@pytest.mark.parametrize("ranked", [["qzd+N174+E26", "bcu-b+N228.N228+E158"],
                                     ["bcu-b+N228.N228+E158", "qzd+N174+E26"]])
def test_best_parent_mutated_most(sampler, ranked):
    # both have over 80 neighbours; rank weights 1 : 1/2 give the first about 80 of 120, uniform ones 60
    props = DesignSpaceProposer(sampler=sampler, mutation_fraction=1.0).propose(
        120, np.random.default_rng(3), parents=ranked)
    assert len(props) == 120 and sum(p.parent == ranked[0] for p in props) >= 70


def test_every_proposal_compatible(sampler, proposer, parents):
    props = proposer.propose(60, np.random.default_rng(6), parents=parents)
    assert {p.origin for p in props} == {"designspace", "mutation"}
    for p in props:
        assert_compatible(sampler, p.recipe)


def test_same_seed_same_proposals(proposer, parents):
    a = proposer.propose(20, np.random.default_rng(7), parents=parents)
    b = proposer.propose(20, np.random.default_rng(7), parents=parents)
    c = proposer.propose(20, np.random.default_rng(8), parents=parents)
    assert a == b and a != c
    assert all(isinstance(p, Proposal) for p in a)


def test_exhausted_space_returns_fewer():
    small = Sampler(DesignSpace(max_net_nodes=1, max_edge_atoms=4))  # one net, three tiny linkers
    space = set()
    for net, cands in small.nets:
        for nodes in product(*(m + o for m, o in cands)):
            for edges in product(small.edges, repeat=len(net.edge_types)):
                r = Recipe(net.name, nodes, edges)
                if small.estimated_atoms(net, r) <= small.space.max_atoms \
                        and small.estimated_cell_length(net, r) <= small.space.max_cell_length:
                    space.add(str(r))
    proposer = DesignSpaceProposer(sampler=small)
    props = proposer.propose(1000, np.random.default_rng(0))
    assert 0 < len(props) < 1000 and {p.recipe for p in props} == space
    # a parent whose neighbours are all excluded: nothing left to mutate or draw
    assert proposer.propose(10, np.random.default_rng(0), exclude=space, parents=[props[0].recipe]) == []
    # fresh draws exhausted, mutation_fraction 0: mutations still fill in (E14 is outside this small space,
    # so the parent's node swaps are new)
    fill = DesignSpaceProposer(sampler=small, mutation_fraction=0.0).propose(
        10, np.random.default_rng(0), exclude=space, parents=["pcu+N16+E14"])
    assert fill and all(p.origin == "mutation" and p.mutation.startswith("node:0:N16->") for p in fill)

@pytest.mark.parametrize("kwargs", [
    {"n": -1},
    {"parents": ["not a recipe"]},
    {"parents": ["nosuchnet+N16+E14"]},
    {"parents": ["pcu+N16.N16+E14"]},  # pcu has one node type
    {"parents": ["pcu+N999999+E14"]},
])
def test_bad_propose_arguments(proposer, kwargs):
    args = {"n": 5, "rng": np.random.default_rng(0)} | kwargs
    with pytest.raises(DiscoveryError):
        proposer.propose(**args)


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_bad_mutation_fraction(fraction):
    with pytest.raises(DiscoveryError, match="mutation_fraction"):
        DesignSpaceProposer(mutation_fraction=fraction)


def test_sampler_built_lazily_and_space_must_match(sampler):
    proposer = DesignSpaceProposer(DesignSpace(max_atoms=900))
    assert proposer._sampler is None and proposer.space.max_atoms == 900
    with pytest.raises(DiscoveryError):
        DesignSpaceProposer(DesignSpace(max_atoms=900), sampler=sampler)
