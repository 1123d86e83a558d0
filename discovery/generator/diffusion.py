"""Diffusion machinery, independent of crystals (the periodic pieces live in ``denoiser.py``).

Two processes share one discrete time grid ``t = 1..T``:

- positions: variance-exploding (VE) Gaussian noise with geometric ``sigma_t``; the caller wraps the
  noised positions into its cell, and the network predicts the displacement back to the clean positions
  (in units of ``sigma_t``), which stays well defined on a torus where the added noise itself does not;
- bead embeddings: variance-preserving (DDPM) noise with the cosine schedule; the network predicts the noise.

Sampling uses each process's posterior given the network's estimate of the clean sample (ancestral steps).
Embeddings stand for a finite set of building blocks, so the sampler may snap each clean estimate to the
nearest real one before the step (the "clamping" of Diffusion-LM, Li et al. 2022): beads commit to real
blocks early, and the blocks of one crystal stay consistent with each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Schedule:
    """``T`` steps; ``sigma_min``/``sigma_max`` are position noise levels relative to the cell's length scale."""

    steps: int = 100
    sigma_min: float = 0.002
    sigma_max: float = 0.7  # wrapped, this is close to uniform over the cell: the prior

    def sigmas(self) -> torch.Tensor:
        """``T`` position noise levels, ``sigmas()[t - 1]`` for step t (increasing)."""
        return torch.logspace(math.log10(self.sigma_min), math.log10(self.sigma_max), self.steps, dtype=torch.float64)

    def alpha_bars(self) -> torch.Tensor:
        """``T`` cumulative signal fractions of the embedding process (cosine schedule, decreasing)."""
        s = 0.008
        grid = torch.linspace(0, 1, self.steps + 1, dtype=torch.float64)
        f = torch.cos((grid + s) / (1 + s) * math.pi / 2) ** 2
        return (f[1:] / f[0]).clamp(1e-5, 1.0)


def noise_embeddings(e0: torch.Tensor, alpha_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``e_t = sqrt(a) e0 + sqrt(1 - a) eps`` for per-row ``alpha_bar`` (n); returns (e_t, eps)."""
    eps = torch.randn_like(e0)
    a = alpha_bar.to(e0.dtype)[:, None]
    return a.sqrt() * e0 + (1 - a).sqrt() * eps, eps


def ve_posterior_step(x_t: torch.Tensor, to_clean: torch.Tensor, sigma_t: torch.Tensor,
                      sigma_prev: torch.Tensor) -> torch.Tensor:
    """One ancestral VE step from ``sigma_t`` to ``sigma_prev`` given the estimated displacement to the clean
    positions (n x 3); sigmas are per row (n). The caller wraps the result into the cell."""
    s2, p2 = sigma_t[:, None] ** 2, sigma_prev[:, None] ** 2
    mean = x_t + (1 - p2 / s2) * to_clean
    std = (p2 * (s2 - p2) / s2).clamp(min=0).sqrt()
    return mean + std * torch.randn_like(x_t)


def ddpm_posterior(e_t: torch.Tensor, e0: torch.Tensor, a_t: torch.Tensor, a_prev: torch.Tensor) -> torch.Tensor:
    """One ancestral DDPM step from ``e_t`` given an estimate of the clean embeddings ``e0`` (per-row
    cumulative signal fractions ``a_t`` and ``a_prev``)."""
    a_t, a_prev = a_t[:, None], a_prev[:, None]
    beta = 1 - a_t / a_prev
    mean = (a_prev.sqrt() * beta * e0 + (1 - beta).sqrt() * (1 - a_prev) * e_t) / (1 - a_t)
    var = beta * (1 - a_prev) / (1 - a_t)
    return mean + var.clamp(min=0).sqrt() * torch.randn_like(e_t)


def clean_estimate(e_t: torch.Tensor, eps_hat: torch.Tensor, a_t: torch.Tensor) -> torch.Tensor:
    """The embedding process's estimate of ``e0`` from the predicted noise."""
    return (e_t - (1 - a_t[:, None]).sqrt() * eps_hat) / a_t[:, None].sqrt()
