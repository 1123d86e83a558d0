"""Training data, training, fine-tuning and saving of the CG diffusion model."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from discovery.errors import DiscoveryError
from discovery.generator.model import (
    MAX_BEADS,
    CGDiffusion,
    CGExample,
    ModelSettings,
    Normaliser,
    collate,
)
from discovery.targets import KH_CO2

LABEL = KH_CO2  # what the property head learns and sampling steers toward


def training_rows(source: str | Path | Sequence[str | Path] | None = None,
                  charges: str = "none") -> list[dict[str, Any]]:
    """Rows (``id``, ``cg``, ``labels``, ``descriptors`` when known, ``units`` of real MOFs) to train on: a
    pool table (default: the committed design-space one), a dataset directory (every valid structure; labels
    from ``labels/CHARGES.jsonl`` when the dataset was labelled), or a list of them."""
    from discovery.pool import POOL_TABLE, read_table

    if isinstance(source, (list, tuple)):
        return [row for one in source for row in training_rows(one, charges)]
    source = Path(source) if source is not None else POOL_TABLE
    if not source.exists():
        raise DiscoveryError(f"{source}: no such dataset directory or pool table")
    if source.is_file():
        return read_table(source)[1]
    return _dataset_rows(source, charges)


def _dataset_rows(dataset: Path, charges: str) -> list[dict[str, Any]]:
    import csv

    from discovery.library.candidates import compact_cg
    from discovery.oracle.core import target_values
    from discovery.structures.mof import MOF

    if not (dataset / "mofs.csv").exists():
        raise DiscoveryError(f"{dataset} is not a dataset directory (no mofs.csv): run `discovery dataset build`")
    labels = {}
    labels_path = dataset / "labels" / f"{charges}.jsonl"
    if labels_path.exists():
        for line in labels_path.read_text().splitlines():
            row = json.loads(line)
            labels[row["structure"]] = target_values(row)
    with open(dataset / "mofs.csv") as fh:
        table = [r for r in csv.DictReader(fh) if r.get("valid") == "True"]
    rows = []
    for r in tqdm(table, desc="CG views", disable=len(table) < 200, unit="MOF"):
        mof = MOF.from_json(dataset / "structures" / f"{r['id']}.json")
        rows.append({"id": r["id"], "cg": compact_cg(mof.cg), "labels": labels.get(r["id"], {}),
                     "descriptors": {k: float(r[k]) for k in ("density_g_cm3", "pld") if r.get(k)},
                     **({"units": mof.units} if mof.units else {})})
    return rows


def examples_from_rows(rows: Iterable[Mapping[str, Any]], vector: Callable[[str], np.ndarray],
                       label: str = LABEL) -> tuple[list[CGExample], dict[str, str]]:
    """Pool-table rows (``id``, ``cg`` with lattice and beads, optional ``labels``) as training examples;
    returns the examples and ``id -> why`` for rows left out."""
    out, skipped = [], {}
    for row in rows:
        cg = row.get("cg")
        if not cg or not cg.get("beads"):
            skipped[row.get("id", "?")] = "no CG view"
            continue
        if len(cg["beads"]) > MAX_BEADS:
            skipped[row["id"]] = f"{len(cg['beads'])} beads (the model handles up to {MAX_BEADS})"
            continue
        try:
            emb = np.stack([vector(b["bb_id"]) for b in cg["beads"]])
        except KeyError as exc:
            skipped[row["id"]] = f"building block without an embedding: {exc}"
            continue
        y = (row.get("labels") or {}).get(label)
        out.append(CGExample(row["id"], np.array(cg["lattice"], float),
                             np.array([b["frac_coords"] for b in cg["beads"]], float), emb,
                             float(y) if y is not None and math.isfinite(y) else math.nan))
    return out, skipped


def row_units(rows: Iterable[Mapping[str, Any]]):
    """The blocks beyond pormake's that the rows' CG views name (real MOFs' units), as a ``UnitLibrary``."""
    from discovery.library.units import UnitLibrary, block_from_row

    library = UnitLibrary()
    for row in rows:
        library.add(block_from_row(i, u) for i, u in (row.get("units") or {}).items())
    return library


def fit(model: CGDiffusion, examples: Sequence[CGExample], steps: int, batch_size: int = 32, lr: float = 1e-3,
        seed: int = 0, progress: bool = False, desc: str = "generator") -> list[float]:
    """``steps`` Adam steps on random batches (cosine-decayed learning rate); returns the loss per step."""
    if not examples:
        raise DiscoveryError("no training examples for the generator")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps), eta_min=lr * 0.05)
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc=desc, disable=not progress, unit="step"):
        pick = rng.choice(len(examples), size=min(batch_size, len(examples)), replace=False)
        terms = model.loss(collate([examples[i] for i in pick], model.normaliser))
        opt.zero_grad()
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        losses.append(float(terms["total"].detach()))
    model.eval()
    return losses


def train_model(examples: Sequence[CGExample], emb_table: np.ndarray, settings: ModelSettings | None = None,
                steps: int = 3000, seed: int = 0, progress: bool = False) -> tuple[CGDiffusion, dict[str, Any]]:
    """A new model trained from scratch; returns it with a summary (parameters, CPU seconds, final loss)."""
    settings = settings or ModelSettings(emb_dim=emb_table.shape[1])
    torch.manual_seed(seed)
    model = CGDiffusion(settings, Normaliser.fit(list(examples), emb_table))
    t0 = time.process_time()
    losses = fit(model, examples, steps, seed=seed, progress=progress)
    return model, {"parameters": sum(p.numel() for p in model.parameters()), "steps": steps,
                   "n_train": len(examples), "train_cpu_s": round(time.process_time() - t0, 1),
                   "loss_first_100": float(np.mean(losses[:100])), "loss_last_100": float(np.mean(losses[-100:]))}


def save_model(model: CGDiffusion, path: str | Path, meta: Mapping[str, Any] | None = None) -> None:
    """``model.pt`` (a state dict: no pickled code) and ``model.json`` (settings, normaliser, ``meta``)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path / "model.pt")
    (path / "model.json").write_text(json.dumps({"settings": asdict(model.settings),
                                                 "normaliser": asdict(model.normaliser), "meta": dict(meta or {})},
                                                indent=1))


def load_model(path: str | Path) -> tuple[CGDiffusion, dict[str, Any]]:
    path = Path(path)
    if not (path / "model.json").exists():
        raise DiscoveryError(f"{path} holds no generator model (model.json missing): run `discovery train generator`")
    try:
        info = json.loads((path / "model.json").read_text())
        model = CGDiffusion(ModelSettings(**info["settings"]), Normaliser(**info["normaliser"]))
        model.load_state_dict(torch.load(path / "model.pt", weights_only=True))
    except (KeyError, TypeError, ValueError, OSError, RuntimeError) as exc:
        raise DiscoveryError(f"{path}: an incomplete or damaged generator model ({type(exc).__name__}: {exc}); "
                             "train it again with `discovery train generator`") from exc
    model.eval()
    return model, info["meta"]
