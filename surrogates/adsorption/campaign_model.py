"""The surrogates as a campaign uses them: the adsorption ensemble (graphs cached per candidate, versions
fitted on the results so far, each warm-started from the last, saved per version) and, when transport is
an objective, the CG dynamics scorer (``transport_campaign``); handed to the planner as one BoTorch model
over the candidates, with outputs ``targets``.

It implements ``discovery.campaign.contracts.Surrogate``: ``add(records)`` (candidate records with ``cg`` and
``descriptors``), ``fit(version, ids, y)``, ``botorch_inputs(pool, observed, known)`` -> ``(model, X_pool,
X_observed)``, ``predict(ids)``. ``from_config`` builds the one a campaign config names.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from discovery.campaign.contracts import Surrogate
from discovery.config import CampaignConfig
from discovery.errors import DiscoveryError
from discovery.structures.mof import CGView

from surrogates.adsorption.botorch_model import DTYPE, TableEnsembleModel, fit_gp, gp_features, gp_prediction
from surrogates.adsorption.ensemble import DeepEnsemble, EnsembleConfig
from surrogates.adsorption.graphs import GraphError, cg_graph
from surrogates.transport.scorer import TARGET as TRANSPORT
from surrogates.transport.scorer import TransportScorer

KINDS = ("ensemble", "gp")


class CampaignSurrogate(Surrogate):
    def __init__(self, config: EnsembleConfig | None = None, kind: str = "ensemble",
                 model_dir: str | Path | None = None, transport: TransportScorer | None = None) -> None:
        if kind not in KINDS:
            raise DiscoveryError(f"surrogate kind {kind!r} unknown; choose from {', '.join(KINDS)}")
        if transport is not None and kind != "ensemble":
            raise DiscoveryError("the transport objective needs surrogate kind 'ensemble'")
        self.config, self.kind, self.transport = config or EnsembleConfig(), kind, transport
        # the adsorption ensemble's outputs, then the transport model's
        self.targets = (*self.config.targets, *((TRANSPORT,) if transport else ()))
        self.model_dir = Path(model_dir) if model_dir else None
        self.graphs: dict[str, Any] = {}
        self.model: DeepEnsemble | None = None
        self.version: int | None = None
        self._gp = None  # kind "gp": the GP of the last selection, on the ensemble's features

    def add(self, records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """Build the graphs of new valid candidates; returns ``id -> why`` for those that cannot be scored."""
        problems = {}
        for r in records:
            if r["id"] in self.graphs or r.get("status") != "valid":
                continue
            try:
                cg = CGView.from_dict(r["cg"]) if r.get("cg") else None
                self.graphs[r["id"]] = cg_graph(cg, r["descriptors"], r["id"], self.config.graph, r.get("units"))
            except (GraphError, KeyError) as exc:
                problems[r["id"]] = f"cannot be scored: {exc}"
        if self.transport is not None:
            problems.update(self.transport.add([r for r in records if r["id"] not in problems]))
        return problems

    def fit(self, version: int, ids: Sequence[str], y: np.ndarray) -> dict[str, Any]:
        """Version ``version`` trained on ``ids`` (warm-started from the current one), saved when the
        surrogate has a model directory."""
        t0 = time.monotonic()
        config = replace(self.config, seed=self.config.seed * 1000 + version)
        y = np.asarray(y, float)[:, : len(self.config.targets)]  # the transport model is not refitted here
        self.model = DeepEnsemble.fit(self._graphs(ids), y, config, warm_start=self.model)
        self.version = version
        info = {"version": version, "n_train": len(ids), "train_s": round(time.monotonic() - t0, 2),
                "train_cpu_s": round(self.model.info["train_cpu_s"], 2), "calibration_scale": self.model.scale.tolist()}
        if self.model_dir:
            info["path"] = str(self.model.save(self.model_dir / f"v{version}", extra={"campaign_version": version}))
        return info

    def load(self, version: int) -> None:
        """Continue from a saved version (a resumed campaign): later versions warm-start from it."""
        if not self.model_dir or not (self.model_dir / f"v{version}").exists():
            raise DiscoveryError(f"surrogate version {version} was not saved under {self.model_dir}")
        self.model, self.version = DeepEnsemble.load(self.model_dir / f"v{version}"), version

    def predict(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation, ``n x m``: the calibrated ensemble's, or the GP's last fit."""
        if self.kind == "gp" and self._gp is not None:
            return gp_prediction(self._gp, gp_features(self._require(), self._graphs(ids)))
        pred = self._require().predict(self._graphs(ids))
        if self.transport is None:
            return pred.mean, pred.std
        mean, std = self.transport.predict(ids)
        return np.column_stack([pred.mean, mean]), np.column_stack([pred.std, std])

    def botorch_inputs(self, pool: Sequence[str], observed: Sequence[str], known: np.ndarray | None = None,
                       pinned: np.ndarray | None = None) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """A BoTorch model over ``pool + observed`` and its inputs for each. ``known`` (targets of
        ``observed``) pins the ensemble's rows to the measured values, or trains the GP; ``pinned`` (a funnel's
        screened pool rows, NaN where not measured) pins those entries of the pool's rows."""
        graphs = self._graphs([*pool, *observed])
        model = self._require()
        if self.kind == "gp":
            if pinned is not None:
                raise DiscoveryError("surrogate kind 'gp' cannot pin a funnel's screened values; use 'ensemble'")
            X = gp_features(model, graphs)
            self._gp = fit_gp(X[len(pool):], torch.from_numpy(np.array(known, float)), domain=X)
            return self._gp, X[: len(pool)], X[len(pool):]
        values = model.predict(graphs).members
        if self.transport is not None:
            draws = self.transport.members([*pool, *observed], len(values), seed=self.version or 0)
            values = np.concatenate([values, draws[..., None]], axis=-1)
        values = values.copy()
        # every member holds a measured value: the posterior there is the measurement (a promoted MOF's
        # adsorption is known from its screen; only its transport is still uncertain)
        for rows, measured in ((slice(len(pool), None), known), (slice(0, len(pool)), pinned)):
            if measured is not None:
                measured = np.asarray(measured, float)
                block = values[:, rows]
                values[:, rows] = np.where(np.isfinite(measured), measured, block)
        X = torch.arange(len(graphs), dtype=DTYPE).unsqueeze(-1)
        return TableEnsembleModel(torch.from_numpy(values)), X[: len(pool)], X[len(pool):]

    def _graphs(self, ids: Sequence[str]) -> list:
        missing = [i for i in ids if i not in self.graphs]
        if missing:
            raise DiscoveryError(f"no graph for {len(missing)} candidate(s), e.g. {missing[0]}: add() them first")
        return [self.graphs[i] for i in ids]

    def _require(self) -> DeepEnsemble:
        if self.model is None:
            raise DiscoveryError("the surrogate has not been fitted yet")
        return self.model


def from_config(config: CampaignConfig, model_dir: str | Path | None = None) -> CampaignSurrogate:
    """The surrogate a campaign config names (``surrogate.kind``), with the transport scorer when transport
    is an objective. One thread: the oracle workers have the cores, and single-threaded training is
    reproducible (a resumed campaign refits the same versions)."""
    torch.set_num_threads(1)
    s = config.surrogate
    ensemble = EnsembleConfig(members=s.members, epochs=s.epochs, seed=config.seed)
    transport = None
    if config.uses_transport:
        transport = TransportScorer(s.transport_model, simulated_ps=s.transport_ps, seed=config.seed)
    return CampaignSurrogate(ensemble, kind=s.kind, model_dir=model_dir, transport=transport)
