"""What the CLI runs: train a generator, generate MOFs into a folder, and the generator benchmark."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from discovery.clock import cpu_seconds
from discovery.errors import DiscoveryError
from discovery.generator.frames import FrameSource
from discovery.generator.generator import DEFAULTS, DiffusionGenerator, prepare_sample, round_robin
from discovery.generator.metrics import generation_metrics
from discovery.generator.model import ModelSettings
from discovery.generator.templates import DenovoSettings, TemplatePrior
from discovery.generator.train import LABEL, examples_from_rows, train_model, training_rows
from discovery.models import DEFAULT, resolve_model, write_fingerprint

DEFAULT_MODEL = DEFAULT  # the shipped generator (discovery.models)
DEFAULT_STEPS = DEFAULTS.train_steps
# The diffusion model's training step runs 1.6x faster in wall time on two threads than on one (0.091 against
# 0.145 s per step on this project's 2-core machine, at 1.25x the CPU); the BB embeddings' tiny graphs stay
# on one. OMP_NUM_THREADS, when set, caps it (two threads on a core another job holds spin and waste CPU).
TRAIN_THREADS = min(2, int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1)
REPLAY_SIZE = 256  # training examples a generator keeps for fine-tuning (replay)


def train_generator(source: str | Path | None = None, out: str | Path = "models/generator", steps: int = DEFAULT_STEPS,
                    embedding_epochs: int = 300, seed: int = 0, settings: ModelSettings | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """BB embeddings (contrastive) on the design space's building blocks, then the CG diffusion model on
    ``source``'s CG views (a table or dataset, or a list of them: both committed pools); both saved under
    ``out``. Units cut from real MOFs join the embedding through its encoder, and their atoms are saved with
    the model (``units.json.gz``) for assembly. Returns a summary."""
    from discovery.generator.embeddings import design_space_bbs, train_embeddings
    from discovery.generator.train import row_units

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        t0 = time.process_time()
        embedding = train_embeddings(design_space_bbs(), epochs=embedding_epochs, seed=seed, progress=progress)
        emb_cpu = time.process_time() - t0
        rows = training_rows(source)
        units = row_units(rows)
        embedding = embedding.extended(units)
        examples, skipped = examples_from_rows(rows, embedding.vector)
        torch.set_num_threads(TRAIN_THREADS)
        model, summary = train_model(examples, embedding.vectors, settings, steps=steps, seed=seed,
                                     progress=progress)
    finally:
        torch.set_num_threads(threads)
    generator = DiffusionGenerator(model, embedding, units=units)
    generator.save(out, {"source": source_label(source), "seed": seed, **summary})
    write_fingerprint(out, fingerprint(generator))
    return {**summary, "embedding_cpu_s": round(emb_cpu, 1), "n_bbs": len(embedding), "n_units": len(units),
            "skipped": len(skipped), "out": str(out)}


def source_label(source) -> str:
    """How a model's metadata names its training data: committed pools by name (``pools:design,core``, which
    ``load_generator`` reads back), anything else by its path."""
    from discovery.pool import committed_name

    parts = [None] if source is None else source if isinstance(source, (list, tuple)) else [source]
    pools = ["design" if p is None else committed_name(p) for p in parts]
    if all(pools):
        return "pools:" + ",".join(pools)
    return " + ".join(str(p) for p in parts)


def fingerprint(generator: DiffusionGenerator) -> dict[str, Any]:
    """Outputs that move with any weight, under fixed seeds: the training loss terms on the committed pool
    table's first 16 MOFs (by id) and the property head on 8 latents. Recorded when a model is trained
    (``fingerprint.json``) and recomputed by the shipped-model test."""
    from discovery.generator.model import collate

    examples, _ = examples_from_rows(training_rows(None), generator.embedding.vector)
    batch = collate(sorted(examples, key=lambda e: e.id)[:16], generator.model.normaliser)
    model = generator.model.eval()
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(0)
        terms = {k: round(float(v), 6) for k, v in model.loss(batch).items()}
        z = torch.randn(8, model.settings.latent_dim)
        predicted = [round(float(v), 6) for v in model.predict_property(z)]
    return {"loss_terms": terms, "property_head": predicted}


def load_generator(path: str | Path = DEFAULT_MODEL, source: str | Path | None = None, seed: int = 0,
                   rows: Sequence[dict[str, Any]] | None = None,
                   denovo: DenovoSettings | None = None) -> DiffusionGenerator:
    """A saved generator (``default``: the shipped one) with a replay sample and the top decile of its
    training data (``rows``, else read from ``source``), for fine-tuning and as first parents, and the net
    prior of de novo sampling (``denovo``: its settings) from the same rows; real MOFs among them are edited in
    place (``frames``, ``substitution``)."""
    path = resolve_model(path, "generator")
    if not (Path(path) / "model.json").exists():
        raise DiscoveryError(f"no generator at {path}: run `discovery train generator --out {path}` first")
    generator = DiffusionGenerator.load(path)
    if rows is None and source is None:
        source = trained_on(path)
    rows = rows if rows is not None else training_rows(source)
    examples, _ = examples_from_rows(rows, generator.embedding.vector)
    pick = np.random.default_rng(seed).permutation(len(examples))[:REPLAY_SIZE]
    generator.replay = [examples[i] for i in pick]
    labelled = sorted((e for e in examples if np.isfinite(e.label)), key=lambda e: e.label, reverse=True)
    generator.elite = labelled[:max(1, len(labelled) // 10)]  # the training set's top decile: first parents
    generator.prior = TemplatePrior.from_rows(rows, generator.embedding.ids, denovo)
    generator.frames = FrameSource(rows)  # real parents (CoRE MOFs, imported records) are edited in place
    return generator


def trained_on(path: str | Path = DEFAULT_MODEL) -> list[Path] | None:
    """The committed pool tables a saved generator was trained on (its parents and the reference for
    novelty); None: the design-space table, or data that is not committed (give it explicitly)."""
    from discovery.pool import pool_tables

    try:
        source = json.loads((Path(resolve_model(path, "generator")) / "model.json").read_text())["meta"]["source"]
    except (OSError, ValueError, KeyError, TypeError):  # no model, or a damaged one: loading it says which
        return None
    return pool_tables(source[len("pools:"):]) if source.startswith("pools:") else None


def generate(generator: DiffusionGenerator, n: int, seed: int = 0, steer: int = 1, parents: Sequence = (),
             strength: float = DEFAULTS.strength, block_strength: float | None = DEFAULTS.block_strength,
             batch: int = 32, progress: bool = True, describe_probe: bool = False,
             geometry: bool = False) -> tuple[list[dict[str, Any]], float]:
    """Sample (de novo, or edits of ``parents``) and prepare ``n`` MOFs; returns the candidate records and
    the CPU seconds spent (with Zeo++'s child processes). ``describe_probe``: add the probe-energy
    descriptors the surrogate scores with (and Zeo++'s pore descriptors); ``geometry``: Zeo++'s pore
    descriptors alone (otherwise the pore checks run on its channel analysis, at about half the cost)."""
    torch.set_num_threads(1)
    t0 = cpu_seconds()
    records: list[dict[str, Any]] = []
    built: dict[str, dict[str, Any]] = {}  # de novo recipes drawn again: pormake and the checks gave their answer
    # the parents of the whole run in one shuffled round robin (``sample`` makes one per call)
    order = round_robin(len(parents), n, torch.Generator().manual_seed(seed)) if parents else []
    with tqdm(total=n, desc="generate", unit="MOF", disable=not progress) as bar:
        for start in range(0, n, batch):
            size = min(batch, n - start)
            samples = generator.sample(size, seed=seed * 100_003 + start, steer=steer,
                                       parents=[parents[i] for i in order[start:start + size]],
                                       strength=strength, block_strength=block_strength)
            for s in samples:
                if s.recipe in built:  # the same MOF: the preparation's verdict, the sample's prediction
                    record = {**built[s.recipe], "predicted_" + LABEL: round(s.predicted, 4), "prepare_cpu_s": 0.0}
                else:
                    record = prepare_sample(s, generator.space, describe_probe, units=generator.units,
                                            geometry=geometry)
                    if s.recipe is not None:
                        built[s.recipe] = record
                records.append(record)
                bar.update()
                bar.set_postfix(valid=sum(r["status"] == "valid" for r in records))
    return records, cpu_seconds() - t0


def write_generated(records: Sequence[dict[str, Any]], out: str | Path, metrics: dict[str, Any]) -> Path:
    """CIFs of the valid MOFs, ``samples.jsonl`` (every sample, without atoms) and ``metrics.json``."""
    from discovery.structures.mof import MOF

    out = Path(out)
    (out / "cifs").mkdir(parents=True, exist_ok=True)
    with open(out / "samples.jsonl", "w") as fh:
        for r in records:
            if r.get("mof_json"):
                MOF.from_json(r["mof_json"]).to_cif(out / "cifs" / f"{r['id']}.cif")
            fh.write(json.dumps({k: v for k, v in r.items() if k != "mof_json"}) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return out


def sample_metrics(generator: DiffusionGenerator, n: int, seed: int, training: Sequence[dict[str, Any]],
                   progress: bool = True, **sampling) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generate ``n`` MOFs and measure them; novelty is against the ``training`` rows."""
    records, cpu = generate(generator, n, seed, progress=progress, **sampling)
    return records, generation_metrics(records, training, cpu)
