"""The diffusion generator as the loop uses it.

Contract (the ``Generator`` of the architecture): ``sample(n, seed)`` -> CG samples (lattice, beads, decoded
building blocks), ``prepare(samples)`` -> candidate records (assembled, checked, described: what the
surrogate scores and the oracle evaluates), ``update(results)`` -> fine-tune on the best validated MOFs and
bump the version that every later candidate records.

Two ways to sample. De novo (``templates``): a latent from the prior chooses a net among those of its bead
count, and the building blocks are denoised from pure noise on the net's embedding, then built by pormake;
MOFDiff optimises its latent for the property head, here ``sample(steer=k)`` draws ``k`` latents per wanted
sample and keeps those the property head ranks highest (cheap, and the kept latents stay typical of the
prior, where the denoiser was trained). Edits (``sample(parents=..., strength=s)``, SDEdit): parents are
re-noised to a fraction ``s`` of the diffusion run and denoised. A parent known unit by unit (a real MOF:
``frames``) is edited in place: its units are swapped for the denoised ones that fit their slots, and its net,
cell and beads stay (``substitution``). docs/generator.md has the figures of both, docs/real_mofs.md those of
in-place edits.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from discovery.config import ProposerConfig
from discovery.library.assembly import Recipe
from discovery.library.designspace import DesignSpace
from discovery.errors import DiscoveryError
from discovery.generator.model import CGDiffusion, CGExample, Guide
from discovery.generator.substitution import SubstitutionSettings
from discovery.generator.templates import TemplatePrior
from discovery.generator.train import LABEL, fit, load_model, save_model

EMBEDDING_FILE = "embeddings.npz"
NET_PRIOR_FILE = "net_prior.json"
SIZE_REDRAWS = 3  # de novo: redraws (net and blocks) of a sample whose recipe breaks the size limits
UNITS_FILE = "units.json.gz"  # the blocks beyond pormake's that the embedding holds (real MOFs' units)
DEFAULTS = ProposerConfig()  # the proposer's defaults: edit strengths, training steps


@dataclass(frozen=True)
class CGSample:
    """One generated CG crystal: ``lattice`` 3 x 3 rows (A), ``frac`` n x 3, decoded ``bb_ids``, the decoding
    distance per bead (how far the generated vector was from its BB's), and the property head's prediction."""

    id: str
    lattice: np.ndarray
    frac: np.ndarray
    bb_ids: tuple[str, ...]
    decode_distance: np.ndarray
    predicted: float
    version: int
    parent: str | None = None  # the MOF an edit started from (None: de novo)
    recipe: str | None = None  # de novo: the net and one block per slot type, which pormake builds
    child: Any = None  # an edit of a parent known unit by unit (substitution.Child): built by placing its units


@dataclass
class FineTuneSettings:
    top_fraction: float = 0.1  # fine-tune on this best fraction of the validated results...
    min_examples: int = 8  # ...but never fewer
    replay: int = 64  # training-set examples mixed in, so the model keeps making valid frameworks
    steps: int = 150
    lr: float = 3e-4
    # de novo: this share of the net prior moves onto the nets of the best results (the rest stays on the
    # training set's nets and the unseen ones)
    net_share: float = 0.5


@dataclass
class DiffusionGenerator:
    model: CGDiffusion
    embedding: Any  # BBEmbedding
    version: int = 1
    replay: list[CGExample] = field(default_factory=list)  # a sample of the training set
    elite: list[CGExample] = field(default_factory=list)  # the training set's best: parents before any result
    finetune: FineTuneSettings = field(default_factory=FineTuneSettings)
    space: DesignSpace = field(default_factory=DesignSpace)
    snap: bool = True  # clamp clean-embedding estimates to real building blocks while sampling
    # the model before its first fine-tuning; once there is one, sampling amplifies what fine-tuning changed
    # in the building blocks by ``guidance`` (model.Guide; 1: no guidance)
    reference: CGDiffusion | None = None
    guidance: float = DEFAULTS.guidance
    units: Any = None  # UnitLibrary of the embedding's blocks beyond pormake's (None: pormake's only)
    # de novo: the nets to draw from (built from the training rows by ``load_generator``); ``update`` moves
    # part of its mass onto the nets of the best results
    prior: TemplatePrior | None = None
    base_prior: TemplatePrior | None = None  # the prior before any update (None: ``prior`` is it)
    # the parents known unit by unit (frames.FrameSource: real MOFs), edited by swapping units in place
    # (``substitution``) instead of through the CG assembler; None: every edit goes through the assembler
    frames: Any = None
    substitution: SubstitutionSettings = field(default_factory=SubstitutionSettings)
    _slots: Any = field(default=None, repr=False)  # substitution.SlotIndex of the embedding's blocks, when needed

    def _snapper(self, mask: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """Nearest real block to each clean-embedding estimate; ``mask`` (beads x library) limits each bead
        to the blocks that fit its slot."""
        table = self.model.standardise(self.embedding.vectors)  # the library, as the model sees it

        def snap(e0: torch.Tensor) -> torch.Tensor:
            d = torch.cdist(e0, table)
            if mask is not None:
                d = d.masked_fill(~mask, float("inf"))
            return table[d.argmin(dim=1)]
        return snap

    # ---- persistence ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, replay: Sequence[CGExample] = ()) -> "DiffusionGenerator":
        from discovery.generator.embeddings import BBEmbedding

        from discovery.library.units import UnitLibrary

        path = Path(path)
        model, meta = load_model(path)
        units = UnitLibrary.load(path / UNITS_FILE) if (path / UNITS_FILE).exists() else None
        return cls(model, BBEmbedding.load(path / EMBEDDING_FILE), int(meta.get("version", 1)), list(replay),
                   units=units)

    def save(self, path: str | Path, meta: Mapping[str, Any] | None = None) -> Path:
        path = Path(path)
        save_model(self.model, path, {**dict(meta or {}), "version": self.version})
        self.embedding.save(path / EMBEDDING_FILE)
        if self.prior is not None:  # the de novo net weights (the nets themselves come from the training rows)
            (path / NET_PRIOR_FILE).write_text(json.dumps(self.prior.weights(), sort_keys=True))
        if self.units is not None and len(self.units):
            self.units.save(path / UNITS_FILE)
        return path

    # ---- sampling ------------------------------------------------------------------------------------
    def sample(self, n: int, seed: int = 0, steer: int = 1, parents: Sequence[CGExample] = (),
               strength: float = DEFAULTS.strength,
               block_strength: float | None = DEFAULTS.block_strength) -> list[CGSample]:
        """``n`` CG samples. De novo without ``parents`` (``steer`` > 1 keeps the best of ``steer`` prior
        latents per sample); with ``parents``, SDEdit of the parents in a shuffled round robin (``strength``
        in (0, 1]: the fraction of the diffusion run from which bead positions are denoised; ``block_strength``
        that of the building blocks, None: ``strength``)."""
        if n < 1 or steer < 1:
            raise DiscoveryError(f"sample needs n >= 1 and steer >= 1, got n={n}, steer={steer}")
        for name, value in (("strength", strength), ("block_strength", block_strength)):
            if parents and value is not None and not 0 < value <= 1:
                raise DiscoveryError(f"{name} must be in (0, 1], got {value}")
        snap = self._snapper() if self.snap else None
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(int(seed))  # the caller's seed decides every draw; global state is left alone
            if parents:
                pick = round_robin(len(parents), n)
                z, raw = self.model.edit([parents[i] for i in pick], strength, snap, block_strength, self._guide())
                predicted = self.model.predict_property(z)
                origins = [parents[i].id for i in pick]
                if self.frames is not None:
                    self.frames.prefetch(set(origins))
            else:
                z = torch.randn(n * steer, self.model.settings.latent_dim)
                predicted = self.model.predict_property(z)
                if steer > 1:
                    keep = predicted.argsort(descending=True)[:n]
                    z, predicted = z[keep], predicted[keep]
                return self._denovo(z, predicted)
        return [self._edited(r, float(p), o) for r, p, o in zip(raw, predicted, origins)]

    def _denovo(self, z: torch.Tensor, predicted: torch.Tensor) -> list[CGSample]:
        """One sample per latent on a net the latent chooses (``templates``); blocks from pure noise. A
        sample whose recipe breaks the design space's size limits (judged before building, as the space's
        enumeration judges them) is drawn again, net and blocks, up to ``SIZE_REDRAWS`` times: pormake would
        build it only for the size check to reject it (17 % of 96 samples did so before the redraws)."""
        if self.prior is None:
            raise DiscoveryError("de novo sampling needs the generator's net prior: load the generator with "
                                 "discovery.generator.pipeline.load_generator")
        prior = self.prior
        count_probs = self.model.count_head(z).softmax(-1)
        chosen: list = [None] * len(z)
        layouts: list = [None] * len(z)
        drawn: list = [None] * len(z)
        todo = list(range(len(z)))
        for _ in range(SIZE_REDRAWS + 1):
            for i, k in zip(todo, prior.choose(count_probs[todo])):
                chosen[i] = prior.templates[k]
                layouts[i] = prior.layout(chosen[i])
            rules = [prior.rules(chosen[i]) for i in todo]  # (metal type, hydrogen type) per net
            picks = self._draw_blocks(z[todo], [chosen[i] for i in todo], [layouts[i] for i in todo], rules)
            for i, pick in zip(todo, picks):
                drawn[i] = pick
            todo = [i for i in todo if not prior.fits(chosen[i], drawn[i][0])]
            if not todo:
                break
        out = []
        for lay, (recipe, blocks), p in zip(layouts, drawn, predicted.tolist()):
            frac = np.linalg.solve(lay.lattice.T, lay.positions.T).T % 1.0
            out.append(CGSample(str(recipe), lay.lattice, frac, tuple(blocks), np.zeros(len(blocks)), float(p),
                                self.version, None, str(recipe)))
        return out

    def _draw_blocks(self, z: torch.Tensor, chosen: Sequence, layouts: Sequence,
                     rules: Sequence) -> list[tuple[Recipe, list[str]]]:
        """Blocks denoised from noise on each net's beads, and the recipe their majority vote gives."""
        prior, ids = self.prior, self.embedding.ids
        mask = torch.cat([prior.mask(t, lay.slots, ids, *r) for t, lay, r in zip(chosen, layouts, rules)])
        counts = torch.tensor([len(lay.slots) for lay in layouts])
        batch = torch.repeat_interleave(torch.arange(len(z)), counts)
        lattice = torch.tensor(np.stack([lay.lattice for lay in layouts]), dtype=torch.float32)
        pos = torch.tensor(np.concatenate([lay.positions for lay in layouts]), dtype=torch.float32)
        emb = self.model.sample_blocks(z, lattice, batch, pos, self._snapper(mask), self._guide())
        table = self.model.standardise(self.embedding.vectors)
        picks = torch.cdist(emb, table).masked_fill(~mask, float("inf")).argmin(dim=1).tolist()
        out, start = [], 0
        for t, lay in zip(chosen, layouts):
            blocks = [ids[i] for i in picks[start:start + len(lay.slots)]]
            start += len(lay.slots)
            out.append((t.recipe(lay.slots.tolist(), blocks), blocks))
        return out

    def _guide(self) -> Guide | None:
        return Guide(self.reference, self.guidance) if self.reference is not None and self.guidance != 1 else None

    def _edited(self, raw: Mapping[str, np.ndarray], predicted: float, parent: str) -> CGSample:
        """An edit: units swapped in place when the parent is known unit by unit, else decoded for the assembler."""
        frame = self.frames.get(parent) if self.frames is not None else None
        return self._decode(raw, predicted, parent) if frame is None else self._substituted(frame, raw, predicted)

    def _substituted(self, frame, raw: Mapping[str, np.ndarray], predicted: float) -> CGSample:
        """The parent with each of its units swapped for the nearest (to what was denoised for its beads) that
        fits its slot, where that is not the parent's own (``substitution``); bead positions stay the parent's."""
        from dataclasses import replace

        from discovery.generator.substitution import SlotIndex, choose_swaps, substitute

        wanted = raw["embeddings"] / np.linalg.norm(raw["embeddings"], axis=1, keepdims=True)
        wanted = wanted * math.sqrt(self.embedding.dim)
        if self._slots is None:
            self._slots = SlotIndex(self.embedding.ids, self._unit, self.substitution)
        swaps = choose_swaps(frame, wanted, self.embedding.vectors, self._slots)
        child = substitute(frame, swaps, settings=self.substitution)
        cg = child.frame.cg
        frac = np.array([b.frac_coords for b in cg.beads])
        sample_id = _sample_id(cg.lattice, cg.bb_ids, frac, self.version)
        child = replace(child, frame=replace(child.frame, id=sample_id))
        return CGSample(sample_id, np.asarray(cg.lattice), frac, tuple(cg.bb_ids), np.zeros(len(cg.beads)),
                        predicted, self.version, frame.id, child=child)

    def _unit(self, bb_id: str):
        """A block's geometry: a real MOF's unit the generator holds, or pormake's."""
        from discovery.library.units import UnitLibrary

        return (self.units if self.units is not None else UnitLibrary()).get(bb_id)

    def _decode(self, raw: Mapping[str, np.ndarray], predicted: float, parent: str | None) -> CGSample:
        bb_ids = self.embedding.decode(raw["embeddings"])
        table = np.stack([self.embedding.vector(b) for b in bb_ids])
        scale = math.sqrt(self.embedding.dim)
        unit = raw["embeddings"] / np.linalg.norm(raw["embeddings"], axis=1, keepdims=True) * scale
        distance = np.linalg.norm(unit - table, axis=1)
        return CGSample(_sample_id(raw["lattice"], bb_ids, raw["frac"], self.version), raw["lattice"], raw["frac"],
                        tuple(bb_ids), distance, predicted, self.version, parent)

    # ---- candidates ----------------------------------------------------------------------------------
    def prepare(self, samples: Sequence[CGSample]) -> list[dict[str, Any]]:
        """One candidate record per sample (``valid`` with ``mof_json``, ``cg``, ``descriptors``; or
        ``invalid`` with ``reason``), as the design-space proposer's candidates."""
        records = [prepare_sample(s, self.space, units=self.units) for s in samples]
        if self.frames is not None:  # a valid child is known unit by unit: it can be a parent in turn
            for s, r in zip(samples, records):
                if s.child is not None and r["status"] == "valid":
                    self.frames.remember(s.child.frame)
        return records

    # ---- learning from results -----------------------------------------------------------------------
    def update(self, results: Sequence[Mapping[str, Any]], seed: int = 0,
               score: Mapping[str, float] | None = None) -> dict[str, Any]:
        """Fine-tune on the best validated MOFs: ``results`` are records with ``cg`` and ``values``
        (``log10_kh_co2`` trains the property head). "Best" by ``score`` (id -> higher is better: a campaign's
        ranking by its own objectives) when given, else by ``log10_kh_co2``. Returns what was done; the
        version goes up by one."""
        examples = self.examples(results, keep_unlabelled=score is not None)
        if not examples:
            return {"version": self.version, "fine_tuned_on": 0}
        examples.sort(key=(lambda e: score[e.id]) if score is not None else (lambda e: e.label), reverse=True)
        k = max(self.finetune.min_examples, int(round(self.finetune.top_fraction * len(examples))))
        best = examples[:k]
        rng = np.random.default_rng(seed)
        replay = [self.replay[i] for i in rng.permutation(len(self.replay))[:self.finetune.replay]]
        if self.reference is None:  # keep the model as it was before any fine-tuning, for guidance
            self.reference = copy.deepcopy(self.model).eval()
        t0 = time.process_time()
        losses = fit(self.model, best + replay, self.finetune.steps, lr=self.finetune.lr, seed=seed,
                     batch_size=min(32, len(best) + len(replay)), desc="fine-tune")
        self._condition_nets(results, {e.id for e in best})
        self.version += 1
        return {"version": self.version, "fine_tuned_on": len(best), "replay": len(replay),
                "best_label": best[0].label, "threshold": best[-1].label,
                "loss": float(np.mean(losses[-20:])), "cpu_s": round(time.process_time() - t0, 1)}

    def _condition_nets(self, results: Sequence[Mapping[str, Any]], best: set[str]) -> None:
        """Move ``finetune.net_share`` of the de novo net prior onto the nets of the best results."""
        if self.prior is None:
            return
        self.base_prior = self.base_prior or self.prior
        nets = Counter((r.get("cg") or {}).get("topology") for r in results if r["id"] in best)
        self.prior = self.base_prior.conditioned(nets, self.finetune.net_share)

    def examples(self, results: Sequence[Mapping[str, Any]], keep_unlabelled: bool = False) -> list[CGExample]:
        """Results with a CG view of library BBs and a finite label (any label with ``keep_unlabelled``: the
        property head skips NaN), as training examples."""
        from discovery.generator.substitution import base_id
        from discovery.generator.train import examples_from_rows

        rows = [{"id": r["id"], "cg": r.get("cg"), "labels": r.get("values") or r.get("labels") or {}}
                for r in results]
        # a child edited in place keeps its parent's units as the parent's CIF was cut again, where a unit can
        # come back as another conformer (``~N``) than the one the embedding holds: the same chemistry
        vector = (lambda b: self.embedding.vector(b if b in self.embedding else base_id(b)))
        examples, _ = examples_from_rows(rows, vector)
        return [e for e in examples if keep_unlabelled or math.isfinite(e.label)]


def round_robin(n_parents: int, n: int, generator: torch.Generator | None = None) -> list[int]:
    """``n`` parent indices in shuffled passes over all parents: each is edited once before any is edited
    twice, so that the children of one parent (which often keep its blocks) do not crowd out the others."""
    passes = -(-n // n_parents)
    return torch.cat([torch.randperm(n_parents, generator=generator) for _ in range(passes)])[:n].tolist()


def prepare_sample(sample: CGSample, space: DesignSpace | None = None, describe_probe: bool = True,
                   units=None, geometry: bool = True) -> dict[str, Any]:
    """Assemble a CG sample into atoms, then check and describe it (``candidates.describe``; without the
    probe-energy descriptors when ``describe_probe`` is False: the surrogate needs them, the checks do not;
    without Zeo++'s pore descriptors either when ``geometry`` is False too: the pore checks need only its
    channel analysis). ``units``: a ``UnitLibrary`` with the blocks beyond pormake's the sample may name
    (real MOFs' units)."""
    from discovery.library.candidates import describe
    from discovery.library.units import block_row, is_pormake
    from discovery.generator.cg_assembly import assemble_cg

    t0 = time.process_time()
    origin = "diffusion-denovo" if sample.parent is None else "diffusion-edit"
    record = {"id": sample.id, "recipe": sample.recipe or sample.id, "origin": origin, "parent": sample.parent,
              "mutation": None, "generator": sample.version, "predicted_" + LABEL: round(sample.predicted, 4)}
    if sample.recipe is not None:
        return _prepare_recipe(sample.recipe, record, space or DesignSpace(), t0, describe_probe, geometry)
    if sample.child is not None:
        return _prepare_child(sample, record, space or DesignSpace(), t0, describe_probe, geometry)
    try:
        result = assemble_cg(sample.lattice, list(sample.bb_ids), frac_coords=sample.frac, mof_id=sample.id,
                             library=units)
    except DiscoveryError as exc:
        return {**record, "status": "invalid", "reason": type(exc).__name__, "message": str(exc)}
    except np.linalg.LinAlgError as exc:  # a numerical failure costs this sample, not the batch
        return {**record, "status": "invalid", "reason": "assembly", "message": f"numerical failure: {exc}"}
    if not result.ok:
        return {**record, "status": "invalid", "reason": "assembly", "message": result.message}
    extra = sorted({b for b in sample.bb_ids if not is_pormake(b)})
    if extra:  # the record carries the blocks pormake lacks, so that the surrogate can read it anywhere
        result.mof.units = {b: block_row(units.get(b)) for b in extra}
        record["units"] = result.mof.units
    out = describe(result.mof, record, space or DesignSpace(), t0, probe=describe_probe, geometry=geometry)
    return {**out, "prepare_cpu_s": round(time.process_time() - t0, 3)}


def _prepare_child(sample: CGSample, record: dict[str, Any], space: DesignSpace, t0: float,
                   describe_probe: bool, geometry: bool) -> dict[str, Any]:
    """An edit of a parent known unit by unit: its units placed as the substitution put them, checked and
    described. An edit that swapped nothing is the parent again, not a new MOF."""
    from discovery.generator.substitution import child_mof
    from discovery.library.candidates import describe

    child = sample.child
    record = {**record, "mutation": child.mutation}
    if not child.swaps:
        return {**record, "status": "invalid", "reason": "unchanged",
                "message": f"the edit kept every unit of {sample.parent}: its own units were the nearest that fit"}
    mof = child_mof(child, sample.id, sample.parent)
    if mof.units:
        record["units"] = mof.units
    out = describe(mof, record, space, t0, probe=describe_probe, geometry=geometry)
    return {**out, "prepare_cpu_s": round(time.process_time() - t0, 3)}


def _prepare_recipe(text: str, record: dict[str, Any], space: DesignSpace, t0: float,
                    describe_probe: bool, geometry: bool) -> dict[str, Any]:
    """A de novo sample's recipe built by pormake (``library.assembly``), checked and described; records
    whether the design space's enumeration could have produced it."""
    from discovery.errors import AssemblyError, IncompatibleCombinationError
    from discovery.library.assembly import Recipe, default_assembler
    from discovery.library.candidates import describe

    recipe = Recipe.parse(text)
    record = {**record, "in_design_space": _sampler(space).contains(recipe)}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="pormake")  # 0/0 RMSD ratios: noise
            mof = default_assembler().assemble(recipe)
    except (IncompatibleCombinationError, AssemblyError) as exc:
        return {**record, "status": "invalid", "reason": "assembly", "message": str(exc)}
    out = describe(mof, record, space, t0, probe=describe_probe, geometry=geometry)
    return {**out, "prepare_cpu_s": round(time.process_time() - t0, 3)}


@lru_cache(maxsize=4)
def _sampler(space: DesignSpace):
    from discovery.library.designspace import Sampler

    return Sampler(space)


def _sample_id(lattice: np.ndarray, bb_ids: Sequence[str], frac: np.ndarray, version: int) -> str:
    """The generator version, the number of beads and a hash of blocks and geometry."""
    digest = hashlib.sha1(np.round(np.concatenate([lattice.ravel(), frac.ravel()]), 3).tobytes()
                          + "|".join(bb_ids).encode()).hexdigest()[:10]
    return f"gen{version}-{len(bb_ids)}b-{digest}"
