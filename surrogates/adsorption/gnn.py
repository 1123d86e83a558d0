"""A two-scale SchNet-like network for adsorption properties, built from PyG's SchNet layers.

Fine scale: continuous-filter convolutions along each building block's bonds give the block a vector.
Coarse scale: the same convolutions over the MOF's periodic bead graph, each bead starting from its
block's vector (plus its role, node or linker). Beads are pooled by their mean and maximum (K_H is intensive,
and dominated by the strongest sites), and the pooled
vector is joined by the graph-level descriptors (Zeo++ geometry, probe energies) before the output head. ``embed`` returns that joint vector,
the Gaussian-process surrogate's input features.

In evaluation mode the block vectors are cached (they depend on the block alone), which is most of why
scoring is cheap; ``train()`` clears the cache.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn import global_max_pool, global_mean_pool
from torch_geometric.nn.models.schnet import GaussianSmearing, InteractionBlock, ShiftedSoftplus

from discovery.errors import DiscoveryError
from surrogates.adsorption.graphs import MAX_Z, N_GLOBALS, ROLES, bb_graph


@dataclass(frozen=True)
class NetConfig:
    hidden: int = 64
    filters: int = 64
    gaussians: int = 32
    interactions: int = 3  # on the bead graph
    cutoff: float = 15.0  # must match GraphSettings.cutoff: the filters go smoothly to zero there
    bb_interactions: int = 2  # on each block's atoms
    bb_cutoff: float = 5.0  # A: longer than any bond in the library (4.3 A), so no bond is cut off
    n_globals: int = N_GLOBALS
    n_outputs: int = 2
    # "mean+max": atoms into a block and beads into a MOF by their mean and their maximum; "mean": the mean
    # alone (models saved before this option). K_H is an average of exp(-U / kT): with framework charges a
    # few strongly binding sites (an open metal, a polar group) dominate it, which a mean dilutes and a
    # maximum keeps (held-out Spearman 0.902 -> 0.958 on the EQeq design pool, docs/surrogate.md)
    pooling: str = "mean+max"

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise DiscoveryError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")

    def to_dict(self) -> dict:
        return asdict(self)


POOLINGS = ("mean", "mean+max")


def _pool(h: Tensor, batch: Tensor, size: int, how: str) -> Tensor:
    mean = global_mean_pool(h, batch, size=size)
    return mean if how == "mean" else torch.cat([mean, global_max_pool(h, batch, size=size)], dim=-1)


class CrystalGNN(nn.Module):
    """Bead-graph batch (``bead_bb``, ``role``, ``edge_index``, ``edge_dist``, ``globals``, ``batch``)
    -> ``n_graphs x n_outputs``."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        c = self.config = config
        self.atom_embedding = nn.Embedding(MAX_Z, c.hidden)
        self.bb_rbf = GaussianSmearing(0.0, c.bb_cutoff, c.gaussians)
        self.bb_blocks = nn.ModuleList(
            InteractionBlock(c.hidden, c.gaussians, c.filters, c.bb_cutoff) for _ in range(c.bb_interactions))
        self.role_embedding = nn.Embedding(len(ROLES), c.hidden)
        self.rbf = GaussianSmearing(0.0, c.cutoff, c.gaussians)
        self.blocks = nn.ModuleList(
            InteractionBlock(c.hidden, c.gaussians, c.filters, c.cutoff) for _ in range(c.interactions))
        self.globals_mlp = nn.Sequential(nn.Linear(c.n_globals, c.hidden), ShiftedSoftplus())
        widen = 2 if c.pooling == "mean+max" else 1
        # a block's pooled atoms back to a bead's width (an identity-sized map is not needed for the mean)
        self.bb_out = nn.Linear(widen * c.hidden, c.hidden) if widen > 1 else nn.Identity()
        self.head = nn.Sequential(nn.Linear((widen + 1) * c.hidden, c.hidden), ShiftedSoftplus(),
                                  nn.Linear(c.hidden, c.n_outputs))
        # a linear path from the descriptors: the probe's K_H alone ranks MOFs well, and with a few hundred
        # labels the network should not have to rediscover that through two non-linear layers
        self.linear = nn.Linear(c.n_globals, c.n_outputs)
        self._bb_cache: dict[int, Tensor] = {}

    def train(self, mode: bool = True) -> "CrystalGNN":
        # weights change in training mode, or just did: the cached vectors are stale. ``eval()`` on a net
        # already in evaluation mode keeps them (every ``predict`` call makes it; clearing there re-embedded
        # every block of every batch, a sixth of the scoring time on real MOFs)
        if mode or self.training:
            self._bb_cache = {}
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._bb_cache = {}  # new weights, even in evaluation mode
        return super().load_state_dict(*args, **kwargs)

    def block_vectors(self, indices: Tensor) -> Tensor:
        """Vectors of library blocks ``indices`` (k,) -> k x hidden, from their atoms."""
        wanted = indices.tolist()
        if self.training:
            return self._embed_blocks(wanted)
        missing = [i for i in wanted if i not in self._bb_cache]
        if missing:
            self._bb_cache.update(zip(missing, self._embed_blocks(missing)))
        return torch.stack([self._bb_cache[i] for i in wanted])

    def _embed_blocks(self, indices: list[int]) -> Tensor:
        batch = Batch.from_data_list([bb_graph(i) for i in indices])
        h = self.atom_embedding(batch.z)
        rbf = self.bb_rbf(batch.edge_dist)
        for block in self.bb_blocks:
            h = h + block(h, batch.edge_index, batch.edge_dist, rbf)
        return self.bb_out(_pool(h, batch.batch, len(indices), self.config.pooling))

    def embed(self, data) -> Tensor:
        """Pooled bead features joined with the encoded descriptors: ``n_graphs x 2 hidden`` (3 with
        ``mean+max`` pooling)."""
        unique, inverse = torch.unique(data.bead_bb, return_inverse=True)
        h = self.block_vectors(unique)[inverse] + self.role_embedding(data.role)
        rbf = self.rbf(data.edge_dist)
        for block in self.blocks:
            h = h + block(h, data.edge_index, data.edge_dist, rbf)
        pooled = _pool(h, data.batch, data.num_graphs, self.config.pooling)
        return torch.cat([pooled, self.globals_mlp(data.globals)], dim=-1)

    def forward(self, data) -> Tensor:
        return self.head(self.embed(data)) + self.linear(data.globals)
