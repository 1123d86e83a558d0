"""Training the coarse-grained dynamics model on trajectories, and rolling it out for the diffusivity.

A trajectory (unwrapped bead positions every ``frame_dt_ps``) becomes frames: at time t, the history is the
bead displacements over the previous ``history`` long steps of ``stride`` frames, the target the
displacement over the next one. Rollouts feed the model its own samples, step after step, and record the
closest approach of any bead to a framework atom (a rollout that puts a guest inside the framework is
unstable). The self-diffusivity comes from the rolled-out MSD with ``discovery.oracle.transport.msd.self_diffusivity``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from discovery.oracle.transport.msd import MSDFit, self_diffusivity

from surrogates.transport.dynamics import CGDynamics, Frame, TransportConfig, build_edges, collate, gaussian_nll, periodic_pairs


@dataclass
class Rollout:
    positions: np.ndarray  # (n_steps + 1, n, 3) unwrapped
    dt_ps: float
    min_framework_distance: float  # A, over the whole rollout
    cpu_s: float
    rejected_fraction: float = 0.0  # displacements redrawn because they ended inside the framework


def trajectory_frames(positions: np.ndarray, cell: np.ndarray, framework: np.ndarray, numbers: np.ndarray,
                      stride: int, config: TransportConfig, every: int = 1) -> list[Frame]:
    """Training frames of one trajectory (positions: (T, n, 3) unwrapped, one row per MD frame)."""
    x = np.asarray(positions, float)
    h = config.history
    frames = []
    for t in range(h * stride, x.shape[0] - stride, every):
        past = np.stack([x[t - k * stride] - x[t - (k + 1) * stride] for k in range(h - 1, -1, -1)], axis=1)
        frames.append(build_edges(Frame(x[t], past, cell, framework, numbers, target=x[t + stride] - x[t]), config))
    return frames


def _noisy(batch: dict, n_guests: int, scale: float, gen: torch.Generator) -> dict:
    """Input noise: jitter bead positions (edge vectors follow) and past displacements."""
    if scale <= 0:
        return batch
    b = dict(batch)
    shift = torch.randn(n_guests, 3, generator=gen) * scale
    b["history"] = batch["history"] + torch.randn(batch["history"].shape, generator=gen) * scale
    b["gf_vec"] = batch["gf_vec"] - shift[batch["gf"][0]]
    b["gg_vec"] = batch["gg_vec"] + shift[batch["gg"][1]] - shift[batch["gg"][0]]
    b["target"] = batch["target"] - shift  # the bead still ends where it ended
    return b


def train_transport(frames: list[Frame], config: TransportConfig | None = None, epochs: int = 30,
                    batch_size: int = 16, lr: float = 2e-3, seed: int = 0,
                    val_fraction: float = 0.1, progress: bool = False) -> tuple[CGDynamics, dict]:
    """Fit by Gaussian NLL; the epoch with the best validation NLL is kept."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    model = CGDynamics(config)
    gen = torch.Generator().manual_seed(seed)
    order = np.random.default_rng(seed).permutation(len(frames))
    n_val = max(1, int(val_fraction * len(frames)))
    val = collate([frames[i] for i in order[:n_val]])
    train = [frames[i] for i in order[n_val:]]
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    best, state, curve, t0 = float("inf"), None, [], time.process_time()
    for _ in tqdm(range(epochs), desc="training (epochs)", disable=not progress):
        model.train()
        for k in torch.randperm(len(train), generator=gen).split(batch_size):
            chunk = [train[i] for i in k.tolist()]
            batch = _noisy(collate(chunk), sum(len(f.guests) for f in chunk), model.config.input_noise, gen)
            opt.zero_grad()
            loss = gaussian_nll(*model(batch), batch["target"])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            curve.append(float(gaussian_nll(*model(val), val["target"])))
        if curve[-1] < best:
            best, state = curve[-1], copy.deepcopy(model.state_dict())
    model.load_state_dict(state)
    return model.eval(), {"val_nll": curve, "train_cpu_s": time.process_time() - t0, "n_frames": len(train)}


def contact_radii(frames: list[Frame]) -> dict[int, float]:
    """Closest approach of a bead to a framework atom of each element over the training frames (A): the
    excluded volume the reference dynamics never entered."""
    out: dict[int, float] = {}
    for f in frames:
        d = np.linalg.norm(f.edges["gf_vec"], axis=1)
        z = f.numbers[f.edges["gf"][1]]
        for element in np.unique(z):
            out[int(element)] = min(out.get(int(element), np.inf), float(d[z == element].min()))
    return out


def _atom_radii(numbers: np.ndarray, radii: dict[int, float] | None) -> np.ndarray | None:
    """Per framework atom; an element the training never saw gets the smallest known radius."""
    if not radii:
        return None
    default = min(radii.values())
    return np.array([radii.get(int(z), default) for z in numbers], float)


def _blocked(x: np.ndarray, step: np.ndarray, start: Frame, atom_radii: np.ndarray) -> np.ndarray:
    """Beads whose straight move from ``x`` by ``step`` passes within a framework atom's contact radius:
    the end inside an atom, or the path through one (a long step must not tunnel through a wall)."""
    half = 0.5 * np.linalg.norm(step, axis=1)
    i, j, a = periodic_pairs(x + 0.5 * step, start.framework, start.cell, float(half.max() + atom_radii.max()))
    s = step[i]
    t = np.clip(np.einsum("ij,ij->i", a, s) / np.maximum(np.einsum("ij,ij->i", s, s), 1e-12), -0.5, 0.5)
    d = np.linalg.norm(a - t[:, None] * s, axis=1)  # from the atom to the nearest point of the path
    bad = np.zeros(len(x), bool)
    bad[i[d < atom_radii[j]]] = True
    return bad


@torch.no_grad()
def rollout(model: CGDynamics, start: Frame, n_steps: int, dt_ps: float, seed: int = 0,
            radii: dict[int, float] | None = None, tries: int = 20) -> Rollout:
    """``n_steps`` long steps from ``start`` (its positions and history), sampling each displacement.

    With ``radii`` (``contact_radii`` of the training data) each step is drawn from the model's Gaussian
    restricted to the accessible volume: a displacement whose straight path comes within a framework atom's
    contact radius (ends inside it, or tunnels through a wall) is redrawn, up to ``tries`` times, and after
    that the bead stays put (as a rejected Monte Carlo move).
    The share of drawn displacements that were rejected is reported (``rejected_fraction``)."""
    gen = torch.Generator().manual_seed(seed)
    x, hist = start.guests.astype(float).copy(), start.history.astype(float).copy()
    atom_radii = _atom_radii(start.numbers, radii) if len(start.framework) else None
    path, closest, redrawn, t0 = [x.copy()], np.inf, 0, time.process_time()
    for _ in range(n_steps):
        frame = build_edges(Frame(x, hist, start.cell, start.framework, start.numbers), model.config)
        if len(frame.edges["gf_vec"]):  # the framework edges also give the closest approach (cutoff > 4 A)
            closest = min(closest, float(np.linalg.norm(frame.edges["gf_vec"], axis=1).min()))
        mu, sigma = model(collate([frame]))
        mu, sigma = mu.double().numpy(), sigma.double().numpy()
        step = mu + sigma[:, None] * torch.randn(mu.shape, generator=gen, dtype=torch.float64).numpy()
        if atom_radii is not None:
            bad = _blocked(x, step, start, atom_radii)
            for _ in range(tries):
                if not bad.any():
                    break
                redrawn += int(bad.sum())
                k = np.flatnonzero(bad)
                step[k] = mu[k] + sigma[k, None] * torch.randn((len(k), 3), generator=gen, dtype=torch.float64).numpy()
                bad[k] = _blocked(x[k], step[k], start, atom_radii)
            step[bad] = 0.0
        x = x + step
        hist = np.concatenate([hist[:, 1:], step[:, None]], axis=1)
        path.append(x.copy())
    closest = min(closest, closest_approach(x, start.framework, start.cell))
    return Rollout(np.array(path), dt_ps, float(closest), time.process_time() - t0,
                   redrawn / max(1, n_steps * len(x) + redrawn))


def closest_approach(guests: np.ndarray, framework: np.ndarray, cell: np.ndarray, within: float = 4.0) -> float:
    """Smallest periodic distance from any bead to any framework atom (``inf`` beyond ``within``)."""
    _, _, vec = periodic_pairs(guests, framework, cell, within)
    return float(np.linalg.norm(vec, axis=1).min()) if len(vec) else float("inf")


def rollout_diffusivity(run: Rollout, **fit) -> MSDFit:
    """D of a rollout, fitted as the MD oracle fits its runs: the framework is the frame of reference, so
    the guests' common motion is kept (``remove_com_drift=False``)."""
    return self_diffusivity(run.positions, run.dt_ps, **{"remove_com_drift": False, **fit})
