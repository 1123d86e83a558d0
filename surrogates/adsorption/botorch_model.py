"""The surrogates as BoTorch models, so that every BoTorch acquisition function works with them unchanged.

Candidates are graphs, not vectors, so the deep ensemble is exposed over a table: ``X[..., 0]`` is a row
index into the calibrated member predictions of a fixed list of structures (the campaign's known MOFs).
Its posterior is BoTorch's ``EnsemblePosterior``: each Monte Carlo sample is one calibrated member, jointly
over the q points of a batch, so a candidate drawn twice (or drawn while pending) adds nothing: the
property batch selection with pending points relies on. Rows whose oracle value is known are pinned to
it in every member.

The second choice is a GPyTorch Gaussian process (``SingleTaskGP``) on the ensemble's learned
representation joined with the Zeo++ descriptors; its ``X`` rows are those feature vectors.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.ensemble import EnsembleModel
from botorch.models.transforms import Normalize, Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from surrogates.adsorption.ensemble import DeepEnsemble

DTYPE = torch.float64  # BoTorch's numerics expect double precision


class TableEnsembleModel(EnsembleModel):
    """Ensemble posterior over rows of a prediction table ``values``: ``s x n x m``.

    ``forward``: ``batch_shape x q x 1`` row indices -> ``batch_shape x s x q x m``."""

    def __init__(self, values: Tensor) -> None:
        super().__init__()
        if values.dim() != 3:
            raise ValueError(f"values must be s x n x m, got shape {tuple(values.shape)}")
        self.values = values.to(DTYPE)
        self._num_outputs = values.shape[-1]

    def forward(self, X: Tensor) -> Tensor:
        # batch_shape x q. Clamped: where every baseline point is infeasible, BoTorch bounds the objective by
        # evaluating the model at random points of a box 10 % wider than the baseline's inputs
        # (``_estimate_objective_lower_bound``), i.e. at indices up to past either end of the table
        rows = X[..., 0].round().long().clamp(0, self.values.shape[1] - 1)
        return self.values[:, rows].movedim(0, -3)


def ensemble_model(ensemble: DeepEnsemble, graphs: Sequence,
                   known: Mapping[int, Sequence[float]] | None = None) -> tuple[TableEnsembleModel, Tensor]:
    """The BoTorch model over ``graphs`` and its inputs (``n x 1`` row indices). ``known`` maps a row to its
    measured targets, which replace the prediction in every member."""
    values = ensemble.predict(graphs).members.copy()
    for row, y in (known or {}).items():
        values[:, row] = np.asarray(y, dtype=float)
    X = torch.arange(len(graphs), dtype=DTYPE).unsqueeze(-1)
    return TableEnsembleModel(torch.from_numpy(values)), X


def gp_features(ensemble: DeepEnsemble, graphs: Sequence) -> Tensor:
    """GP inputs: the ensemble's learned representation joined with the scaled Zeo++ descriptors."""
    globals_ = np.concatenate([g.globals.numpy() for g in graphs]) if graphs else np.zeros((0, 0))
    return torch.from_numpy(np.concatenate([ensemble.embed(graphs), globals_], axis=1)).to(DTYPE)


def fit_gp(X: Tensor, Y: Tensor, domain: Tensor | None = None) -> SingleTaskGP:
    """An exact GP per output (Matern-5/2 with ARD, BoTorch's defaults) fitted by marginal likelihood.
    ``domain`` (``m x d``, e.g. every candidate's features) sets the input scaling, so that candidates
    outside the training points' range are scaled the same way."""
    span = X if domain is None else domain.to(X)
    low = span.min(0).values
    bounds = torch.stack([low, torch.maximum(span.max(0).values, low + 1e-6)]).to(DTYPE)  # constant columns
    gp = SingleTaskGP(X.to(DTYPE), Y.to(DTYPE), input_transform=Normalize(X.shape[-1], bounds=bounds),
                      outcome_transform=Standardize(Y.shape[-1]))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    return gp


def gp_prediction(gp: SingleTaskGP, X: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean and standard deviation (``n x m``), observation noise included (what a new label
    would show), in chunks."""
    means, stds = [], []
    with torch.no_grad():
        for chunk in torch.split(X.to(DTYPE), 2048):
            post = gp.posterior(chunk, observation_noise=True)
            means.append(post.mean.numpy())
            stds.append(post.variance.clamp_min(0).sqrt().numpy())
    return np.concatenate(means), np.concatenate(stds)
