"""The CG diffusion generator: a periodic, equivariant denoiser; training lowers the loss; samples decode to
library building blocks; fine-tuning bumps the version; the CLI trains, generates and writes metrics."""

import itertools
import json
import math

import numpy as np
import pytest
import torch

from discovery.generator.denoiser import periodic_knn
from discovery.generator.diffusion import Schedule
from discovery.generator.generator import DiffusionGenerator, round_robin
from discovery.generator.metrics import fingerprint, generation_metrics
from discovery.generator.model import CGDiffusion, ModelSettings, Normaliser, collate, lattice_from_invariants
from discovery.generator.templates import DenovoSettings, TemplatePrior
from discovery.generator.train import examples_from_rows, fit, training_rows

SMALL = ModelSettings(hidden=32, layers=2, latent_dim=8, steps=10, k=8)


@pytest.fixture(scope="module")
def rows():
    return training_rows()[:24]  # the committed pool table


@pytest.fixture(scope="module")
def table(rows):
    ids = sorted({b["bb_id"] for r in rows for b in r["cg"]["beads"]})
    return ids, np.random.default_rng(0).normal(size=(len(ids), 32))  # test-only stand-in for BB embeddings


@pytest.fixture(scope="module")
def examples(rows, table):
    ids, vectors = table
    lookup = dict(zip(ids, vectors))
    return examples_from_rows(rows, lambda bb: lookup[bb])[0]


def _model(examples, table, seed=0):
    torch.manual_seed(seed)
    return CGDiffusion(SMALL, Normaliser.fit(examples, table[1]))


def _rotation(seed=1):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return torch.tensor(q * np.sign(np.linalg.det(q)), dtype=torch.float32)  # proper rotation


def _denoise(model, b, pos, lattice):
    z = torch.zeros(len(lattice), SMALL.latent_dim)
    t = torch.full((len(lattice),), 5)
    with torch.no_grad():
        return model.denoise(b["emb"], pos, t, z, b["batch"], lattice)


def test_denoiser_is_rotation_equivariant(examples, table):
    model, b = _model(examples, table), collate(examples[:3], Normaliser.fit(examples, table[1]))
    pos = b["pos"] + 0.5 * torch.randn(b["pos"].shape, generator=torch.Generator().manual_seed(0))  # break symmetry
    eps, vec = _denoise(model, b, pos, b["lattice"])
    rot = _rotation()
    eps_r, vec_r = _denoise(model, b, pos @ rot.T, b["lattice"] @ rot.T)
    assert torch.allclose(eps_r, eps, atol=1e-4)  # embeddings: invariant
    assert torch.allclose(vec_r, vec @ rot.T, atol=1e-4)  # positions: rotate with the crystal
    assert vec.abs().max() > 1e-3  # not trivially zero


def test_denoiser_is_periodic_and_translation_invariant(examples, table):
    model, b = _model(examples, table), collate(examples[:2], Normaliser.fit(examples, table[1]))
    eps, vec = _denoise(model, b, b["pos"], b["lattice"])
    moved = b["pos"].clone()
    moved[0] += b["lattice"][0, 0] - 2 * b["lattice"][0, 2]  # one bead by a lattice vector
    eps_m, vec_m = _denoise(model, b, moved, b["lattice"])
    assert torch.allclose(vec_m, vec, atol=1e-4) and torch.allclose(eps_m, eps, atol=1e-4)
    shift = b["pos"] + torch.tensor([1.3, -0.7, 2.1])  # every bead by the same vector
    eps_s, vec_s = _denoise(model, b, shift, b["lattice"])
    assert torch.allclose(vec_s, vec, atol=1e-4) and torch.allclose(eps_s, eps, atol=1e-4)


def test_periodic_knn_sees_images_in_a_triclinic_cell():
    lattice = torch.tensor([[[6.0, 0, 0], [2.5, 5.0, 0], [1.0, 1.5, 7.0]]])
    pos = torch.tensor([[0.2, 0.1, 0.1]])  # one bead: all neighbours are its own images
    src, dst, vec = periodic_knn(pos, torch.zeros(1, dtype=torch.long), lattice, k=6)
    assert (src == 0).all() and (dst == 0).all()
    shifts = np.array(list(itertools.product((-1, 0, 1), repeat=3)))
    expected = sorted(np.linalg.norm(shifts @ lattice[0].numpy(), axis=1))[1:7]
    assert np.allclose(sorted(vec.norm(dim=1).tolist()), expected, atol=1e-4)


def test_one_batch_training_step_lowers_the_loss(examples, table):
    model = _model(examples, table)
    b = collate(examples[:8], model.normaliser)

    def loss():
        torch.manual_seed(3)  # same noise draw for before and after
        return float(model.loss(b)["total"].detach())

    before = loss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(5):
        torch.manual_seed(3)
        opt.zero_grad()
        model.loss(b)["total"].backward()
        opt.step()
    assert loss() < before


def test_lattice_from_invariants_round_trips():
    from discovery.generator.denoiser import lattice_invariants

    lattice = torch.tensor([[[10.0, 0, 0], [-3.0, 9.0, 0], [2.0, 1.0, 12.0]]])
    again = lattice_from_invariants(lattice_invariants(lattice))
    assert torch.allclose(lattice_invariants(again), lattice_invariants(lattice), atol=1e-5)


def test_schedule_is_monotone():
    s = Schedule(steps=20)
    assert (s.sigmas().diff() > 0).all() and (s.alpha_bars().diff() < 0).all()


@pytest.fixture(scope="module")
def generator(examples, table):
    from discovery.library.building_blocks import BuildingBlockLibrary
    from discovery.generator.embeddings import train_embeddings

    library = BuildingBlockLibrary()
    embedding = train_embeddings([library.get(i) for i in table[0]], epochs=2, seed=0)
    lookup = examples_from_rows(training_rows()[:24], embedding.vector)[0]
    model = CGDiffusion(SMALL, Normaliser.fit(lookup, embedding.vectors))
    fit(model, lookup, steps=5)
    prior = TemplatePrior.from_rows(training_rows()[:24], embedding.ids, DenovoSettings(unseen_weight=0.0))
    return DiffusionGenerator(model, embedding, replay=lookup[:8], prior=prior)


def test_samples_decode_to_library_building_blocks(generator):
    samples = generator.sample(3, seed=1, steer=2)
    assert len(samples) == 3
    for s in samples:
        assert set(s.bb_ids) <= set(generator.embedding.ids) and len(s.bb_ids) == len(s.frac) >= 2
        assert s.lattice.shape == (3, 3) and abs(np.linalg.det(s.lattice)) > 1.0
        assert ((s.frac >= 0) & (s.frac < 1)).all() and np.isfinite(s.predicted) and s.version == 1
    again = generator.sample(3, seed=1, steer=2)
    assert [s.id for s in again] == [s.id for s in samples]  # seeded


def test_edits_keep_the_parent_cell_and_bead_count(generator, examples):
    parents = examples[:2]
    samples = generator.sample(4, seed=2, parents=parents, strength=0.3)
    by_id = {p.id: p for p in parents}
    for s in samples:
        parent = by_id[s.parent]
        assert np.allclose(s.lattice, parent.lattice, atol=1e-4) and len(s.bb_ids) == len(parent.frac)
    with pytest.raises(Exception, match="strength"):
        generator.sample(1, parents=parents, strength=0.0)
    with pytest.raises(Exception, match="block_strength"):
        generator.sample(1, parents=parents, block_strength=1.5)


def test_parents_are_edited_in_a_shuffled_round_robin():
    pick = round_robin(5, 12, torch.Generator().manual_seed(0))
    assert len(pick) == 12 and sorted(pick[:5]) == sorted(pick[5:10]) == list(range(5))
    assert len(set(pick[10:])) == 2


def test_edit_strengths_act_on_positions_and_blocks_separately(generator):
    parents = generator.replay[:2]
    by_id = {p.id: p for p in parents}
    blocks = {p.id: tuple(generator.embedding.decode(p.embeddings)) for p in parents}

    def moved(s):  # largest bead displacement from the parent (minimum image, A)
        d = (s.frac - by_id[s.parent].frac + 0.5) % 1.0 - 0.5
        return np.linalg.norm(d @ s.lattice, axis=1).max()

    fixed_blocks = generator.sample(4, seed=3, parents=parents, strength=1.0, block_strength=0.01)
    assert all(s.bb_ids == blocks[s.parent] for s in fixed_blocks)  # blocks barely noised: kept
    fixed_beads = generator.sample(4, seed=3, parents=parents, strength=0.01, block_strength=1.0)
    assert max(map(moved, fixed_beads)) < 0.5 < min(map(moved, fixed_blocks))


def test_update_fine_tunes_on_the_best_and_bumps_the_version(generator, rows):
    results = [{"id": r["id"], "cg": r["cg"], "values": r["labels"]} for r in rows[:12]]
    results.append({"id": "broken", "cg": None, "values": {"log10_kh_co2": 0.0}})  # no CG: ignored
    generator.finetune.steps = 2
    info = generator.update(results)
    assert info["version"] == generator.version == 2 and info["fine_tuned_on"] == 8  # min_examples
    assert info["best_label"] == max(r["labels"]["log10_kh_co2"] for r in rows[:12])
    assert generator.sample(1, seed=0)[0].version == 2


def test_metrics_count_duplicates_and_training_structures(rows):
    a = {"status": "valid", "cg": rows[0]["cg"], "descriptors": rows[0]["descriptors"], "mofchecker_valid": True}
    b = {"status": "valid", "cg": rows[1]["cg"],
         "descriptors": {**rows[1]["descriptors"], "density_g_cm3": rows[1]["descriptors"]["density_g_cm3"] + 0.1}}
    bad = {"status": "invalid", "reason": "overlap"}
    m = generation_metrics([a, a, b, bad], rows, cpu_s=2.0)
    assert m["validity"] == 0.75 and m["uniqueness"] == round(2 / 3, 4) and m["novelty"] == round(1 / 3, 4)
    assert m["valid_per_cpu_s"] == 1.5 and m["invalid_reasons"] == {"overlap": 1}
    assert m["mofchecker_validity"] == 0.5  # a twice (b and the invalid one carry no MOFChecker pass)
    assert m["vnu"] == 0.25  # b: the one valid, new, distinct fingerprint of four samples
    assert m["validity_with_mofchecker"] == 0.5 and m["vnu_with_mofchecker"] == 0.0  # a is a training MOF
    checked = [{**a, "failed_checks": [], "mofchecker_failed": []},
               {"status": "invalid", "failed_checks": ["overlap", "coordination"],
                "mofchecker_failed": ["has_atomic_overlaps"]},
               {"status": "invalid", "failed_checks": ["coordination"], "mofchecker_failed": []},
               {"status": "invalid", "reason": "assembly"}]  # never reached the checks
    rates = generation_metrics(checked, rows, 1.0)
    assert rates["n_checked"] == 3 and rates["check_pass_rates"] == {"coordination": round(1 / 3, 4),
                                                                     "overlap": round(2 / 3, 4)}
    assert rates["mofchecker_pass_rates"] == {"has_atomic_overlaps": round(2 / 3, 4)}
    assert fingerprint(rows[0]["cg"], rows[0]["descriptors"]) != fingerprint(rows[1]["cg"], rows[1]["descriptors"])
    # a training MOF reassembled with its beads moved: same blocks and density, another PLD; not new
    moved = {**rows[0]["descriptors"], "pld": rows[0]["descriptors"]["pld"] + 0.7}
    jiggled = {"status": "valid", "cg": rows[0]["cg"], "descriptors": moved}
    assert generation_metrics([jiggled], rows, 1.0)["novelty"] == 0


def test_guidance_by_the_model_before_fine_tuning(generator, rows):
    import copy

    tuned = copy.deepcopy(generator)
    assert tuned.reference is None or tuned.version > 1
    tuned.reference, tuned.version = None, 1
    tuned.update([{"id": r["id"], "cg": r["cg"], "values": r["labels"]} for r in rows[:12]])
    assert tuned.reference is not None  # the model as it was before fine-tuning
    assert any((a != b).any() for a, b in zip(tuned.model.parameters(), tuned.reference.parameters()))
    parents = tuned.replay[:3]
    tuned.snap = False  # compare the raw block vectors, not only the blocks they decode to
    tuned.guidance = 1.0  # the fine-tuned model alone
    plain = tuned.sample(3, seed=5, parents=parents)
    reference, tuned.reference = tuned.reference, None
    assert [s.id for s in tuned.sample(3, seed=5, parents=parents)] == [s.id for s in plain]
    tuned.reference, tuned.guidance = reference, 3.0
    guided = tuned.sample(3, seed=5, parents=parents)
    assert any(not np.allclose(g.decode_distance, p.decode_distance) for g, p in zip(guided, plain))


def test_save_and_load_give_the_same_samples(generator, tmp_path):
    generator.save(tmp_path / "g")
    again = DiffusionGenerator.load(tmp_path / "g")
    assert again.version == generator.version
    again.reference = generator.reference  # not saved: the model before fine-tuning, kept by its owner
    again.prior = generator.prior  # not saved: built from the training rows by load_generator
    assert [s.id for s in again.sample(2, seed=4)] == [s.id for s in generator.sample(2, seed=4)]


def test_cli_trains_generates_and_reports(tmp_path):
    from agents.cli.main import main

    model = tmp_path / "model"
    assert main(["train", "generator", "--steps", "3", "--embedding-epochs", "1", "--hidden", "16",
                 "--layers", "1", "--diffusion-steps", "5", "--out", str(model), "--json"]) == 0
    assert main(["generate", "--n", "2", "--model", str(model), "--out", str(tmp_path / "out"), "--json"]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["n_sampled"] == 2 and 0 <= metrics["validity"] <= 1 and not math.isnan(metrics["cpu_s"])
    assert len((tmp_path / "out" / "samples.jsonl").read_text().splitlines()) == 2
    assert main(["generate", "--n", "2", "--mode", "denovo", "--unseen-nets", "0", "--model", str(model),
                 "--out", str(tmp_path / "denovo"), "--json"]) == 0
    denovo = json.loads((tmp_path / "denovo" / "metrics.json").read_text())
    assert denovo["mode"] == "denovo" and 0 <= denovo["outside_design_space"] <= 1 and denovo["unseen_nets"] == 0
    samples = [json.loads(line) for line in (tmp_path / "denovo" / "samples.jsonl").read_text().splitlines()]
    assert {s["origin"] for s in samples} == {"diffusion-denovo"} and all(s["recipe"] == s["id"] for s in samples)
    assert main(["generate", "--n", "1", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    # what it was trained on is named, so that its parents and novelty come from the same committed pools
    from discovery.generator.pipeline import source_label, trained_on
    from discovery.pool import POOLS

    assert json.loads((model / "model.json").read_text())["meta"]["source"] == "pools:design"
    assert trained_on(model) == [POOLS["design"]]
    assert source_label([POOLS["design"], POOLS["core"]]) == "pools:design,core"
    assert source_label(tmp_path / "mine.jsonl.gz").endswith("mine.jsonl.gz")


def test_campaign_generator_fine_tunes_saves_and_resumes(generator, rows, tmp_path):
    from discovery.campaign.contracts import Feedback, ProposalContext
    from discovery.config import ProposerConfig
    from discovery.generator.campaign import CampaignGenerator

    generator.save(tmp_path / "model")
    config = ProposerConfig(kind="diffusion", model=str(tmp_path / "model"), steer=2, finetune_after=4)
    start = generator.version
    agent = CampaignGenerator(config, tmp_path / "run", seed=0)
    agent.generator.finetune.steps = 2
    feedback = [Feedback(r["id"], r["labels"], float(-k), r["cg"]) for k, r in enumerate(rows[:6])]
    assert agent.update(feedback[:3]) is None  # 3 results: too few to fine-tune
    records = agent.propose(2, ProposalContext(round=0, seed=0))
    assert len(records) == 2 and {r["generator"] for r in records} == {f"diffusion-v{start}"}
    assert all(r["status"] in ("valid", "invalid") and r["origin"] == "diffusion-edit" for r in records)
    elite = {e.id for e in agent.generator.elite}
    assert {r["parent"] for r in records} <= elite  # before any result: edits of the training set's best
    info = agent.update(feedback)
    assert info["generator_version"] == start + 1
    # the best by the campaign's score (the first rows here), not by the property label, were fine-tuned on
    assert info["best_label"] == rows[0]["labels"].get("log10_kh_co2", info["best_label"])
    ranked = tuple(f.id for f in feedback)
    records = agent.propose(1, ProposalContext(round=1, seed=0, parents=ranked))
    assert records[0]["generator"] == f"diffusion-v{start + 1}"
    assert records[0]["parent"] in ranked  # edits of the campaign's best
    assert (tmp_path / "run" / "generator" / f"v{start + 1}" / "model.pt").exists()
    again = CampaignGenerator(config, tmp_path / "run", seed=0)  # a restarted agent
    assert again.generator.version == start + 1 and again.tuned_on == 6
    # the de novo net prior as fine-tuning left it: moved toward the nets of the best results
    assert again.generator.prior.weights() == pytest.approx(agent.generator.prior.weights())
    assert agent.generator.prior.weights() != agent.generator.base_prior.weights()


@pytest.mark.slow
def test_benchmark_prints_the_issue_keys(tmp_path, capsys):
    """The whole benchmark on a tiny model (slow: it trains the pool surrogate); `make test-slow`."""
    from agents.cli.main import main

    model = tmp_path / "model"
    assert main(["train", "generator", "--steps", "30", "--embedding-epochs", "1", "--hidden", "16", "--layers", "1",
                 "--diffusion-steps", "5", "--out", str(model), "--json"]) == 0
    capsys.readouterr()
    assert main(["benchmark", "generator", "--model", str(model), "--n", "4", "--denovo-n", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("validity", "uniqueness", "novelty", "valid_per_cpu_s", "retrain_lift", "denovo_validity",
                "denovo_vnu", "denovo_outside_design_space", "denovo_valid_per_cpu_s", "denovo_conditioning_ratio"):
        assert key in result
    assert result["denovo"]["n_sampled"] == 5 and 0 <= result["denovo_validity"] <= result["denovo"]["validity"]
    assert 0 <= result["validity"] <= 1 and result["n_sampled"] == 4


@pytest.fixture(scope="module")
def real_row(irmof1):
    """A real-MOF row as the core pool table holds it: IRMOF-1 with one H made F, cut into units (pormake's
    Zn4O node and linker, and the fluorinated linker, which pormake does not have)."""
    from discovery.library.candidates import compact_cg
    from discovery.library.decompose import decompose, decomposed_mof
    from discovery.structures.mof import MOF

    s = irmof1.structure.copy()
    s.replace(next(i for i, site in enumerate(s) if site.specie.symbol == "H"), "F")
    mof = decomposed_mof(MOF(id="f1", structure=s), decompose(s, "f1", topology=False))
    return {"id": "f1", "cg": compact_cg(mof.cg), "units": mof.units, "labels": {"log10_kh_co2": -4.0}}


def test_real_mofs_train_and_parent_the_generator(generator, real_row, tmp_path):
    from discovery.generator.generator import CGSample, prepare_sample
    from discovery.generator.train import row_units

    units = row_units([real_row])
    (uid,) = [u.id for u in units]
    pormake = [units.get(i) for i in ("N16", "E14") if i not in generator.embedding]  # the fixture's are few
    base = generator.embedding.extended(pormake)
    emb = base.extended(units)
    n = len(base)
    assert emb.ids[:n] == base.ids and np.allclose(emb.vectors[:n], base.vectors)
    assert uid in emb and np.linalg.norm(emb.vector(uid)) == pytest.approx(math.sqrt(emb.dim), rel=1e-4)
    (example,), skipped = examples_from_rows([real_row], emb.vector)
    assert not skipped and examples_from_rows([real_row], base.vector)[1]  # the unit is what makes it count
    real = DiffusionGenerator(generator.model, emb, units=units)
    # the parent's own CG view assembles from the unit's atoms, and the candidate carries the unit
    bb_ids = tuple(b["bb_id"] for b in real_row["cg"]["beads"])
    sample = CGSample("s1", example.lattice, example.frac, bb_ids, np.zeros(len(bb_ids)), -4.0, 1, "f1")
    (record,) = real.prepare([sample])
    assert record["status"] == "valid" and list(record["units"]) == [uid], record.get("message")
    assert prepare_sample(sample, describe_probe=False)["reason"] == "UnknownBuildingBlockError"  # no units
    real.save(tmp_path / "g")
    again = DiffusionGenerator.load(tmp_path / "g")
    assert uid in again.units and uid in again.embedding
    edits = again.sample(3, seed=0, parents=[example], strength=0.1, block_strength=0.05)
    assert all(set(s.bb_ids) <= set(emb.ids) and s.parent == "f1" for s in edits)
    from discovery.generator.pipeline import generate  # what `discovery generate` runs: the units go along

    records, _ = generate(again, 2, seed=0, parents=[example], strength=0.1, block_strength=0.05, progress=False)
    assert not [r for r in records if r.get("reason") == "UnknownBuildingBlockError"]


def test_campaign_generator_mixes_de_novo_samples_and_edits(generator, tmp_path):
    from collections import Counter

    from discovery.campaign.contracts import ProposalContext
    from discovery.config import ProposerConfig
    from discovery.generator.campaign import CampaignGenerator

    generator.save(tmp_path / "model")
    config = ProposerConfig(kind="diffusion", model=str(tmp_path / "model"), denovo_fraction=0.5, denovo_unseen=0.0)
    agent = CampaignGenerator(config, None, seed=0)
    records = agent.propose(6, ProposalContext(round=0, seed=0))
    origins = Counter(r["origin"] for r in records)
    assert origins["diffusion-edit"] == 3 and 1 <= origins["diffusion-denovo"] <= 3  # repeated recipes dropped
    assert len({r["id"] for r in records}) == len(records)
    for r in records:
        if r["origin"] == "diffusion-denovo":
            assert r["parent"] is None and r["id"] == r["recipe"] and isinstance(r["in_design_space"], bool)
    denovo_only = CampaignGenerator(ProposerConfig(kind="diffusion", model=str(tmp_path / "model"), mode="denovo",
                                                   denovo_unseen=0.0), None, seed=0)
    assert {r["origin"] for r in denovo_only.propose(2, ProposalContext(round=0, seed=0))} == {"diffusion-denovo"}


def test_generate_prepares_a_recipe_drawn_again_once(monkeypatch):
    """De novo samples that repeat a recipe are the same MOF: pormake and the checks run once, and each
    sample keeps its own prediction. The generator and the preparation are fakes (named as such)."""
    from discovery.generator import pipeline
    from discovery.generator.generator import CGSample

    def sample(recipe, predicted):
        return CGSample(recipe, np.eye(3), np.zeros((1, 3)), ("N1",), np.zeros(1), predicted, 1, None, recipe)

    class FakeGenerator:
        space = units = None

        def sample(self, n, **_):
            return [sample("pcu+N1+E1", 1.0), sample("dia+N2+E2", 2.0), sample("pcu+N1+E1", 3.0)][:n]

    prepared = []

    def fake_prepare(s, *_, **__):
        prepared.append(s.recipe)
        return {"id": s.id, "recipe": s.recipe, "status": "valid", "predicted_log10_kh_co2": s.predicted}

    monkeypatch.setattr(pipeline, "prepare_sample", fake_prepare)
    records, _ = pipeline.generate(FakeGenerator(), 3, progress=False)
    assert prepared == ["pcu+N1+E1", "dia+N2+E2"]
    assert [r["recipe"] for r in records] == ["pcu+N1+E1", "dia+N2+E2", "pcu+N1+E1"]
    assert [r["predicted_log10_kh_co2"] for r in records] == [1.0, 2.0, 3.0]


def test_a_real_parent_known_unit_by_unit_is_edited_in_place(generator, irmof1):
    """IRMOF-1 with one linker fluorinated, with its orientations (as an import directory's record keeps them):
    edits keep its cell and beads and swap units for ones that fit; nothing goes through the CG assembler."""
    from discovery.generator.frames import FrameSource
    from discovery.generator.train import row_units
    from discovery.library.decompose import decompose, decomposed_mof
    from discovery.library.units import is_pormake
    from discovery.structures.mof import MOF

    s = irmof1.structure.copy()
    s.replace(next(i for i, site in enumerate(s) if site.specie.symbol == "H"), "F")
    mof = decomposed_mof(MOF(id="f1", structure=s), decompose(s, "f1", topology=False))
    row = {"id": "f1", "cg": mof.cg.to_dict(), "units": mof.units, "labels": {"log10_kh_co2": -4.0}}
    units = row_units([row])
    pormake = [units.get(i) for i in sorted(set(mof.cg.bb_ids)) if is_pormake(i) and i not in generator.embedding]
    emb = generator.embedding.extended(pormake).extended(units)
    real = DiffusionGenerator(generator.model, emb, units=units, frames=FrameSource([row]))
    (example,), _ = examples_from_rows([row], emb.vector)
    samples = real.sample(4, seed=0, parents=[example], strength=0.5, block_strength=1.0)
    assert all(s.child is not None and s.parent == "f1" for s in samples)
    for s in samples:
        assert np.allclose(s.lattice, example.lattice) and len(s.bb_ids) == len(example.frac)
        kept = [i for i in range(len(s.bb_ids)) if i not in s.child.swapped]
        assert np.allclose(s.frac[kept], example.frac[kept], atol=1e-4)  # unswapped beads stay put
    records = real.prepare(samples)
    for s, r in zip(samples, records):
        if s.child.swaps:
            assert r["status"] == "valid" and r["mutation"] == s.child.mutation, r.get("message")
            assert real.frames.get(r["id"]) is not None  # a valid child can be a parent in turn
            stored = FrameSource()  # after a resume: from the run's stored record, orientations and units
            stored.add([{"id": r["id"], "cg": json.loads(r["mof_json"])["cg"], "units": r.get("units")}])
            assert stored.get(r["id"]).cg.bb_ids == list(s.bb_ids)
        else:
            assert r["reason"] == "unchanged"
