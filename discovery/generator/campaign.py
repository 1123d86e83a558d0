"""The diffusion generator inside a campaign: trained once (or loaded), fine-tuned on the best validated
results as they come in, every version saved in the run directory so that a restarted agent or a resumed
campaign continues from the same version."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..config import ProposerConfig
from .generator import DiffusionGenerator
from .train import LABEL

log = logging.getLogger(__name__)
N_PARENTS = 16


def ensure_generator(config: ProposerConfig, seed: int = 0) -> None:
    """Train the configured generator on the committed pool table when it does not exist yet (minutes,
    with a progress bar): the campaign driver calls this before it starts the generator agent."""
    from .pipeline import train_generator

    if config.kind == "diffusion" and not (Path(config.model) / "model.json").exists():
        log.warning("no generator at %s: training one on the committed pool table (%d steps)", config.model,
                    config.train_steps)
        train_generator(None, config.model, steps=config.train_steps, seed=seed, progress=True)


class CampaignGenerator:
    def __init__(self, config: ProposerConfig, run_dir: str | Path | None, seed: int = 0) -> None:
        from .pipeline import load_generator

        torch.set_num_threads(1)  # the oracle workers have the cores
        self.config, self.seed = config, seed
        self.generator: DiffusionGenerator = load_generator(config.model, seed=seed)
        self.generator.guidance = config.guidance
        self.versions = Path(run_dir) / "generator" if run_dir else None
        self.tuned_on = 0
        self._resume()

    def _resume(self) -> None:
        """Continue from the latest version this run saved (a restarted agent, a resumed campaign)."""
        saved = sorted(self.versions.glob("v*/model.json"), key=lambda p: int(p.parent.name[1:])) \
            if self.versions and self.versions.exists() else []
        if saved:
            base = self.generator
            self.generator = DiffusionGenerator.load(saved[-1].parent, base.replay)
            self.generator.elite, self.generator.reference = base.elite, base.model  # base: never fine-tuned
            self.generator.guidance = base.guidance
            self.tuned_on = json.loads(saved[-1].read_text())["meta"].get("tuned_on", 0)

    def _parents(self, labelled: Sequence[Mapping[str, Any]]) -> list:
        """The best validated MOFs so far (once there are ``finetune_after``), else the training set's best."""
        if len(labelled) >= self.config.finetune_after:
            best = sorted(self.generator.examples(labelled), key=lambda e: e.label, reverse=True)
            return best[:N_PARENTS]
        return self.generator.elite

    def propose(self, round_index: int, n: int, exclude: Sequence[str],
                feedback: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Fine-tune when ``finetune_after`` new results are in, then sample and prepare ``n`` candidates."""
        labelled = [f for f in feedback if f.get("cg") and math.isfinite((f.get("values") or {}).get(LABEL, math.nan))]
        if len(labelled) - self.tuned_on >= self.config.finetune_after:
            info = self.generator.update(labelled, seed=self.seed * 1000 + round_index)
            self.tuned_on = len(labelled)
            if self.versions:
                self.generator.save(self.versions / f"v{self.generator.version}", {"tuned_on": self.tuned_on, **info})
            log.info("generator fine-tuned: %s", info)
        samples = self.generator.sample(n, seed=self.seed * 100_003 + round_index, steer=self.config.steer,
                                        parents=self._parents(labelled) if self.config.mode == "edit" else (),
                                        strength=self.config.strength, block_strength=self.config.block_strength)
        skip = set(exclude)
        return [{**r, "generator": f"diffusion-v{self.generator.version}"}
                for r in self.generator.prepare([s for s in samples if s.id not in skip])]
