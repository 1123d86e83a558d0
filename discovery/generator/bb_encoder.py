"""The building-block (BB) encoder of ``embeddings``: a BB as a graph of its atoms (featurisation, with the
augmented views of contrastive training) and the small invariant graph network that maps a batch of such
graphs to raw vectors, with its auxiliary head. ``embeddings`` describes the design and trains it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from discovery.library.building_blocks import BuildingBlock

N_ELEMENTS = 119  # 0 is X, 1..118 the elements by atomic number
MASK_TYPE = N_ELEMENTS  # element index of a masked atom (augmentation only)
MAX_CP_CLASS = 12  # connection-point classes 0..12, the last meaning 12 or more
# auxiliary outputs: n_connection_points, arm_length_mean, arm_length_max, log n_atoms (regressed), has_metal
# (logit), then the logits of the connection-point classes
N_AUX = 5 + MAX_CP_CLASS + 1


# ---- configuration -------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of the encoder; saved with the weights."""

    dim: int = 32
    hidden: int = 64
    layers: int = 3
    n_rbf: int = 24
    # A: atom pairs closer than this are edges (bonds always are): bonded, 1-3 and most 1-4 pairs, so the
    # layers see bond angles and ring shapes; 5 A doubles the edges (and the training time)
    cutoff: float = 3.5
    centroid_max: float = 16.0  # A: range of the centroid-distance RBF (the library's arms reach 13 A)
    n_centroid_rbf: int = 16

    def to_dict(self) -> dict:
        return asdict(self)


# ---- graphs ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Graph:
    """One BB as arrays: ``z`` (n,), ``pos`` (n x 3), ``edges`` (2 x E, both directions), ``bonded`` (E,),
    ``cp`` (n,) connection-point mask, ``n_atoms`` real atoms."""

    z: np.ndarray
    pos: np.ndarray
    edges: np.ndarray
    bonded: np.ndarray
    cp: np.ndarray
    n_atoms: int


@dataclass(frozen=True)
class Batch:
    """Concatenated graphs as tensors. N atoms, E edges, G graphs."""

    z: Tensor  # (N,) long
    edge_index: Tensor  # (2, E) long
    edge_dist: Tensor  # (E,)
    bonded: Tensor  # (E,)
    centroid_dist: Tensor  # (N,)
    graph: Tensor  # (N,) long, graph of each atom
    counts: Tensor  # (G, 2): n_connection_points / 6, log1p(n_atoms) / 3
    n_graphs: int


def bb_graph(bb: BuildingBlock, cutoff: float) -> Graph:
    from ase.data import atomic_numbers

    z = np.array([0 if s == "X" else atomic_numbers[s] for s in bb.symbols], dtype=np.int64)
    pos = np.asarray(bb.positions, dtype=np.float64)
    n = len(z)
    adj = np.linalg.norm(pos[:, None] - pos[None], axis=-1) < cutoff
    bond = np.zeros((n, n), dtype=bool)
    b = np.asarray(bb.bonds, dtype=np.int64).reshape(-1, 2)
    bond[b[:, 0], b[:, 1]] = bond[b[:, 1], b[:, 0]] = True
    adj |= bond
    np.fill_diagonal(adj, False)
    i, j = np.nonzero(adj)
    cp = np.zeros(n, dtype=bool)
    cp[list(bb.connection_point_indices)] = True
    return Graph(z=z, pos=pos, edges=np.stack([j, i]), bonded=bond[i, j].astype(np.float32), cp=cp,
                  n_atoms=int((~cp).sum()))


def collate(graphs: Sequence[Graph], rng: np.random.Generator | None = None, noise: float = 0.0,
             mask_fraction: float = 0.0) -> Batch:
    """Batch of graphs; with ``rng``, an augmented view (position noise, masked elements)."""
    zs, edges, dists, bonded, cdists, gids, counts = [], [], [], [], [], [], []
    offset = 0
    for k, g in enumerate(graphs):
        pos, z = g.pos, g.z
        if rng is not None:
            if noise > 0:
                pos = pos + rng.normal(0.0, noise, pos.shape)
            if mask_fraction > 0:
                z = np.where((rng.random(len(z)) < mask_fraction) & ~g.cp, MASK_TYPE, z)
        centre = pos[g.cp].mean(axis=0) if g.cp.any() else pos.mean(axis=0)
        zs.append(z)
        edges.append(g.edges + offset)
        dists.append(np.linalg.norm(pos[g.edges[0]] - pos[g.edges[1]], axis=-1))
        bonded.append(g.bonded)
        cdists.append(np.linalg.norm(pos - centre, axis=-1))
        gids.append(np.full(len(z), k, dtype=np.int64))
        counts.append((g.cp.sum() / 6.0, math.log1p(g.n_atoms) / 3.0))
        offset += len(z)
    return Batch(
        z=torch.from_numpy(np.concatenate(zs)),
        edge_index=torch.from_numpy(np.concatenate(edges, axis=1)),
        edge_dist=torch.from_numpy(np.concatenate(dists)).float(),
        bonded=torch.from_numpy(np.concatenate(bonded)),
        centroid_dist=torch.from_numpy(np.concatenate(cdists)).float(),
        graph=torch.from_numpy(np.concatenate(gids)),
        counts=torch.tensor(counts, dtype=torch.float32),
        n_graphs=len(graphs),
    )


# ---- network --------------------------------------------------------------------------------------
class _RBF(nn.Module):
    def __init__(self, stop: float, n: int) -> None:
        super().__init__()
        self.register_buffer("offsets", torch.linspace(0.0, stop, n))
        self.coeff = -0.5 / (stop / (n - 1)) ** 2

    def forward(self, d: Tensor) -> Tensor:  # (E,) -> (E, n)
        # clamped: far tails would underflow to subnormal floats, which are ~50x slower on a CPU
        return torch.exp((self.coeff * (d[:, None] - self.offsets) ** 2).clamp(min=-20.0))


class _Interaction(nn.Module):
    """Residual continuous-filter convolution: x_i += MLP(sum_j W(e_ij) * x_j * envelope_ij)."""

    def __init__(self, hidden: int, n_edge: int) -> None:
        super().__init__()
        # one linear map of the distance RBF: a smooth filter, and cheap (edges outnumber atoms ~10:1)
        self.filter = nn.Linear(n_edge, hidden)
        self.lin = nn.Linear(hidden, hidden, bias=False)
        self.update = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, envelope: Tensor) -> Tensor:
        src, dst = edge_index
        msg = self.lin(x)[src] * self.filter(edge_attr) * envelope[:, None]
        agg = torch.zeros_like(x).index_add_(0, dst, msg) / 10.0  # ~5-15 neighbours within 3.5 A
        return self.norm(x + self.update(agg))


class Encoder(nn.Module):
    """``Batch`` -> (G x dim) raw vectors; ``aux`` maps normalised vectors to (G x N_AUX) predictions."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        c = self.config = config
        self.embed = nn.Embedding(N_ELEMENTS + 1, c.hidden)
        self.centroid_rbf = _RBF(c.centroid_max, c.n_centroid_rbf)
        self.centroid_lin = nn.Linear(c.n_centroid_rbf, c.hidden)
        self.edge_rbf = _RBF(c.cutoff, c.n_rbf)
        self.layers = nn.ModuleList(_Interaction(c.hidden, c.n_rbf + 1) for _ in range(c.layers))
        self.count_lin = nn.Linear(2, c.hidden)
        self.readout = nn.Sequential(nn.Linear(3 * c.hidden, c.hidden), nn.SiLU(), nn.Linear(c.hidden, c.dim))
        self.aux = nn.Sequential(nn.Linear(c.dim, c.hidden), nn.SiLU(), nn.Linear(c.hidden, N_AUX))

    def forward(self, b: Batch) -> Tensor:
        c = self.config
        x = self.embed(b.z) + self.centroid_lin(self.centroid_rbf(b.centroid_dist.clamp(max=c.centroid_max)))
        d = b.edge_dist
        edge_attr = torch.cat([self.edge_rbf(d), b.bonded[:, None]], dim=1)
        # smooth cosine cutoff, so noise moving a pair across the cutoff changes nothing abruptly; bonds are
        # always full edges (and shorter than the cutoff anyway)
        cosine = 0.5 * (torch.cos(math.pi * d.clamp(max=c.cutoff) / c.cutoff) + 1.0)
        envelope = torch.where(b.bonded > 0, torch.ones_like(d), cosine)
        for layer in self.layers:
            x = layer(x, b.edge_index, edge_attr, envelope)
        h = x.shape[1]
        size = torch.zeros(b.n_graphs, dtype=x.dtype).index_add_(0, b.graph, torch.ones_like(b.graph, dtype=x.dtype))
        mean = torch.zeros(b.n_graphs, h, dtype=x.dtype).index_add_(0, b.graph, x) / size[:, None]
        amax = x.new_full((b.n_graphs, h), -torch.inf).scatter_reduce(
            0, b.graph[:, None].expand(-1, h), x, reduce="amax", include_self=False)
        return self.readout(torch.cat([mean, amax, self.count_lin(b.counts)], dim=1))
