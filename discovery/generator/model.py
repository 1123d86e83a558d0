"""The CG diffusion model (after MOFDiff, sized for a CPU): a latent ``z`` per MOF predicts the lattice, the
number of beads and the CO2 adsorption (the property head that steers sampling); a periodic equivariant
denoiser, conditioned on ``z``, turns noise into bead positions and building-block embeddings (edits: both
from partial noise; de novo: the embeddings from pure noise on the beads of a net, ``sample_blocks``).

Training examples are :class:`CGExample` records (lattice, fractional bead positions, embedding per bead,
optional label). ``z`` comes from an encoder over the clean CG structure during training (a VAE with a small
KL weight) and from the prior at sampling time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from discovery.generator.denoiser import CGNetwork, lattice_invariants, periodic_knn
from discovery.generator.diffusion import Schedule, clean_estimate, ddpm_posterior, noise_embeddings, ve_posterior_step

MAX_BEADS = 48


@dataclass(frozen=True)
class CGExample:
    """One CG crystal: ``lattice`` 3 x 3 (rows, A), ``frac`` n x 3, ``embeddings`` n x D, ``label`` or NaN."""

    id: str
    lattice: np.ndarray
    frac: np.ndarray
    embeddings: np.ndarray
    label: float = math.nan


@dataclass(frozen=True)
class ModelSettings:
    emb_dim: int = 32
    latent_dim: int = 16
    hidden: int = 96
    layers: int = 3
    k: int = 12
    steps: int = 100
    kl_weight: float = 1e-3

    def schedule(self) -> Schedule:
        return Schedule(steps=self.steps)


@dataclass
class Normaliser:
    """Standardisation of the lattice invariants, embeddings and label, fitted on the training set."""

    lat_mean: list = field(default_factory=lambda: [0.0] * 6)
    lat_std: list = field(default_factory=lambda: [1.0] * 6)
    emb_mean: list = field(default_factory=list)
    emb_std: list = field(default_factory=list)
    y_mean: float = 0.0
    y_std: float = 1.0

    @classmethod
    def fit(cls, examples: list[CGExample], emb_table: np.ndarray) -> "Normaliser":
        inv = lattice_invariants(torch.tensor(np.stack([e.lattice for e in examples]))).numpy()
        y = np.array([e.label for e in examples])
        y = y[np.isfinite(y)]
        return cls(inv.mean(0).tolist(), (inv.std(0) + 1e-3).tolist(), emb_table.mean(0).tolist(),
                   (emb_table.std(0) + 1e-6).tolist(), float(y.mean()) if len(y) else 0.0,
                   float(y.std() + 1e-6) if len(y) > 1 else 1.0)


@dataclass(frozen=True)
class Guide:
    """Guidance of the building-block noise estimate by a reference model (the generator before it was
    fine-tuned): eps = eps_ref + weight * (eps - eps_ref), which amplifies what fine-tuning changed, as
    classifier-free guidance amplifies a condition. Weight 1 is the fine-tuned model alone."""

    model: "CGDiffusion"
    weight: float


class CGDiffusion(nn.Module):
    def __init__(self, settings: ModelSettings, normaliser: Normaliser) -> None:
        super().__init__()
        s = self.settings = settings
        self.normaliser = normaliser
        self.encoder = CGNetwork(s.emb_dim, s.hidden, max(2, s.layers // 2), s.k)
        self.to_latent = nn.Linear(s.hidden, 2 * s.latent_dim)
        self.lattice_head = _head(s.latent_dim, s.hidden, 6)
        self.count_head = _head(s.latent_dim, s.hidden, MAX_BEADS + 1)
        self.property_head = _head(s.latent_dim, s.hidden, 1)
        self.denoiser = CGNetwork(s.emb_dim + 16 + s.latent_dim, s.hidden, s.layers, s.k)
        self.eps_head = nn.Linear(s.hidden, s.emb_dim)
        sched = s.schedule()
        self.register_buffer("sigmas", sched.sigmas().float())
        self.register_buffer("alpha_bars", sched.alpha_bars().float())

    # ---- pieces --------------------------------------------------------------------------------------
    def encode(self, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
        h, _ = self.encoder(b["emb"], b["pos"], b["batch"], b["lattice"])
        pooled = torch.zeros(len(b["lattice"]), h.shape[1]).index_add_(0, b["batch"], h) / b["counts"][:, None]
        mu, logvar = self.to_latent(pooled).chunk(2, -1)
        return mu, logvar.clamp(-8, 4)

    def denoise(self, emb_t: torch.Tensor, pos_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor,
                batch: torch.Tensor, lattice: torch.Tensor,
                edges: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per bead: the embedding noise estimate (n x D) and the displacement to the clean positions in
        units of the noise level (n x 3). ``edges``: the beads' neighbour list, when the caller keeps it."""
        x = torch.cat([emb_t, _time_features(t[batch], self.settings.steps), z[batch]], -1)
        h, vec = self.denoiser(x, pos_t, batch, lattice, edges)
        return self.eps_head(h), vec

    def predict_lattice(self, z: torch.Tensor) -> torch.Tensor:
        n = self.normaliser
        inv = self.lattice_head(z) * torch.tensor(n.lat_std) + torch.tensor(n.lat_mean)
        return lattice_from_invariants(inv)

    def predict_property(self, z: torch.Tensor) -> torch.Tensor:
        return self.property_head(z)[:, 0] * self.normaliser.y_std + self.normaliser.y_mean

    # ---- training ------------------------------------------------------------------------------------
    def loss(self, b: dict) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(b)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        n = self.normaliser
        lat_target = (lattice_invariants(b["lattice"]) - torch.tensor(n.lat_mean)) / torch.tensor(n.lat_std)
        terms = {"lattice": F.mse_loss(self.lattice_head(z), lat_target),
                 "count": F.cross_entropy(self.count_head(z), b["counts"].long().clamp(max=MAX_BEADS)),
                 "kl": -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(-1).mean()}
        labelled = torch.isfinite(b["y"])
        terms["property"] = (F.mse_loss(self.property_head(z)[labelled, 0], (b["y"][labelled] - n.y_mean) / n.y_std)
                             if labelled.any() else torch.zeros(()))
        t = torch.randint(1, self.settings.steps + 1, (len(b["lattice"]),))
        pos_t, sigma = self._noise_positions(b, t)
        emb_t, eps = noise_embeddings(b["emb"], self.alpha_bars[t - 1][b["batch"]])
        eps_hat, vec = self.denoise(emb_t, pos_t, t, z, b["batch"], b["lattice"])
        target = _min_image(b["pos"] - pos_t, b["lattice"][b["batch"]]) / sigma[:, None]
        terms["positions"] = F.mse_loss(vec, target)
        terms["embeddings"] = F.mse_loss(eps_hat, eps)
        terms["total"] = (terms["positions"] + terms["embeddings"] + terms["lattice"] + 0.2 * terms["count"]
                          + terms["property"] + self.settings.kl_weight * terms["kl"])
        return terms

    def _noise_positions(self, b: dict, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = b["lattice"].det().abs().pow(1 / 3)  # per crystal: noise relative to the cell's size
        sigma = (self.sigmas[t - 1] * scale)[b["batch"]]
        pos_t = _wrap(b["pos"] + sigma[:, None] * torch.randn_like(b["pos"]), b["lattice"][b["batch"]])
        return pos_t, sigma

    # ---- sampling ------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_blocks(self, z: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, pos: torch.Tensor,
                      snap: Callable[[torch.Tensor], torch.Tensor], guide: Guide | None = None) -> torch.Tensor:
        """De novo on given bead positions (a net's embedding, ``templates``): building blocks denoised from
        pure noise, conditioned on ``z``, while the positions stay where they are. Returns the clean
        embeddings (standardised), snapped by ``snap``. Draws come from torch's global generator."""
        emb = torch.randn(len(batch), self.settings.emb_dim)
        _, emb = self._reverse(z, lattice, batch, pos, emb, self.settings.steps, snap, pos_start=1, guide=guide,
                               z_ref=z)
        return emb

    @torch.no_grad()
    def edit(self, examples: Sequence[CGExample], strength: float,
             snap: Callable[[torch.Tensor], torch.Tensor] | None = None,
             block_strength: float | None = None, guide: Guide | None = None) -> tuple[torch.Tensor, list[dict]]:
        """SDEdit (Meng et al., ICLR 2022): noise each example's bead positions to step ``strength * T`` and its
        building-block embeddings to step ``block_strength * T`` (default: ``strength``), and denoise them,
        conditioned on the example's own latent; each part stays as noised until the reverse run reaches its
        step. Low strength keeps the framework and swaps a few building blocks or moves beads; strength 1 is de
        novo generation in the example's cell. Returns the latents and the crystals (as ``sample``)."""
        b = collate(list(examples), self.normaliser)
        z, _ = self.encode(b)
        pos_start, emb_start = (max(1, min(self.settings.steps, round(s * self.settings.steps)))
                                for s in (strength, strength if block_strength is None else block_strength))
        pos, _ = self._noise_positions(b, torch.full((len(examples),), pos_start))
        emb, _ = noise_embeddings(b["emb"], self.alpha_bars[emb_start - 1].expand(len(b["batch"])))
        z_ref = guide.model.encode(b)[0] if guide is not None else None
        pos, emb = self._reverse(z, b["lattice"], b["batch"], pos, emb, max(pos_start, emb_start), snap,
                                 pos_start, emb_start, guide, z_ref)
        return z, self._split(b["lattice"], pos, emb, b["counts"].long())

    def _reverse(self, z, lattice, batch, pos, emb, start: int, snap, pos_start: int | None = None,
                 emb_start: int | None = None, guide: Guide | None = None,
                 z_ref: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral steps from ``start`` down to a clean sample; positions move from step ``pos_start`` down,
        embeddings from ``emb_start`` down (both default to ``start``); ``guide`` (with the reference model's
        latents ``z_ref``) steers the building blocks."""
        scale = lattice.det().abs().pow(1 / 3)[batch]
        pos_start, emb_start = pos_start or start, emb_start or start
        edges = None
        for step in range(start, 0, -1):
            t = torch.full((len(z),), step)
            if step >= pos_start:  # the beads move only after step pos_start: their neighbours stay until then
                edges = edges or periodic_knn(pos, batch, lattice, self.denoiser.k)
            else:
                edges = None
            eps_hat, vec = self.denoise(emb, pos, t, z, batch, lattice, edges)
            if guide is not None:
                eps_ref, _ = guide.model.denoise(emb, pos, t, z_ref, batch, lattice,
                                                 edges if guide.model.denoiser.k == self.denoiser.k else None)
                eps_hat = eps_ref + guide.weight * (eps_hat - eps_ref)
            sig = self.sigmas[step - 1] * scale
            a_t = self.alpha_bars[step - 1].expand(len(batch))
            e0 = clean_estimate(emb, eps_hat, a_t).clamp(-4, 4)  # embeddings are standardised
            if snap is not None:
                e0 = snap(e0)
            if step > 1:
                prev = self.sigmas[step - 2] * scale
                if step <= pos_start:
                    pos = _wrap(ve_posterior_step(pos, vec * sig[:, None], sig, prev), lattice[batch])
                if step <= emb_start:
                    emb = ddpm_posterior(emb, e0, a_t, self.alpha_bars[step - 2].expand(len(batch)))
            else:
                pos = _wrap(pos + vec * sig[:, None], lattice[batch])
                emb = e0
        return pos, emb

    def standardise(self, emb: np.ndarray) -> torch.Tensor:
        n = self.normaliser
        return torch.tensor((emb - np.array(n.emb_mean)) / np.array(n.emb_std), dtype=torch.float32)

    def _split(self, lattice, pos, emb, counts) -> list[dict[str, np.ndarray]]:
        n = self.normaliser
        emb = emb * torch.tensor(n.emb_std) + torch.tensor(n.emb_mean)
        out, start = [], 0
        for g, c in enumerate(counts.tolist()):
            lat = lattice[g].double().numpy()
            frac = np.linalg.solve(lat.T, pos[start:start + c].double().numpy().T).T % 1.0
            out.append({"lattice": lat, "frac": frac, "embeddings": emb[start:start + c].double().numpy()})
            start += c
        return out


def collate(examples: list[CGExample], normaliser: Normaliser) -> dict[str, torch.Tensor]:
    """A batch of crystals as flat tensors (beads concatenated, ``batch`` gives each bead's crystal)."""
    lattice = torch.tensor(np.stack([e.lattice for e in examples]), dtype=torch.float32)
    counts = torch.tensor([len(e.frac) for e in examples])
    batch = torch.repeat_interleave(torch.arange(len(examples)), counts)
    frac = torch.tensor(np.concatenate([e.frac for e in examples]), dtype=torch.float32)
    emb = np.concatenate([e.embeddings for e in examples])
    emb = (emb - np.array(normaliser.emb_mean)) / np.array(normaliser.emb_std)
    return {"lattice": lattice, "counts": counts.float(), "batch": batch,
            "pos": torch.einsum("ni,nij->nj", frac % 1.0, lattice[batch]),
            "emb": torch.tensor(emb, dtype=torch.float32),
            "y": torch.tensor([e.label for e in examples], dtype=torch.float32)}


def lattice_from_invariants(inv: torch.Tensor) -> torch.Tensor:
    """G x 6 (log lengths, cosines) -> G x 3 x 3 rows, a along x and b in the xy plane (the usual convention);
    cosines are clipped so that the cell stays non-degenerate."""
    a, b, c = inv[:, :3].exp().unbind(-1)
    ca, cb, cg = inv[:, 3:].clamp(-0.8, 0.8).unbind(-1)
    sg = (1 - cg ** 2).sqrt()
    cx = cb
    cy = (ca - cb * cg) / sg
    cz = (1 - cx ** 2 - cy ** 2).clamp(min=0.05).sqrt()
    zero = torch.zeros_like(a)
    return torch.stack([torch.stack([a, zero, zero], -1), torch.stack([b * cg, b * sg, zero], -1),
                        torch.stack([c * cx, c * cy, c * cz], -1)], 1)


def _head(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                         nn.Linear(hidden, n_out))


def _time_features(t: torch.Tensor, steps: int, n: int = 16) -> torch.Tensor:
    freqs = torch.exp(torch.arange(n // 2) * (-math.log(1000.0) / (n // 2)))
    angles = (t.float() / steps)[:, None] * 1000.0 * freqs
    return torch.cat([angles.sin(), angles.cos()], -1)


def _wrap(pos: torch.Tensor, lattice: torch.Tensor) -> torch.Tensor:
    frac = torch.linalg.solve(lattice.transpose(1, 2), pos[..., None])[..., 0] % 1.0
    return torch.einsum("ni,nij->nj", frac, lattice)


def _min_image(disp: torch.Tensor, lattice: torch.Tensor) -> torch.Tensor:
    frac = torch.linalg.solve(lattice.transpose(1, 2), disp[..., None])[..., 0]
    return torch.einsum("ni,nij->nj", frac - frac.round(), lattice)
