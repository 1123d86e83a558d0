"""Coarse-grained dynamics of guest molecules in a rigid framework: a multi-scale GNN that takes long steps.

Scales. The coarse graph has one bead per guest (its centre of mass), with periodic edges to the other guests
within ``guest_cutoff``. The fine graph is the framework's atoms within ``framework_cutoff`` of each bead;
their messages (element embedding x radial basis) are pooled into the bead.

Step. Given the bead positions and a short history of each bead's displacements over past long steps, the
model returns a Gaussian over the displacement over the next long step (``dt_ps``, >= 100 MD
steps): ``N(mu_i, sigma_i^2 I)``. ``mu_i`` is built from vectors only (past displacements and unit vectors to
neighbours) weighted by scalars computed from invariants (distances, norms, dot products), so the model is
E(3)-equivariant: rotating the input rotates ``mu`` and leaves ``sigma`` unchanged. It is trained by the
Gaussian negative log-likelihood, with noise on its inputs so that rollouts, which feed the model its own
samples, stay stable.

Neighbours come from pymatgen's periodic search (``find_points_in_spheres``), valid in triclinic cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from pymatgen.core.periodic_table import Element
from pymatgen.optimization.neighbors import find_points_in_spheres
from torch import Tensor, nn

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class TransportConfig:
    history: int = 3  # past long-step displacements given to the model
    guest_cutoff: float = 8.0  # A, guest-guest edges
    framework_cutoff: float = 6.0  # A, guest-framework-atom edges (the fine scale)
    hidden: int = 64
    n_rbf: int = 16
    input_noise: float = 0.05  # A, added to positions and past displacements during training
    min_sigma: float = 1e-3  # A, floor of the predicted standard deviation
    max_mean: float = 10.0  # A, soft cap of the predicted mean displacement (a long step moves a few A)


@dataclass
class Frame:
    """One input of the model: a configuration and its recent past (one trajectory time)."""

    guests: np.ndarray  # (n, 3) Cartesian bead positions (unwrapped is fine: wrapped for neighbours)
    history: np.ndarray  # (n, H, 3) displacements over the last H long steps, most recent last
    cell: np.ndarray  # (3, 3) rows a, b, c
    framework: np.ndarray  # (m, 3) framework atom positions
    numbers: np.ndarray  # (m,) atomic numbers
    target: np.ndarray | None = None  # (n, 3) displacement over the next long step
    edges: dict[str, np.ndarray] = field(default_factory=dict)


# ---- periodic neighbours -----------------------------------------------------------------------------
def periodic_pairs(centres: np.ndarray, points: np.ndarray, cell: np.ndarray, cutoff: float,
                   exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre index, point index, vector from centre to the point's nearest-within-cutoff images) for
    every pair closer than ``cutoff`` in a periodic (possibly triclinic) cell."""
    if len(centres) == 0 or len(points) == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros((0, 3))
    cell = np.ascontiguousarray(cell, dtype=float)
    inv = np.linalg.inv(cell)
    wrap = lambda x: (np.asarray(x, float) @ inv) % 1.0 @ cell  # noqa: E731
    c, p = np.ascontiguousarray(wrap(centres)), np.ascontiguousarray(wrap(points))
    i, j, offsets, dist = find_points_in_spheres(p, c, float(cutoff), np.array([1, 1, 1], dtype=np.int64), cell)
    vec = p[j] + offsets @ cell - c[i]
    keep = dist > 1e-8 if exclude_self else np.ones(len(i), bool)
    return i[keep].astype(int), j[keep].astype(int), vec[keep]


def build_edges(frame: Frame, config: TransportConfig) -> Frame:
    gi, gj, gvec = periodic_pairs(frame.guests, frame.guests, frame.cell, config.guest_cutoff, exclude_self=True)
    fi, fj, fvec = periodic_pairs(frame.guests, frame.framework, frame.cell, config.framework_cutoff)
    frame.edges = {"gg": np.stack([gi, gj]), "gg_vec": gvec, "gf": np.stack([fi, fj]), "gf_vec": fvec}
    return frame


# ---- the model ---------------------------------------------------------------------------------------
class RadialBasis(nn.Module):
    def __init__(self, n: int, cutoff: float) -> None:
        super().__init__()
        self.register_buffer("centres", torch.linspace(0.0, cutoff, n))
        self.width, self.cutoff = cutoff / n, cutoff

    def forward(self, d: Tensor) -> Tensor:
        smooth = 0.5 * (torch.cos(math.pi * (d / self.cutoff).clamp(max=1.0)) + 1.0)  # goes to 0 at the cutoff
        return torch.exp(-((d[:, None] - self.centres) / self.width) ** 2) * smooth[:, None]


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                         nn.Linear(hidden, n_out))


class CGDynamics(nn.Module):
    """``forward(batch) -> (mu (n, 3), sigma (n,))`` for every bead of a collated batch of frames."""

    def __init__(self, config: TransportConfig | None = None) -> None:
        super().__init__()
        c = self.config = config or TransportConfig()
        self.element = nn.Embedding(100, c.hidden)
        self.rbf_f, self.rbf_g = RadialBasis(c.n_rbf, c.framework_cutoff), RadialBasis(c.n_rbf, c.guest_cutoff)
        self.fine = nn.Linear(c.n_rbf, c.hidden)
        n_hist = c.history + c.history * (c.history + 1) // 2  # norms and dot products of the history
        self.bead = _mlp(c.hidden + c.n_rbf + n_hist, c.hidden, c.hidden)
        self.message = _mlp(2 * c.hidden + c.n_rbf, c.hidden, c.hidden)
        self.head = _mlp(2 * c.hidden, c.hidden, c.history + 1)  # history weights, log sigma
        self.gf_weight = _mlp(2 * c.hidden + c.n_rbf, c.hidden, 1)
        self.gg_weight = _mlp(2 * c.hidden + c.n_rbf, c.hidden, 1)

    def forward(self, b: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        n = b["history"].shape[0]
        fi, fj = b["gf"]
        fd = b["gf_vec"].norm(dim=-1)
        rf = self.rbf_f(fd)  # computed once per call: the rollout's cost is dominated by small ops
        fine = self.element(b["numbers"][fj]) * self.fine(rf)  # framework atom -> bead messages
        pooled = torch.zeros(n, fine.shape[1], dtype=fine.dtype).index_add_(0, fi, fine)
        gi, gj = b["gg"]
        gd = b["gg_vec"].norm(dim=-1)
        rg = self.rbf_g(gd)
        crowd = torch.zeros(n, self.config.n_rbf, dtype=fine.dtype).index_add_(0, gi, rg)
        h = self.bead(torch.cat([pooled, crowd, _history_invariants(b["history"])], dim=-1))
        msg = self.message(torch.cat([h[gi], h[gj], rg], dim=-1))
        h2 = torch.cat([h, torch.zeros_like(h).index_add_(0, gi, msg)], dim=-1)
        out = self.head(h2)
        # along the bead's own recent motion; |weight| < 1 keeps the rollout's feedback from growing
        mu = (torch.tanh(out[:, :-1, None]) * b["history"]).sum(1)
        unit_f = b["gf_vec"] / fd.clamp_min(1e-6)[:, None]
        wf = self.gf_weight(torch.cat([h2[fi], rf], dim=-1)) * rf.sum(-1, keepdim=True)
        mu = mu + torch.zeros_like(mu).index_add_(0, fi, wf * unit_f)  # towards / away from framework atoms
        unit_g = b["gg_vec"] / gd.clamp_min(1e-6)[:, None]
        wg = self.gg_weight(torch.cat([h2[gi], rg], dim=-1)) * rg.sum(-1, keepdim=True)
        mu = mu + torch.zeros_like(mu).index_add_(0, gi, wg * unit_g)
        norm = mu.norm(dim=-1, keepdim=True).clamp_min(1e-9)  # soft cap of |mu| at max_mean: equivariant
        mu = mu * (self.config.max_mean * torch.tanh(norm / self.config.max_mean) / norm)
        sigma = nn.functional.softplus(out[:, -1]) + self.config.min_sigma
        return mu, sigma


def _history_invariants(hist: Tensor) -> Tensor:
    """Norms and pairwise dot products of the past displacements: rotation-invariant inputs."""
    gram = hist @ hist.transpose(1, 2)  # (n, H, H)
    rows, cols = torch.triu_indices(hist.shape[1], hist.shape[1])
    return torch.cat([gram.diagonal(dim1=1, dim2=2).clamp_min(0).sqrt(), gram[:, rows, cols]], dim=-1)


def gaussian_nll(mu: Tensor, sigma: Tensor, target: Tensor) -> Tensor:
    """Mean negative log-likelihood per bead of ``target`` under ``N(mu, sigma^2 I_3)``."""
    var = sigma[:, None] ** 2
    return 0.5 * (((target - mu) ** 2) / var + torch.log(var) + LOG_2PI).sum(-1).mean()


def collate(frames: list[Frame], dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """One batch from frames with edges: bead and framework indices offset per frame."""
    parts: dict[str, list] = {k: [] for k in ("history", "numbers", "gf", "gf_vec", "gg", "gg_vec", "target")}
    n0 = m0 = 0
    for f in frames:
        parts["history"].append(f.history)
        parts["numbers"].append(f.numbers)
        parts["gf"].append(f.edges["gf"] + np.array([[n0], [m0]]))
        parts["gg"].append(f.edges["gg"] + n0)
        parts["gf_vec"].append(f.edges["gf_vec"])
        parts["gg_vec"].append(f.edges["gg_vec"])
        if f.target is not None:
            parts["target"].append(f.target)
        n0, m0 = n0 + len(f.guests), m0 + len(f.framework)
    out = {k: torch.as_tensor(np.concatenate(v, axis=-1 if k in ("gf", "gg") else 0)) for k, v in parts.items() if v}
    for k in ("history", "gf_vec", "gg_vec", "target"):
        if k in out:
            out[k] = out[k].to(dtype)
    for k in ("numbers", "gf", "gg"):
        out[k] = out[k].long()
    return out


def atomic_numbers(elements) -> np.ndarray:
    return np.array([Element(str(e)).Z for e in elements], dtype=int)


def symbols(radii: dict[int, float]) -> dict[str, float]:
    """``{Z: r}`` as ``{symbol: r}`` (how a model file stores contact radii), and back with ``numbers``."""
    return {Element.from_Z(z).symbol: round(float(r), 3) for z, r in sorted(radii.items())}


def numbers(radii: dict[str, float]) -> dict[int, float]:
    return {Element(s).Z: float(r) for s, r in radii.items()}


def save_model(model: CGDynamics, path, extra: dict | None = None):
    """Weights as tensors (``weights.pt``) and the config as JSON (``model.json``): no pickled code."""
    import json
    from dataclasses import asdict
    from pathlib import Path

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path / "weights.pt")
    (path / "model.json").write_text(json.dumps({"kind": "cg_dynamics", "format_version": 1,
                                                 "config": asdict(model.config), **(extra or {})}, indent=1))
    return path


def load_model(path) -> CGDynamics:
    import json

    from discovery.errors import DiscoveryError
    from discovery.models import resolve_model

    path = resolve_model(path, "transport")  # `default`: the shipped model
    try:
        meta = json.loads((path / "model.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DiscoveryError(f"{path}: not a saved transport model ({exc})") from exc
    if meta.get("kind") != "cg_dynamics" or meta.get("format_version") != 1:
        raise DiscoveryError(f"{path}: unsupported model {meta.get('kind')} v{meta.get('format_version')}")
    model = CGDynamics(TransportConfig(**meta["config"]))
    model.load_state_dict(torch.load(path / "weights.pt", weights_only=True))
    model.meta = meta  # long step (dt_ps), training MOFs and data, held-out error
    return model.eval()
