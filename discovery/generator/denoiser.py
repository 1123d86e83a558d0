"""The periodic, E(3)-equivariant network over CG beads: the denoiser and the latent encoder.

A batch is a set of crystals: ``pos`` (n x 3, Cartesian A), ``batch`` (n, crystal index), ``lattice``
(G x 3 x 3, rows are cell vectors). Edges join each bead to its ``k`` nearest periodic images of every bead
(neighbouring cells included), computed from positions wrapped into the cell, so that moving a bead by a
lattice vector changes nothing (periodic). Messages see only distances and the cell's lengths and angles
(invariant); the vector output is a sum of edge directions weighted by invariant messages, so rotating the
crystal rotates it (equivariant) and translating every bead leaves it unchanged.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

SHIFTS = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), dtype=torch.float32)  # 27 x 3


def periodic_knn(pos: torch.Tensor, batch: torch.Tensor, lattice: torch.Tensor,
                 k: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges (src, dst, vec) with ``vec = image of dst - src`` (A) to the ``k`` nearest images of other beads
    and of the bead itself in neighbouring cells. Cells narrower than the k-th neighbour distance see only
    the 26 neighbouring cells, which is enough for beads several Angstrom apart."""
    src, dst, vec = [], [], []
    offsets = torch.cumsum(torch.bincount(batch, minlength=len(lattice)), 0)
    start = 0
    for g, end in enumerate(offsets.tolist()):
        s, d, v = _crystal_knn(pos[start:end], lattice[g], k)
        src.append(s + start)
        dst.append(d + start)
        vec.append(v)
        start = end
    return torch.cat(src), torch.cat(dst), torch.cat(vec)


def _crystal_knn(pos: torch.Tensor, lattice: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    n = len(pos)
    frac = torch.linalg.solve(lattice.T, pos.T).T % 1.0  # wrapped: edges do not depend on the image given
    cart = frac @ lattice
    images = (frac[None] + SHIFTS.to(pos)[:, None]) @ lattice  # 27 x n x 3
    vec = images[None] - cart[:, None, None]  # n x 27 x n x 3
    dist = vec.norm(dim=-1)
    self_image = torch.zeros(n, 27, n, dtype=torch.bool, device=pos.device)
    self_image[torch.arange(n), 13, torch.arange(n)] = True  # shift (0, 0, 0) is index 13
    dist = dist.masked_fill(self_image, math.inf).reshape(n, -1)
    kk = min(k, 27 * n - 1)
    idx = dist.topk(kk, largest=False).indices  # n x kk
    src = torch.arange(n, device=pos.device).repeat_interleave(kk)
    dst = (idx % n).reshape(-1)
    return src, dst, vec.reshape(n, -1, 3).gather(1, idx[..., None].expand(-1, -1, 3)).reshape(-1, 3)


def lattice_invariants(lattice: torch.Tensor) -> torch.Tensor:
    """G x 6: log lengths and cosines of the angles (unchanged by rotating the cell)."""
    a, b, c = lattice[:, 0], lattice[:, 1], lattice[:, 2]
    lengths = torch.stack([a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)], -1)
    cos = torch.stack([(b * c).sum(-1) / (lengths[:, 1] * lengths[:, 2]),
                       (a * c).sum(-1) / (lengths[:, 0] * lengths[:, 2]),
                       (a * b).sum(-1) / (lengths[:, 0] * lengths[:, 1])], -1)
    return torch.cat([lengths.log(), cos], -1)


class GaussianRBF(nn.Module):
    def __init__(self, n: int = 32, cutoff: float = 24.0) -> None:
        super().__init__()
        self.register_buffer("centres", torch.linspace(0, cutoff, n))
        self.width = cutoff / n

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((d[:, None] - self.centres) / self.width) ** 2)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, n_out))


class EquivariantLayer(nn.Module):
    """Invariant message passing on distances (EGNN without coordinate updates)."""

    def __init__(self, hidden: int, n_rbf: int) -> None:
        super().__init__()
        self.message = _mlp(2 * hidden + n_rbf, hidden, hidden)
        self.update = _mlp(2 * hidden, hidden, hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, rbf: torch.Tensor,
                degree: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.message(torch.cat([h[src], h[dst], rbf], -1))
        agg = torch.zeros_like(h).index_add_(0, src, m) / degree[:, None]
        return self.norm(h + self.update(torch.cat([h, agg], -1))), m


class CGNetwork(nn.Module):
    """Bead features in (n x n_in) -> invariant bead features (n x hidden) and one equivariant vector per bead
    (n x 3, in units of the edge directions' weights)."""

    def __init__(self, n_in: int, hidden: int = 128, layers: int = 4, k: int = 12, n_rbf: int = 32,
                 cutoff: float = 24.0) -> None:
        super().__init__()
        self.k = k
        self.rbf = GaussianRBF(n_rbf, cutoff)
        self.embed = _mlp(n_in + 6, hidden, hidden)
        self.layers = nn.ModuleList(EquivariantLayer(hidden, n_rbf) for _ in range(layers))
        self.vector = _mlp(hidden, hidden, 1)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor, lattice: torch.Tensor,
                edges: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``edges``: ``periodic_knn(pos, batch, lattice, k)`` when the caller has it (beads that stay put)."""
        src, dst, vec = edges if edges is not None else periodic_knn(pos.detach(), batch, lattice, self.k)
        dist = vec.norm(dim=-1).clamp(min=1e-6)
        rbf = self.rbf(dist)
        degree = torch.bincount(src, minlength=len(pos)).clamp(min=1).to(pos)
        h = self.embed(torch.cat([x, lattice_invariants(lattice)[batch]], -1))
        for layer in self.layers:
            h, m = layer(h, src, dst, rbf, degree)
        weights = self.vector(m)  # messages of the last layer weight each edge direction
        out = torch.zeros_like(pos).index_add_(0, src, weights * vec / dist[:, None]) / degree[:, None]
        return h, out
