"""De novo sampling on net templates: the prior over nets and the blocks that fit each slot, the recipe a
sample votes for, what the design space's enumeration can produce, and a de novo sample of a tiny trained
model that pormake builds and the checks pass."""

import numpy as np
import pytest
import torch

from discovery.errors import DiscoveryError
from discovery.generator.templates import DenovoSettings, NetTemplate, TemplatePrior
from discovery.generator.train import training_rows
from discovery.library.assembly import Recipe
from discovery.library.designspace import Sampler
from discovery.library.topologies import TopologyLibrary


@pytest.fixture(scope="module")
def rows():
    return training_rows()  # the committed pool table


@pytest.fixture(scope="module")
def sampler():
    return Sampler()


@pytest.fixture(scope="module")
def blocks(rows, sampler):
    return sorted({b["bb_id"] for r in rows for b in r["cg"]["beads"]} | set(sampler.edges))


@pytest.fixture(scope="module")
def tiny_generator(rows):
    """The shipped model's building-block embedding with a freshly trained tiny denoiser: what makes a de novo
    sample assemble here is the net template and the slot masks, which any model gets."""
    from discovery.generator.embeddings import BBEmbedding
    from discovery.generator.generator import DiffusionGenerator
    from discovery.generator.model import CGDiffusion, ModelSettings, Normaliser
    from discovery.generator.pipeline import DEFAULT_MODEL
    from discovery.generator.train import examples_from_rows, fit
    from discovery.models import resolve_model

    embedding = BBEmbedding.load(resolve_model(DEFAULT_MODEL, "generator") / "embeddings.npz")
    examples = examples_from_rows(rows[:32], embedding.vector)[0]
    torch.manual_seed(0)
    model = CGDiffusion(ModelSettings(hidden=16, layers=1, latent_dim=4, steps=8, k=6),
                        Normaliser.fit(examples, embedding.vectors))
    fit(model, examples, steps=10)
    return DiffusionGenerator(model, embedding, prior=TemplatePrior.from_rows(
        rows, embedding.ids, DenovoSettings(unseen_weight=0.0)))


def test_prior_weights_nets_by_the_training_set_and_keeps_a_share_for_unseen_nets(rows, blocks, sampler):
    settings = DenovoSettings(rmsd=0.15, unseen_weight=0.2)
    prior = TemplatePrior.from_rows(rows, blocks, settings)
    seen = {r["cg"]["topology"] for r in rows}
    weights = {t.info.name: t.weight for t in prior.templates}
    counts = {n: sum(r["cg"]["topology"] == n for r in rows) for n in seen}
    for t in prior.templates:
        if t.seen:
            assert t.weight == counts[t.info.name]
        for k, node_type in enumerate(t.info.node_types):  # every node block fits its slot at the RMSD
            fits = sampler.table[f"{t.info.name}:{node_type.index}"]
            assert all(b in blocks and fits[b] <= settings.rmsd for b in t.allowed[k])
        assert all(set(a) <= set(sampler.edges) for a in t.allowed[len(t.info.node_types):])
        assert any(set(t.allowed[m]) & prior.metal_blocks for m in t.metal_types)
    unseen = sum(w for n, w in weights.items() if n not in seen)
    assert unseen / sum(weights.values()) == pytest.approx(0.2, abs=1e-6) and unseen > 0
    only_seen = TemplatePrior.from_rows(rows, blocks, DenovoSettings(unseen_weight=0.0))
    assert {t.info.name for t in only_seen.templates} <= seen
    with pytest.raises(DiscoveryError, match="rmsd"):
        DenovoSettings(rmsd=0.5)


def test_the_latent_chooses_among_nets_of_its_bead_count(rows, blocks):
    prior = TemplatePrior.from_rows(rows, blocks, DenovoSettings(unseen_weight=0.0))
    target = prior.templates[0].n_beads
    probs = torch.zeros(4, 49)
    probs[:, target] = 1.0
    torch.manual_seed(0)
    assert all(prior.templates[k].n_beads == target for k in prior.choose(probs))


def test_layout_puts_a_bead_on_every_node_and_edge_and_masks_blocks_by_slot(rows, blocks):
    prior = TemplatePrior.from_rows(rows, blocks, DenovoSettings(unseen_weight=0.0))
    template = next(t for t in prior.templates if t.info.name == "pcu")
    layout = prior.layout(template)
    assert len(layout.positions) == template.n_beads == 4 and sorted(layout.slots) == [0, 1, 1, 1]
    assert np.allclose(layout.lattice, np.eye(3) * layout.lattice[0, 0], atol=1e-4) and layout.lattice[0, 0] > 5
    mask = prior.mask(template, layout.slots, blocks, metal_type=0)
    node = [blocks[i] for i in torch.nonzero(mask[0])[:, 0]]
    assert node and set(node) <= prior.metal_blocks & set(template.allowed[0])
    assert {blocks[i] for i in torch.nonzero(mask[1])[:, 0]} == set(template.allowed[1])


def test_each_slot_type_takes_the_block_most_of_its_beads_chose():
    info = TopologyLibrary().info("pcu")
    template = NetTemplate(info, (("N1",), ("E1", "E2")), (0,), 1.0, True)
    assert template.recipe([0, 1, 1, 1], ["N1", "E2", "E1", "E2"]) == Recipe("pcu", ("N1",), ("E2",))


def test_design_space_membership(sampler):
    recipe = next(sampler.recipes(seed=0))
    assert sampler.contains(recipe)
    loose = [b for b, r in sampler.table[f"{recipe.topology}:0"].items() if 0.1 < r <= 0.3]
    if loose:  # a node block pormake builds but the enumeration's RMSD limit (0.1) leaves out
        nodes = (loose[0], *recipe.node_bbs[1:])
        assert not sampler.contains(Recipe(recipe.topology, nodes, recipe.edge_bbs))
    assert not sampler.contains(Recipe("qtz-x", recipe.node_bbs, recipe.edge_bbs))
    other_edges = tuple("E99999" for _ in recipe.edge_bbs)  # not one of the space's edges
    assert not sampler.contains(Recipe(recipe.topology, recipe.node_bbs, other_edges))


def test_a_de_novo_sample_of_a_tiny_model_builds_and_passes_the_checks(tiny_generator):
    """Seeded, on a net of the prior, with hydrogen, and at least one of four samples valid."""
    from discovery.generator.generator import prepare_sample

    generator = tiny_generator
    samples = generator.sample(4, seed=3)
    assert [s.id for s in generator.sample(4, seed=3)] == [s.id for s in samples]  # seeded
    records = [prepare_sample(s, describe_probe=False) for s in samples]
    for s, r in zip(samples, records):
        assert s.parent is None and r["origin"] == "diffusion-denovo" and r["recipe"] == s.recipe
        recipe = Recipe.parse(s.recipe)
        assert recipe.topology in {t.info.name for t in generator.prior.templates}
        assert isinstance(r["in_design_space"], bool)
    for s in samples:  # the hydrogen rule: some slot type took a block that holds hydrogen (MOFChecker's has_hydrogen)
        recipe = Recipe.parse(s.recipe)
        assert any(b in generator.prior.hydrogen_blocks for b in (*recipe.node_bbs, *recipe.edge_bbs) if b)
    valid = [r for r in records if r["status"] == "valid"]
    assert valid, [r.get("message") for r in records]
    assert all(r["cg"]["topology"] == Recipe.parse(r["recipe"]).topology for r in valid)
    assert all("failed_checks" in r for r in valid)


def test_blocks_mofchecker_rejects_in_most_builds_are_left_out():
    from discovery.library.block_checks import load_block_checks, rejected_blocks

    table = {"N1": {"builds": 3, "failed": {"has_geometrically_exposed_metal": 3}},
             "N2": {"builds": 3, "failed": {"has_hydrogen": 3}},  # a property of the recipe, not the block
             "N3": {"builds": 3, "failed": {"has_suspicious_terminal_oxo": 1}},
             "N4": {"builds": 0, "failed": {}}}
    assert rejected_blocks(table) == {"N1"}
    shipped = load_block_checks()  # the committed table covers every design-space block
    assert len(shipped) >= 150 and rejected_blocks(shipped) <= set(shipped)


def test_conditioning_moves_part_of_the_prior_onto_the_nets_of_the_best(rows, blocks):
    prior = TemplatePrior.from_rows(rows, blocks, DenovoSettings(unseen_weight=0.1))
    base = prior.weights()
    conditioned = prior.conditioned({"pcu": 3, "dia": 1, "not-a-net": 5}, share=0.5)
    w = conditioned.weights()
    assert sum(w.values()) == pytest.approx(1.0) and set(w) == set(base)
    assert w["pcu"] == pytest.approx(0.5 * base["pcu"] / sum(base.values()) + 0.5 * 3 / 4)
    assert w["bcu"] == pytest.approx(0.5 * base["bcu"] / sum(base.values()))
    assert prior.conditioned({}, 0.5) is prior and prior.conditioned({"pcu": 1}, 0.0) is prior
    assert prior.with_weights(w).weights() == pytest.approx(w)


def test_rules_and_masks_ask_for_a_metal_and_for_hydrogen(rows, blocks):
    prior = TemplatePrior.from_rows(rows, blocks, DenovoSettings(unseen_weight=0.0))
    assert prior.hydrogen_blocks and not prior.hydrogen_blocks <= prior.metal_blocks
    torch.manual_seed(0)
    for template in prior.templates[:20]:
        metal, hydrogen = prior.rules(template)
        assert metal in template.metal_types and hydrogen is not None
        layout = prior.layout(template)
        mask = prior.mask(template, layout.slots, blocks, metal, hydrogen)
        for bead, slot in enumerate(layout.slots):
            kept = {blocks[i] for i in torch.nonzero(mask[bead])[:, 0]}
            assert kept and kept <= set(template.allowed[slot])
            assert slot != hydrogen or kept <= prior.hydrogen_blocks
            assert slot != metal or kept <= prior.metal_blocks


def test_slots_keep_only_blocks_that_can_fit_the_cell_limit(rows, blocks, sampler):
    """A block that breaks the design space's cell limit on a net even with the shortest-armed blocks
    everywhere else is left out of that net's slots (``Sampler.estimated_cell_length``)."""
    prior = TemplatePrior.from_rows(rows, blocks, DenovoSettings(unseen_weight=0.1))
    limit = sampler.space.max_cell_length
    arm = lambda b: sampler.bbs.get(b).descriptors["arm_length_mean"]  # noqa: E731
    for t in prior.templates:
        k = len(t.info.node_types)
        shortest = [min(arm(b) for b in a) for a in t.allowed]
        for e, et in enumerate(t.info.edge_types):
            a, b = et.pair
            span = shortest[a] + shortest[b] + 2 * shortest[k + e]
            assert max(t.info.cell[:3]) * span <= limit + 1e-9
    # untrimmed, every net would offer the same edge blocks; large nets keep only the short linkers
    assert len({t.allowed[len(t.info.node_types)] for t in prior.templates}) > 1
    recipe = Recipe.parse("pcu+N16+E14")  # IRMOF-1 fits; the same net with absurdly long arms would not
    pcu = next(t for t in prior.templates if t.info.name == "pcu")
    assert prior.fits(pcu, recipe)


def test_snapping_to_the_slot_masks_moves_samples_toward_what_assembles(tiny_generator, monkeypatch):
    """The de novo sampler's guidance toward assembly: every step's clean estimate is snapped to a block that
    fits its bead's slot. With it every recipe passes pormake's compatibility check; with every block allowed
    on every bead (the same tiny model, the same seeds) most do not."""
    from discovery.library.assembly import default_assembler

    generator = tiny_generator

    def compatible(samples):
        return sum(default_assembler().check(Recipe.parse(s.recipe)).compatible for s in samples) / len(samples)

    snapped = compatible(generator.sample(16, seed=5))
    monkeypatch.setattr(generator.prior, "mask", lambda template, slots, library, *rules:
                        torch.ones(len(slots), len(library), dtype=torch.bool))
    free = compatible(generator.sample(16, seed=5))
    assert snapped == 1.0 and free < 0.5, (snapped, free)
