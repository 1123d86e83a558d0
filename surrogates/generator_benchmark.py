"""The generator benchmark: validity, uniqueness, novelty and speed of the diffusion generator as the loop runs
it, de novo beside it, and the retrain lift, which needs a property model to score samples (the adsorption
ensemble): so it lives here, above the generator, which itself needs no surrogate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from discovery.errors import DiscoveryError
from discovery.generator.generator import DEFAULTS, FineTuneSettings
from discovery.generator.pipeline import (
    DEFAULT_MODEL,
    load_generator,
    sample_metrics,
    train_generator,
    trained_on,
)
from discovery.generator.train import training_rows
from discovery.targets import KH_CO2
from surrogates.adsorption.campaign_model import CampaignSurrogate
from surrogates.adsorption.ensemble import EnsembleConfig


def benchmark_generator(model: str | Path = DEFAULT_MODEL, n: int = 200, seed: int = 0, source=None,
                        strength: float = DEFAULTS.strength, block_strength: float | None = DEFAULTS.block_strength,
                        guidance: float = DEFAULTS.guidance, progress: bool = True) -> dict[str, Any]:
    """The generator as the loop runs it by default (edits of the training set's top decile at ``strength``
    for bead positions and ``block_strength`` for building blocks):
    validity, uniqueness, novelty, valid MOFs per CPU-second; de novo sampling (``n / 4`` samples) reported
    beside it. Then the retrain lift: the fraction of valid samples whose surrogate-predicted CO2 K_H reaches
    the training set's top decile, after fine-tuning on that top decile (the validated best) divided by
    before, both from the same random training parents; after fine-tuning, samples are guided by the model
    before it (``guidance``, see ``model.Guide``); the surrogate is an ensemble trained on the same labelled
    table."""
    if str(model) != DEFAULT_MODEL and not (Path(model) / "model.json").exists():
        train_generator(source, model, progress=progress)
    if source is None:  # what the model was trained on (committed pools), else the design-space table
        source = trained_on(model)
    training = training_rows(source)  # read once: the generator's parents and every novelty count use it
    generator = load_generator(model, seed=seed, rows=training)
    rows = [r for r in training if KH_CO2 in (r.get("labels") or {})]
    if len(rows) < 20:
        raise DiscoveryError("the retrain lift needs a labelled table (at least 20 labelled MOFs)")
    threshold = float(np.quantile([r["labels"][KH_CO2] for r in rows], 0.9))
    edit = {"strength": strength, "block_strength": block_strength}
    _, default = sample_metrics(generator, n, seed, training, progress, parents=generator.elite, **edit)
    _, denovo = sample_metrics(generator, max(1, n // 4), seed, training, progress)
    surrogate = _pool_surrogate(rows, seed)
    parents = generator.replay  # random training MOFs: the same parents before and after fine-tuning
    before, _ = sample_metrics(generator, n, seed + 1, training, progress, parents=parents, **edit,
                               describe_probe=True)
    top = [{"id": r["id"], "cg": r["cg"], "values": r["labels"]} for r in rows
           if r["labels"][KH_CO2] >= threshold]
    # The top decile is 170 diverse MOFs: no replay needed. 600 steps at 5e-4 (measured on 120 samples:
    # lift 1.68, against 1.12 with 400 steps, lr 3e-4 and a replay of 64, and 1.56 with 1,500 steps at 1e-3)
    generator.finetune = FineTuneSettings(top_fraction=1.0, replay=0, steps=600, lr=5e-4)
    generator.guidance = guidance
    tuned = generator.update(top, seed=seed)
    after, after_metrics = sample_metrics(generator, n, seed + 1, training, progress, parents=parents,
                                          **edit, describe_probe=True)
    hit_before, hit_after = (_top_fraction(surrogate, recs, threshold) for recs in (before, after))
    keys = ("validity", "uniqueness", "novelty", "valid_per_cpu_s")
    return {**{k: default[k] for k in keys},
            "retrain_lift": round(hit_after / hit_before, 3) if hit_before > 0 else None,
            "mode": f"edit of the training set's top decile (strength {strength}, block strength "
                    f"{strength if block_strength is None else block_strength})",
            "n_sampled": n, "n_valid": default["n_valid"], "invalid_reasons": default["invalid_reasons"],
            "cpu_s": default["cpu_s"],
            "denovo": {k: denovo[k] for k in (*keys, "n_sampled", "invalid_reasons")},
            "lift": {"top_decile_threshold_log10_kh": round(threshold, 3), "fraction_before": round(hit_before, 4),
                     "fraction_after": round(hit_after, 4), "validity_after": after_metrics["validity"],
                     "novelty_after": after_metrics["novelty"], "guidance": guidance,
                     "fine_tune": tuned}}


def _pool_surrogate(rows: list[dict[str, Any]], seed: int):
    surrogate = CampaignSurrogate(EnsembleConfig(members=3, epochs=10, seed=seed, targets=(KH_CO2,)))
    surrogate.add([{**r, "status": "valid"} for r in rows])
    ids = [r["id"] for r in rows if r["id"] in surrogate.graphs]
    by_id = {r["id"]: r for r in rows}
    surrogate.fit(1, ids, np.array([[by_id[i]["labels"][KH_CO2]] for i in ids]))
    return surrogate


def _top_fraction(surrogate, records: list[dict[str, Any]], threshold: float) -> float:
    """Of the valid samples, the fraction the surrogate predicts at or above ``threshold``."""
    valid = [r for r in records if r["status"] == "valid"]
    surrogate.add(valid)
    ids = [r["id"] for r in valid if r["id"] in surrogate.graphs]
    if not ids:
        return 0.0
    mean, _ = surrogate.predict(ids)
    return float((np.asarray(mean)[:, 0] >= threshold).sum() / len(valid))
