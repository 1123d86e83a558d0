"""The transport surrogate as a campaign uses it: log10 D(CO2) of each candidate from CG dynamics rollouts,
computed once per candidate, as a Gaussian (mean, std) the planner samples like an ensemble member.

The model is trained on MD trajectories beforehand (``discovery train transport``) and not refitted during
a campaign; the MD oracle's measurements of the selected MOFs replace the predictions in the planner.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import norm

from discovery.errors import DiscoveryError
from discovery.structures.mof import MOF

TARGET = "log10_d_co2"  # discovery.oracle.core.TARGETS: log10 of the MD oracle's D(CO2) in m^2/s


class TransportScorer:
    def __init__(self, model_dir: str | Path, simulated_ps: float = 1000.0, n_guests: int = 10,
                 seed: int = 0) -> None:
        from surrogates.transport.dynamics import load_model

        if not (Path(model_dir) / "model.json").exists():
            raise DiscoveryError(
                f"no transport model at {model_dir}: the transport objective needs one. Build MD trajectories "
                "(`discovery dataset trajectories DATASET --out DIR --charges none`, resumable) and train it "
                f"(`discovery train transport --data DIR --out {model_dir}`); docs/transport.md")
        self.model = load_model(model_dir)
        self.simulated_ps, self.n_guests, self.seed = simulated_ps, n_guests, seed
        self.scores: dict[str, tuple[float, float]] = {}  # id -> (log10 D, std)

    def add(self, records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """Score new valid candidates (records with ``mof_json``); ``id -> why`` for those that cannot be."""
        from surrogates.transport.predict import predict_transport

        problems = {}
        for r in records:
            if r["id"] in self.scores or r.get("status") != "valid":
                continue
            if not r.get("mof_json"):
                problems[r["id"]] = "transport cannot be scored: the candidate carries no structure"
                continue
            try:
                p = predict_transport(self.model, MOF.from_json(r["mof_json"]), n_guests=self.n_guests,
                                      simulated_ps=self.simulated_ps, seed=self.seed)
            except Exception as exc:  # noqa: BLE001 - one bad candidate must not take the surrogate agent down
                problems[r["id"]] = f"transport cannot be scored: {type(exc).__name__}: {exc}"
                continue
            self.scores[r["id"]] = (p.log10_d, p.log10_std)
        return problems

    def predict(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        missing = [i for i in ids if i not in self.scores]
        if missing:
            raise DiscoveryError(f"no transport score for {len(missing)} candidate(s), e.g. {missing[0]}")
        values = np.array([self.scores[i] for i in ids], float).reshape(-1, 2)
        return values[:, 0], values[:, 1]

    def members(self, ids: Sequence[str], s: int, seed: int = 0) -> np.ndarray:
        """``s x n`` draws standing in for ensemble members: the s quantiles of each candidate's Gaussian
        (mean and spread kept exactly), in an order shuffled per candidate, so that they are not tied to
        the adsorption members they sit beside."""
        mean, std = self.predict(ids)
        z = norm.ppf((np.arange(s) + 0.5) / s)
        z = z / math.sqrt(np.mean(z ** 2)) if s > 1 else z  # unit variance over the s quantiles
        rng = np.random.default_rng(seed)
        order = np.argsort(rng.random((s, len(ids))), axis=0)
        return mean[None, :] + std[None, :] * z[order]
