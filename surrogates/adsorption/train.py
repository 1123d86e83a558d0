"""Train the adsorption surrogate on a labelled pool, and score structures with a saved one."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from discovery.errors import DiscoveryError
from discovery.models import resolve_model, write_fingerprint
from discovery.structures.descriptors import probe_descriptors
from discovery.structures.mof import MOF, load_structure
from discovery.targets import KH_CO2, KH_N2
from surrogates.adsorption.data import dataset_geometry, load_pool
from surrogates.adsorption.ensemble import DeepEnsemble, EnsembleConfig
from surrogates.adsorption.graphs import GraphError, cg_graph


def train_surrogate(source: str | Path | None, out: str | Path, config: EnsembleConfig | None = None,
                    charges: str = "none", progress: bool = True) -> dict[str, Any]:
    """Fit the ensemble on every labelled MOF of ``source`` and save it (weights, config, data version)."""
    config = config or EnsembleConfig()
    pool = load_pool(source, charges=charges, targets=config.targets, settings=config.graph, progress=progress)
    model = DeepEnsemble.fit(pool.graphs, pool.y, config, progress=progress)
    provenance = {"data_version": pool.data_version, "source": _source_name(source),
                  "charges": charges, "n_labelled": len(pool), "n_skipped": len(pool.skipped)}
    model.save(out, extra=provenance)
    write_fingerprint(out, fingerprint(model))
    return {"model": str(out), **provenance, "n_train": model.info["n_train"], "n_val": model.info["n_val"],
            "train_s": round(model.info["train_s"], 1), "calibration_scale": model.scale.tolist(),
            "targets": list(config.targets)}


def _source_name(source) -> str:
    """What a model was trained on: committed tables by name, anything else by its path."""
    from discovery.pool import committed_name

    if source is None:
        return "committed pool table"
    parts = source if isinstance(source, (list, tuple)) else [source]
    return " + ".join(f"committed {committed_name(p)} pool table" if committed_name(p) else str(p) for p in parts)


def structure_descriptors(path: Path, mof) -> dict[str, Any]:
    """Probe energies and Zeo++ geometry; the geometry from the dataset the structure belongs to
    (``../results.jsonl``) when there is one, computed otherwise (a fraction of a second)."""
    return {**structure_geometry(path, mof), **probe_descriptors(mof.structure).to_dict()}


def structure_geometry(path: Path, mof) -> dict[str, Any]:
    dataset = path.parent.parent
    if path.parent.name == "structures" and (dataset / "results.jsonl").exists():
        known = _dataset_geometry(str(dataset.resolve()))
        if mof.id in known:
            return known[mof.id]
    from discovery.oracle.geometry.zeo import compute_geometry

    return compute_geometry(mof.structure, name=mof.id).to_dict()


@lru_cache(maxsize=4)
def _dataset_geometry(dataset: str) -> dict[str, dict[str, Any]]:
    return dataset_geometry(dataset)


def fingerprint(model: DeepEnsemble) -> dict[str, Any]:
    """The calibrated predictions on the first 8 MOFs of each committed pool table (design space, real):
    recorded when a model is trained (``fingerprint.json``), recomputed by the shipped-model test. The
    design space's other labellings hold the same MOFs, so they add nothing here."""
    from discovery.pool import POOLS

    tables = [POOLS[name] for name in ("design", "core") if POOLS[name].exists()]
    pool = load_pool(tables, targets=model.config.targets, settings=model.config.graph, limit=8)
    pred = model.predict(pool.graphs)
    return {"ids": pool.ids, "mean": np.round(pred.mean, 6).tolist(), "std": np.round(pred.std, 6).tolist()}


def with_cg_view(mof: MOF) -> MOF:
    """``mof`` with a CG view: its own, or its framework's decomposition into units (a real MOF's CIF)."""
    if mof.cg is not None:
        return mof
    from discovery.library.decompose import decompose, decomposed_mof

    return decomposed_mof(mof, decompose(mof.structure, mof.id, topology=False))


def predict_structures(model_dir: str | Path, paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Calibrated mean and standard deviation of every target for each structure by the model in
    ``model_dir`` (``default``: the shipped one). A record with a CG view is read as it is; a CIF (or a record
    without one) is cut into units first. A structure that cannot be scored gets an ``error`` naming the
    problem, the others go on."""
    model = DeepEnsemble.load(resolve_model(model_dir, "surrogate"))
    rows, graphs = [], []
    for path in map(Path, paths):
        try:
            mof = with_cg_view(load_structure(path))
            graphs.append(cg_graph(mof.cg, structure_descriptors(path, mof), mof.id, model.config.graph, mof.units))
            rows.append({"file": str(path), "structure": mof.id})
        except (DiscoveryError, GraphError) as exc:
            rows.append({"file": str(path), "error": str(exc)})
    pred = model.predict(graphs) if graphs else None
    scored = iter(range(len(graphs)))
    for row in rows:
        if "error" in row:
            continue
        i = next(scored)
        row.update({t: {"mean": float(pred.mean[i, j]), "std": float(pred.std[i, j])}
                    for j, t in enumerate(model.config.targets)})
        if {KH_CO2, KH_N2} <= set(model.config.targets):
            members = pred.members[:, i]
            j, k = model.config.targets.index(KH_CO2), model.config.targets.index(KH_N2)
            sel = members[:, j] - members[:, k]
            row["log10_selectivity"] = {"mean": float(np.mean(sel)), "std": float(np.std(sel))}
        row["model"] = {"path": str(model_dir), "data_version": model.meta.get("data_version")}
    return rows
