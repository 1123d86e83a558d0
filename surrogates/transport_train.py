"""Training the coarse-grained dynamics model on trajectories, and rolling it out for the diffusivity.

A trajectory (unwrapped bead positions every ``frame_dt_ps``) becomes frames: at time t, the history is the
bead displacements over the previous ``history`` long steps of ``stride`` frames, the target the
displacement over the next one. Rollouts feed the model its own samples, step after step, and record the
closest approach of any bead to a framework atom (a rollout that puts a guest inside the framework is
unstable). The self-diffusivity comes from the rolled-out MSD with ``discovery.msd.self_diffusivity``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from discovery.msd import MSDFit, self_diffusivity

from .transport import CGDynamics, Frame, TransportConfig, build_edges, collate, gaussian_nll, periodic_pairs


@dataclass
class Rollout:
    positions: np.ndarray  # (n_steps + 1, n, 3) unwrapped
    dt_ps: float
    min_framework_distance: float  # A, over the whole rollout
    cpu_s: float


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
                    val_fraction: float = 0.1) -> tuple[CGDynamics, dict]:
    """Fit by Gaussian NLL; the epoch with the best validation NLL is kept."""
    torch.manual_seed(seed)
    model = CGDynamics(config)
    gen = torch.Generator().manual_seed(seed)
    order = np.random.default_rng(seed).permutation(len(frames))
    n_val = max(1, int(val_fraction * len(frames)))
    val = collate([frames[i] for i in order[:n_val]])
    train = [frames[i] for i in order[n_val:]]
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    best, state, curve, t0 = float("inf"), None, [], time.process_time()
    for _ in range(epochs):
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


@torch.no_grad()
def rollout(model: CGDynamics, start: Frame, n_steps: int, dt_ps: float, seed: int = 0) -> Rollout:
    """``n_steps`` long steps from ``start`` (its positions and history), sampling each displacement."""
    gen = torch.Generator().manual_seed(seed)
    x, hist = start.guests.astype(float).copy(), start.history.astype(float).copy()
    path, closest, t0 = [x.copy()], np.inf, time.process_time()
    for _ in range(n_steps):
        frame = build_edges(Frame(x, hist, start.cell, start.framework, start.numbers), model.config)
        mu, sigma = model(collate([frame]))
        step = (mu + sigma[:, None] * torch.randn(mu.shape, generator=gen)).double().numpy()
        x = x + step
        hist = np.concatenate([hist[:, 1:], step[:, None]], axis=1)
        path.append(x.copy())
        closest = min(closest, closest_approach(x, start.framework, start.cell))
    return Rollout(np.array(path), dt_ps, float(closest), time.process_time() - t0)


def closest_approach(guests: np.ndarray, framework: np.ndarray, cell: np.ndarray, within: float = 4.0) -> float:
    """Smallest periodic distance from any bead to any framework atom (``inf`` beyond ``within``)."""
    _, _, vec = periodic_pairs(guests, framework, cell, within)
    return float(np.linalg.norm(vec, axis=1).min()) if len(vec) else float("inf")


def rollout_diffusivity(run: Rollout, **fit) -> MSDFit:
    return self_diffusivity(run.positions, run.dt_ps, **fit)


def frames_from_file(path, stride: int, config: TransportConfig, every: int = 5) -> tuple[list[Frame], float]:
    """Training frames of one saved MD trajectory (``docs/trajectories.md``) and its long step in ps."""
    from discovery.md import load_trajectory

    from .transport import atomic_numbers

    t = load_trajectory(path)
    dt_ps = float(t["times_ps"][1] - t["times_ps"][0]) * stride
    frames = trajectory_frames(t["com_positions_A"], t["cell_A"], t["framework_positions_A"],
                               atomic_numbers(t["framework_elements"]), stride, config, every=every)
    return frames, dt_ps
