"""The diffusion generator inside a campaign: trained once (or loaded), fine-tuned on the best validated
results as they come in, every version saved in the run directory so that a restarted agent or a resumed
campaign continues from the same version."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from discovery.campaign.contracts import Feedback, Generator, ProposalContext
from discovery.config import ProposerConfig
from discovery.errors import DiscoveryError
from discovery.generator.generator import NET_PRIOR_FILE, DiffusionGenerator
from discovery.generator.templates import DenovoSettings

log = logging.getLogger(__name__)


def ensure_generator(config: ProposerConfig, seed: int = 0) -> None:
    """Train the configured generator on the committed pool table when it does not exist yet and the config
    asks for it (``proposer.train_if_missing``: tens of minutes, with a progress bar); otherwise say how to
    get one. The campaign driver calls this before any worker starts."""
    from discovery.generator.pipeline import train_generator

    if config.kind == "diffusion" and not (Path(config.model) / "model.json").exists():
        if not config.train_if_missing:
            raise DiscoveryError(
                f"no generator at {config.model} (proposer.model): train one with `discovery train generator "
                f"--out {config.model}` ({config.train_steps} steps, tens of CPU-minutes), or let the campaign do it "
                "first with `--train-generator` (proposer.train_if_missing: true)")
        log.warning("no generator at %s: training one on the committed pool table (%d steps)", config.model,
                    config.train_steps)
        train_generator(None, config.model, steps=config.train_steps, seed=seed, progress=True)


class CampaignGenerator(Generator):
    """The diffusion generator behind the ``Generator`` contract: ``update`` fine-tunes on the campaign's
    best validated results (ranked by the campaign's own objectives and constraints) once
    ``finetune_after`` new ones are in; ``propose`` samples (edits of the best so far, or de novo) and
    prepares the samples."""

    name = "diffusion"
    learns = True

    def __init__(self, config: ProposerConfig, run_dir: str | Path | None, seed: int = 0) -> None:
        from discovery.generator.pipeline import load_generator

        torch.set_num_threads(1)  # the oracle workers have the cores
        self.config, self.seed = config, seed
        self.generator: DiffusionGenerator = load_generator(config.model, seed=seed, denovo=denovo_settings(config))
        self.generator.guidance = config.guidance
        self.versions = Path(run_dir) / "generator" if run_dir else None
        self.structures = Path(run_dir) / "structures" if run_dir else None  # the run's valid candidates
        self.tuned_on = 0
        self.labelled: list[Feedback] = []
        self._resume()

    def _resume(self) -> None:
        """Continue from the latest version this run saved (a restarted agent, a resumed campaign)."""
        saved = sorted(self.versions.glob("v*/model.json"), key=lambda p: int(p.parent.name[1:])) \
            if self.versions and self.versions.exists() else []
        if saved:
            base = self.generator
            self.generator = DiffusionGenerator.load(saved[-1].parent, base.replay)
            self.generator.elite, self.generator.reference = base.elite, base.model  # base: never fine-tuned
            self.generator.prior = self.generator.base_prior = base.prior
            weights = saved[-1].parent / NET_PRIOR_FILE
            if base.prior is not None and weights.exists():  # the net prior as that version left it
                self.generator.prior = base.prior.with_weights(json.loads(weights.read_text()))
            self.generator.guidance = base.guidance
            self.generator.frames = base.frames
            self.tuned_on = json.loads(saved[-1].read_text())["meta"].get("tuned_on", 0)

    def update(self, results: Sequence[Feedback]) -> dict[str, Any] | None:
        """Fine-tune when ``finetune_after`` new results with a CG view are in; returns what was done."""
        self.labelled = [f for f in results if f.cg]
        if len(self.labelled) - self.tuned_on < self.config.finetune_after:
            return None
        rows = [_row(f) for f in self.labelled]
        info = self.generator.update(rows, seed=self.seed * 1000 + len(self.labelled),
                                     score={f.id: f.score for f in self.labelled})
        self.tuned_on = len(self.labelled)
        if self.versions:
            self.generator.save(self.versions / f"v{self.generator.version}", {"tuned_on": self.tuned_on, **info})
        log.info("generator fine-tuned: %s", info)
        return {"generator_version": self.generator.version, **{k: v for k, v in info.items() if k != "version"}}

    def _parents(self, ranked: Sequence[str]) -> list:
        """The best validated MOFs so far (``ranked``: ids best first by the campaign), once
        ``finetune_after`` results are in, else the training set's best."""
        if len(self.labelled) < self.config.finetune_after:
            return self.generator.elite
        examples = {e.id: e for e in self.generator.examples([_row(f) for f in self.labelled], keep_unlabelled=True)}
        parents = [examples[i] for i in ranked if i in examples]
        if self.generator.frames is not None:  # children edited in place are parents in place, after a resume too
            self.generator.frames.add(self._stored([p.id for p in parents]))
        return parents

    def _stored(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The run's stored records of ``ids`` (their CG views keep every bead's orientation), as rows."""
        rows = []
        for i in ids:
            path = self.structures / f"{i}.json" if self.structures else None
            if path is not None and path.is_file():
                doc = json.loads(path.read_text())
                rows.append({"id": i, "cg": doc.get("cg"), "units": doc.get("units")})
        return rows

    def propose(self, n: int, context: ProposalContext) -> list[dict[str, Any]]:
        """Sample and prepare ``n`` candidates (seeded by the campaign seed and the round): edits of the best
        so far and, for ``denovo_fraction`` of them, de novo samples."""
        fraction = 1.0 if self.config.mode == "denovo" else self.config.denovo_fraction
        n_denovo = int(round(n * fraction))
        seed = self.seed * 100_003 + context.round
        samples = self.generator.sample(n_denovo, seed=seed, steer=self.config.steer) if n_denovo else []
        if n > n_denovo:
            samples += self.generator.sample(n - n_denovo, seed=seed, parents=self._parents(context.parents),
                                             strength=self.config.strength,
                                             block_strength=self.config.block_strength)
        seen, fresh = set(context.exclude), []
        for s in samples:  # de novo recipes may repeat within a round, or repeat an earlier round's
            if s.id not in seen:
                seen.add(s.id)
                fresh.append(s)
        return [{**r, "generator": f"diffusion-v{self.generator.version}"} for r in self.generator.prepare(fresh)]


def denovo_settings(config: ProposerConfig) -> DenovoSettings:
    return DenovoSettings(rmsd=config.denovo_rmsd, unseen_weight=config.denovo_unseen)


def _row(f: Feedback) -> dict[str, Any]:
    return {"id": f.id, "cg": f.cg, "values": f.values}
