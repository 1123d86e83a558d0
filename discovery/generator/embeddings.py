"""Building-block (BB) embeddings for the coarse-grained diffusion generator.

A MOFDiff-style generator represents a MOF as one bead per BB, each bead carrying a small BB vector. The
diffusion model denoises those vectors; decoding maps each generated vector to the nearest real BB. This
module makes the vectors: a small invariant graph network over each BB's atoms, trained contrastively.

Encoder (``EncoderConfig``). Nodes are atoms: an element embedding (``X`` connection points are a type of
their own, index 0; augmentation adds a mask type) plus a Gaussian-RBF expansion of the atom's distance to
the BB's centroid (the centroid of its connection points, where the bead sits). Edges join every atom pair
closer than 3.5 A and every bonded pair, with an RBF of the distance and a bonded flag (pormake's ``bonds``
include the X atoms' bonds). Three residual continuous-filter (SchNet-like) layers, then mean + max pooling
joined with two graph-level counts (connection points, log atoms: mean and max pooling cannot count), and
an MLP to ``dim``. Positions enter only as distances, so a vector is invariant to rotation, translation and
atom order by construction. The encoder and the BB graphs are in ``bb_encoder``.

Training. NT-Xent (InfoNCE, temperature 0.3) on L2-normalised vectors: two augmented views of a BB
(Gaussian position noise, sd 0.05 A; 15 % of the non-X atoms' elements masked) are positives, the other
BBs of the batch negatives. Only the initial weights use torch's random generator (seeded, inside
``fork_rng``); shuffling and augmentation use a seeded numpy generator, so training is deterministic.

Auxiliary head: why. Contrastive learning only asks that a BB be told apart from the others; it says
nothing about which BBs should be close, so a Cu paddlewheel with 4 arms can sit next to a similar fragment
with 3, or a short linker next to a long one. Downstream, assembly reads each bead's geometry (number of
connection points, arm length centroid -> X) off the decoded BB, and a generated vector is never exactly
on a library vector. A small MLP on the normalised vector regresses the standardised connection-point
count, mean and max arm length, log atom count (MSE) and has-metal (BCE), at weight 1 against the
contrastive loss. It makes these quantities smooth functions of the vector, so neighbours in embedding
space have similar geometry and a slightly-off vector still decodes to a BB of the right shape.
``decode`` can also restrict the candidates to a connection-point count (or kind), which the generator
knows from the net.

Normalisation. Stored vectors (``BBEmbedding.vectors``) are L2-normalised and scaled to norm
``sqrt(dim)``, so a coordinate is of order one (the scale a diffusion model with unit-variance noise
expects). ``decode`` rescales queries the same way, so the nearest BB by Euclidean distance is the nearest
by cosine: the norm of a generated vector carries no information.

Measured on the 153 design-space BBs (``design_space_bbs()``; defaults: dim 32, 300 epochs, seed 0; one CPU
core, ``OMP_NUM_THREADS=1``): training 75 s. ``evaluate_embeddings`` over eval seeds 0-2: a view with 0.05 A
position noise decodes to its own id for 98.7-99.3 %, with 15 % of elements masked too 93-98 %; with
0.1 A noise 96 %. The misses are two pairs of pormake BBs with identical geometry and elements (E12/E36,
E23/E24: equal interatomic-distance spectra, so their vectors coincide to 1e-6 and decoding picks either).
Nearest other BB in embedding space: same connection-point count for 89 %, same kind (node/edge) for 100 %.
Encoding all 867 library BBs takes ~1 s. The encoder is invariant to reflections too: a BB and its mirror
image get the same vector.
"""

from __future__ import annotations

import json
import math
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from discovery.library.building_blocks import BuildingBlock, BuildingBlockLibrary, Kind
from discovery.generator.bb_encoder import MAX_CP_CLASS, Batch, Encoder, EncoderConfig, Graph, bb_graph, collate
from discovery.errors import EmbeddingError, UnknownBuildingBlockError

if TYPE_CHECKING:
    from discovery.library.designspace import DesignSpace

FORMAT = "bb-embedding/1"
ENCODE_CHUNK = 128  # BBs per forward pass in ``encode``


# ---- configuration -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Contrastive training settings (``train_embeddings`` keywords)."""

    epochs: int = 300
    batch_size: int = 256  # the design-space subset (153 BBs) is one batch: every other BB is a negative
    lr: float = 2e-3
    # 0.3 rather than SimCLR's 0.1: a softer contrast lets BBs of a kind cluster (measured: nearest
    # neighbour with the same number of connection points 76 % at 0.3, 69 % at 0.1, without the CP classes)
    temperature: float = 0.3
    noise: float = 0.05  # A, sd of the Gaussian position noise of a view
    mask_fraction: float = 0.15  # of non-X atoms whose element is masked in a view
    aux_weight: float = 3.0  # nearest-neighbour CP agreement 80 % at weight 1, 89 % at 3; self-retrieval unchanged

    def to_dict(self) -> dict:
        return asdict(self)


# ---- training losses ----------------------------------------------------------------------------
def _aux_targets(bbs: Sequence[BuildingBlock]) -> np.ndarray:
    """(n x 6): n_connection_points, arm_length_mean, arm_length_max, log n_atoms, has_metal, CP class."""
    return np.array([[bb.n_connection_points, bb.descriptors["arm_length_mean"], bb.descriptors["arm_length_max"],
                      math.log(max(bb.n_atoms, 1)), float(bb.has_metal), min(bb.n_connection_points, MAX_CP_CLASS)]
                     for bb in bbs], dtype=np.float64)


def _nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """NT-Xent over two views (B x d each): row i of one view's positive is row i of the other."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(len(z), dtype=torch.bool), -torch.inf)
    n = len(z1)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(logits, target)


def _losses(encoder: Encoder, view1: Batch, view2: Batch, targets: Tensor,
            temperature: float) -> tuple[Tensor, Tensor]:
    """(contrastive, auxiliary) losses of two views; ``targets`` (B x 6): four standardised regression
    targets, has-metal 0/1, connection-point class."""
    z1, z2 = encoder(view1), encoder(view2)
    contrastive = _nt_xent(z1, z2, temperature)
    aux = 0.0
    for z in (z1, z2):
        pred = encoder.aux(F.normalize(z, dim=1))
        aux = aux + F.mse_loss(pred[:, :4], targets[:, :4]) \
            + F.binary_cross_entropy_with_logits(pred[:, 4], targets[:, 4]) \
            + F.cross_entropy(pred[:, 5:], targets[:, 5].long())
    return contrastive, aux / 2


# ---- the embedding --------------------------------------------------------------------------------
def _normalise(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Rows scaled to norm sqrt(dim) (the stored form); a zero row stays zero."""
    v = np.asarray(vectors, dtype=np.float32)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v * (math.sqrt(dim) / np.maximum(norm, 1e-12))).astype(np.float32)


@dataclass(eq=False)
class BBEmbedding:
    """A trained BB encoder and the vectors of the BBs it was trained on (its decoding library).

    ``ids`` (n,), ``vectors`` (n x dim, float32, each row of norm sqrt(dim)), ``n_connection_points`` (n,).
    ``history``: per-epoch mean losses of training (not saved).
    """

    ids: list[str] = field(repr=False)
    vectors: np.ndarray = field(repr=False)
    n_connection_points: np.ndarray = field(repr=False)
    encoder: Encoder = field(repr=False)
    train_config: dict = field(default_factory=dict)
    aux_mean: np.ndarray = field(default_factory=lambda: np.zeros(4))
    aux_std: np.ndarray = field(default_factory=lambda: np.ones(4))
    history: list[dict[str, float]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._index = {bb_id: i for i, bb_id in enumerate(self.ids)}
        self.encoder.eval()

    @property
    def dim(self) -> int:
        return self.encoder.config.dim

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, bb_id: object) -> bool:
        return bb_id in self._index

    def vector(self, bb_id: str) -> np.ndarray:
        """The stored vector (dim,) of a library BB; UnknownBuildingBlockError if it is not in the library."""
        if bb_id not in self._index:
            raise UnknownBuildingBlockError(f"building block {bb_id!r} is not in this embedding's library "
                                            f"of {len(self.ids)} BBs")
        return self.vectors[self._index[bb_id]].copy()

    def encode(self, bbs: Iterable[BuildingBlock]) -> np.ndarray:
        """Vectors (m x dim) of any BBs, normalised like ``vectors``."""
        graphs = [bb_graph(bb, self.encoder.config.cutoff) for bb in bbs]
        return self._encode_graphs(graphs)

    def extended(self, bbs: Iterable[BuildingBlock]) -> "BBEmbedding":
        """This embedding with vectors for ``bbs`` it does not hold yet (units cut from real MOFs), encoded by
        its encoder as they are: the encoder was not trained on them, it only places them among the others."""
        new = [bb for bb in dict((bb.id, bb) for bb in bbs).values() if bb.id not in self]
        if not new:
            return self
        return BBEmbedding(ids=[*self.ids, *(bb.id for bb in new)],
                           vectors=np.concatenate([self.vectors, self.encode(new).astype(self.vectors.dtype)]),
                           n_connection_points=np.concatenate([np.asarray(self.n_connection_points),
                                                               [len(bb.connection_point_indices) for bb in new]]),
                           encoder=self.encoder, train_config=self.train_config, aux_mean=self.aux_mean,
                           aux_std=self.aux_std)

    def _encode_graphs(self, graphs: Sequence[Graph], rng: np.random.Generator | None = None,
                       noise: float = 0.0, mask_fraction: float = 0.0) -> np.ndarray:
        out = []
        self.encoder.eval()
        with torch.no_grad():
            for start in range(0, len(graphs), ENCODE_CHUNK):
                batch = collate(graphs[start:start + ENCODE_CHUNK], rng, noise, mask_fraction)
                out.append(self.encoder(batch).numpy())
        return _normalise(np.concatenate(out) if out else np.zeros((0, self.dim)), self.dim)

    def decode(self, vectors: np.ndarray, n_connection_points: np.ndarray | int | None = None,
               kind: Kind | None = None) -> list[str]:
        """Nearest library BB id of each row of ``vectors`` (m x dim, any norm: compared by direction).

        ``n_connection_points`` (an int, or m ints) restricts each row's candidates to BBs with that many
        connection points; ``kind`` ("node" or "edge") to that kind. EmbeddingError if a row has no candidate.
        """
        q = np.asarray(vectors, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise EmbeddingError(f"decode expects an (m x {self.dim}) array, got shape {q.shape}")
        q = _normalise(q, self.dim)
        allowed = np.ones((len(q), len(self.ids)), dtype=bool)
        lib_cp = np.asarray(self.n_connection_points)
        if kind is not None:
            if kind not in ("node", "edge"):
                raise EmbeddingError(f"kind must be 'node' or 'edge', got {kind!r}")
            allowed &= ((lib_cp == 2) if kind == "edge" else (lib_cp != 2))[None, :]
        if n_connection_points is not None:
            want = np.broadcast_to(np.asarray(n_connection_points, dtype=np.int64), (len(q),))
            allowed &= lib_cp[None, :] == want[:, None]
        empty = ~allowed.any(axis=1)
        if empty.any():
            row = int(np.argmax(empty))
            cp = "" if n_connection_points is None else f" with {int(want[row])} connection points"
            raise EmbeddingError(f"no library BB{cp}{'' if kind is None else ' of kind ' + kind} to decode "
                                 f"row {row} into (library: {len(self.ids)} BBs)")
        d2 = (q.astype(np.float64) ** 2).sum(1)[:, None] - 2.0 * q.astype(np.float64) @ self.vectors.T.astype(
            np.float64) + (self.vectors.astype(np.float64) ** 2).sum(1)[None, :]
        d2[~allowed] = np.inf
        return [self.ids[i] for i in d2.argmin(axis=1)]

    # ---- persistence: one .npz, no pickle -----------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the weights, vectors and metadata to one ``.npz`` file at ``path`` (exactly that name)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "encoder": self.encoder.config.to_dict(), "train": self.train_config,
                "aux_mean": list(map(float, self.aux_mean)), "aux_std": list(map(float, self.aux_std))}
        arrays = {f"state.{k}": v.detach().cpu().numpy() for k, v in self.encoder.state_dict().items()}
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), ids=np.array(self.ids, dtype=str),
                     vectors=self.vectors, n_connection_points=np.asarray(self.n_connection_points, dtype=np.int64),
                     **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "BBEmbedding":
        """Read a file written by ``save``; EmbeddingError if it is not one."""
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("format") != FORMAT:
                    raise EmbeddingError(f"{path}: not a BB embedding file (format {meta.get('format')!r})")
                with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten anyway
                    encoder = Encoder(EncoderConfig(**meta["encoder"]))
                state = {k[len("state."):]: torch.from_numpy(data[k].copy()) for k in data.files
                         if k.startswith("state.")}
                encoder.load_state_dict(state)
                return cls(ids=[str(s) for s in data["ids"]], vectors=data["vectors"].copy(),
                           n_connection_points=data["n_connection_points"].copy(), encoder=encoder,
                           train_config=meta.get("train", {}), aux_mean=np.array(meta["aux_mean"]),
                           aux_std=np.array(meta["aux_std"]))
        except (OSError, EOFError, ValueError, KeyError, TypeError, RuntimeError, zipfile.BadZipFile) as e:
            raise EmbeddingError(f"cannot read BB embeddings from {path}: {e}") from e


# ---- training -------------------------------------------------------------------------------------
def design_space_bbs(space: DesignSpace | None = None,
                     library: BuildingBlockLibrary | None = None) -> list[BuildingBlock]:
    """The curated BBs of a design space (default ``DesignSpace()``): metal nodes, organic nodes and edges
    it keeps, in library order (153 BBs for the default space)."""
    from discovery.library.designspace import DesignSpace

    space = DesignSpace() if space is None else space
    library = BuildingBlockLibrary() if library is None else library
    return [bb for bb in library
            if space.keeps_metal_node(bb) or space.keeps_organic_node(bb) or space.keeps_edge(bb)]


def train_embeddings(bbs: Sequence[BuildingBlock], dim: int = 32, epochs: int = TrainConfig.epochs, seed: int = 0,
                     progress: bool = False, *, encoder_config: EncoderConfig | None = None,
                     **train_options) -> BBEmbedding:
    """Train the encoder contrastively on ``bbs`` (at least 2) and embed them; deterministic given ``seed``.

    ``train_options``: other ``TrainConfig`` fields (batch_size, lr, temperature, noise, mask_fraction,
    aux_weight). ``encoder_config`` overrides ``dim``.

    Cost: ~0.25 s per epoch for the 153 design-space BBs on one CPU core (75 s for the default 300 epochs);
    per epoch it scales with the number of atoms (one batch up to ``batch_size`` BBs).
    """
    ids = [bb.id for bb in bbs]
    if len(bbs) < 2:
        raise EmbeddingError("contrastive training needs at least 2 building blocks")
    if len(set(ids)) != len(ids):
        raise EmbeddingError("duplicate building-block ids in the training set")
    ecfg = encoder_config or EncoderConfig(dim=dim)
    tcfg = TrainConfig(epochs=epochs, **train_options)
    graphs = [bb_graph(bb, ecfg.cutoff) for bb in bbs]
    raw = _aux_targets(bbs)
    aux_mean, aux_std = raw[:, :4].mean(0), raw[:, :4].std(0) + 1e-6
    targets = torch.from_numpy(np.concatenate([(raw[:, :4] - aux_mean) / aux_std, raw[:, 4:]], axis=1)).float()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = Encoder(ecfg)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(encoder.parameters(), lr=tcfg.lr)
    n_batches = max(1, math.ceil(len(bbs) / tcfg.batch_size))
    if len(bbs) // n_batches < 2:
        n_batches = len(bbs) // 2
    total = tcfg.epochs * n_batches
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    history: list[dict[str, float]] = []
    epochs_iter = range(tcfg.epochs)
    if progress:
        from tqdm import tqdm

        epochs_iter = tqdm(epochs_iter, desc="BB embeddings", unit="epoch")
    start = time.perf_counter()
    encoder.train()
    for _ in epochs_iter:
        sums = np.zeros(2)
        for idx in np.array_split(rng.permutation(len(bbs)), n_batches):
            sub = [graphs[i] for i in idx]
            view1 = collate(sub, rng, tcfg.noise, tcfg.mask_fraction)
            view2 = collate(sub, rng, tcfg.noise, tcfg.mask_fraction)
            contrastive, aux = _losses(encoder, view1, view2, targets[torch.from_numpy(idx)], tcfg.temperature)
            loss = contrastive + tcfg.aux_weight * aux
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(encoder.parameters(), 5.0)
            opt.step()
            sched.step()
            sums += (contrastive.item(), aux.item())
        history.append({"contrastive": sums[0] / n_batches, "aux": sums[1] / n_batches})
        if progress:
            epochs_iter.set_postfix(history[-1])
    seconds = time.perf_counter() - start
    emb = BBEmbedding(ids=ids, vectors=np.zeros((len(ids), ecfg.dim), np.float32),
                      n_connection_points=np.array([bb.n_connection_points for bb in bbs], dtype=np.int64),
                      encoder=encoder, train_config={**tcfg.to_dict(), "seed": seed, "seconds": round(seconds, 2)},
                      aux_mean=aux_mean, aux_std=aux_std, history=history)
    emb.vectors = emb._encode_graphs(graphs)
    return emb


def evaluate_embeddings(embedding: BBEmbedding, bbs: Sequence[BuildingBlock] | None = None, seed: int = 0,
                        noise: float = 0.05, mask_fraction: float = 0.15) -> dict[str, float]:
    """Quality figures on ``bbs`` (default: the embedding's own library, looked up in pormake's):

    ``top1_noise``: fraction of BBs whose noisy view (position noise ``noise`` A) decodes to their own id;
    ``top1_noise_mask``: the same with ``mask_fraction`` of elements masked too;
    ``neighbour_same_cp``: fraction whose nearest other library BB has the same number of connection points;
    ``neighbour_same_kind``: ... the same kind (node/edge).
    """
    if bbs is None:
        library = BuildingBlockLibrary()
        bbs = [library.get(i) for i in embedding.ids]
    ids = [bb.id for bb in bbs]
    graphs = [bb_graph(bb, embedding.encoder.config.cutoff) for bb in bbs]
    rng = np.random.default_rng(seed)
    noisy = embedding.decode(embedding._encode_graphs(graphs, rng, noise, 0.0))
    masked = embedding.decode(embedding._encode_graphs(graphs, rng, noise, mask_fraction))
    v = embedding.vectors.astype(np.float64)
    d2 = ((v[:, None] - v[None]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    nn_idx = d2.argmin(1)
    cp = np.asarray(embedding.n_connection_points)
    return {
        "n_bbs": float(len(bbs)),
        "top1_noise": float(np.mean([a == b for a, b in zip(noisy, ids)])),
        "top1_noise_mask": float(np.mean([a == b for a, b in zip(masked, ids)])),
        "neighbour_same_cp": float(np.mean(cp[nn_idx] == cp)),
        "neighbour_same_kind": float(np.mean((cp[nn_idx] == 2) == (cp == 2))),
    }
