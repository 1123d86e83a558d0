"""RASPA3's Widom estimator replayed on the grid engine's energies, beside plain whole-guest insertion.

RASPA3 inserts a rigid guest by configurational bias (CBMC, ``cbmc_rigid_insertion`` in its sources): k
random positions of the guest's first site, each scored by that site's energy alone, one kept in
proportion to its Boltzmann factor; then k random orientations about it, scored by the other sites. The
insertion's weight W = (mean of the first k factors) x (mean of the second k) is unbiased. But the first
site of TraPPE CO2 and N2 carries a partial charge, scored as a lone charge in the framework's field: on a
strongly charged framework that factor spans orders of magnitude from one position to the next, the
product W becomes heavy-tailed, most runs fall short of the mean, and their block intervals understate the
error. Without charges the same scheme is more efficient than plain insertion.

``replay`` runs both estimators on the same interpolated energies (which ``exact.grid_check`` checks against
RASPA3's own energy function), so that what differs between them is the estimators alone: the weight's
relative spread per insertion, and what runs of RASPA3's length would return (RASPA3 makes 20 Widom
insertions a cycle for one component, in 5 blocks), measured against the grid engine's own K_H on the same
grids (importance-sampled, to a 2 % interval: plain insertion itself needs millions where a few sites
decide K_H). Two simplifications, both stated in the result: CBMC
trials are scored with the full Ewald potential (RASPA3 scores them with the real-space part and adds the
reciprocal part after), and a blocked pocket is tested at the first site (plain insertion: the centre, as
the grid engine does).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from discovery.oracle.adsorption.forcefield import Guest
from discovery.oracle.adsorption.grid import EnergyGrids
from discovery.oracle.adsorption.widom import Sampler, WidomSettings, kh_per_mean_weight, widom

RASPA_INSERTIONS_PER_CYCLE = 20  # RASPA3: max(molecules, 20) steps a cycle per component, none adsorbed
RASPA_TRIALS = 10  # RASPA3's default numberOfTrialDirections: first-site positions and orientations
RUN_CYCLES = (1_000, 5_000)  # the runs summarised: RASPA3's first run and default cap
BLOCKS = 5
T_975_4 = 2.776  # Student's t, 95 %, 4 degrees of freedom (5 blocks), as RASPA3's interval
CHUNK = 50_000
ENGINE_TARGET = 0.02  # the reference K_H's interval: well inside the deviations worth reporting


@dataclass(frozen=True)
class EstimatorCheck:
    """K_H (mol kg^-1 Pa^-1) from the grid engine (``kh_engine``, its relative 95 % half-width
    ``engine_ci95``), from plain insertion and from the CBMC replay on the same energies, each of the two
    estimators' relative spread of W per insertion (std / mean), and, per run length in RASPA3 cycles, how
    far a CBMC run's K_H falls from ``kh_engine`` (median, 10th and 90th percentile, relative) and the
    interval such a run reports (median, relative)."""

    guest: str
    kh_engine: float
    engine_ci95: float
    kh_uniform: float
    kh_cbmc: float
    spread_uniform: float
    spread_cbmc: float
    runs: dict = field(default_factory=dict)
    insertions: int = 0
    trials: int = RASPA_TRIALS
    cpu_s: float = 0.0
    scoring: str = "full Ewald potential per site; pockets tested at the first site"

    def to_dict(self) -> dict:
        return asdict(self)


def replay(grids: EnergyGrids, guest: Guest, insertions: int = 500_000, trials: int = RASPA_TRIALS,
           seed: int = 0, temperature: float = 298.0) -> EstimatorCheck:
    """``insertions`` CBMC insertions of ``guest`` as RASPA3 makes them, and as many plain ones (a uniform
    centre and axis), on ``grids``, beside the grid engine's K_H; seeded."""
    t0 = time.process_time()
    engine = widom(grids, guest, WidomSettings(target=ENGINE_TARGET, temperature=temperature, seed=seed))
    gen = torch.Generator(device=grids.settings.device).manual_seed(seed)
    sampler = Sampler(grids, guest, WidomSettings(orientation_trials=1, temperature=temperature, seed=seed), gen)
    cbmc, plain = [], []
    for start in range(0, insertions, CHUNK):
        n = min(CHUNK, insertions - start)
        cbmc.append(_cbmc_weights(sampler, n, trials, temperature))
        plain.append(_plain_weights(sampler, n, temperature))
    w_cbmc, w_plain = np.concatenate(cbmc), np.concatenate(plain)
    to_kh = kh_per_mean_weight(grids.framework, temperature)
    return EstimatorCheck(guest=guest.name, kh_engine=engine.kh, engine_ci95=round(engine.kh_ci95 / engine.kh, 4),
                          kh_uniform=float(w_plain.mean()) * to_kh, kh_cbmc=float(w_cbmc.mean()) * to_kh,
                          spread_uniform=_spread(w_plain), spread_cbmc=_spread(w_cbmc),
                          runs=_runs(w_cbmc, engine.kh / to_kh), insertions=insertions, trials=trials,
                          cpu_s=round(time.process_time() - t0, 2))


def _cbmc_weights(sp: Sampler, n: int, k: int, temperature: float) -> np.ndarray:
    """W of ``n`` CBMC insertions: k first-site positions scored alone, k orientations about the kept one."""
    z = sp.z.double()
    opts = dict(generator=sp.gen, dtype=torch.float64, device=sp.dev)
    first = (torch.rand((n * k, 3), **opts) @ sp.lattice.double()).to(sp.dt)
    u, overlap = sp.site_energy(0, first @ sp.inverse)
    if sp.pockets is not None:
        overlap |= sp.in_pocket(first @ sp.inverse)
    factors = _boltzmann(u, overlap, temperature).reshape(n, k)
    alive = factors.sum(1) > 0  # every trial overlapping: RASPA3 rejects the insertion (W = 0)
    pick = torch.multinomial(torch.where(alive[:, None], factors, torch.ones_like(factors)), 1,
                             generator=sp.gen).squeeze(1)
    kept = first.reshape(n, k, 3)[torch.arange(n, device=sp.dev), pick]
    axes = _axes(sp, n * k).reshape(n, k, 3)
    u2 = torch.zeros((n, k), dtype=torch.float64, device=sp.dev)
    overlap2 = torch.zeros((n, k), dtype=torch.bool, device=sp.dev)
    for site in range(1, len(z)):
        where = (kept[:, None, :] + float(z[site] - z[0]) * axes).reshape(-1, 3)
        e, o = sp.site_energy(site, where @ sp.inverse)
        u2 += e.double().reshape(n, k)
        overlap2 |= o.reshape(n, k)
    w = factors.mean(1) * _boltzmann(u2, overlap2, temperature).mean(1)
    return torch.where(alive, w, torch.zeros_like(w)).cpu().numpy()


def _plain_weights(sp: Sampler, n: int, temperature: float) -> np.ndarray:
    """W of ``n`` whole-guest insertions at uniform centres and axes (the grid engine without its
    importance sampling)."""
    centres = torch.rand((n, 3), generator=sp.gen, dtype=torch.float64, device=sp.dev).to(sp.dt)
    energy, overlap = sp.energy(centres, _axes(sp, n))
    return _boltzmann(energy, overlap, temperature).cpu().numpy()


def _boltzmann(energy: torch.Tensor, overlap: torch.Tensor, temperature: float) -> torch.Tensor:
    w = torch.exp(-energy.double().clamp(min=-1e5) / temperature)
    return torch.where(overlap, torch.zeros_like(w), w)


def _axes(sp: Sampler, n: int) -> torch.Tensor:
    a = torch.randn((n, 3), generator=sp.gen, dtype=torch.float64, device=sp.dev)
    return (a / a.norm(dim=1, keepdim=True)).to(sp.dt)


def _spread(w: np.ndarray) -> float:
    mean = float(w.mean())
    return round(float(w.std()) / mean, 3) if mean > 0 else float("nan")


def _runs(w: np.ndarray, reference: float) -> dict:
    """Per run length (cycles): consecutive runs of RASPA3's size cut from ``w``, each run's K_H against
    ``reference`` and the interval its 5 blocks report."""
    out = {}
    for cycles in RUN_CYCLES:
        n = cycles * RASPA_INSERTIONS_PER_CYCLE
        count = len(w) // n
        if count < 2 or reference <= 0:
            continue
        blocks = w[:count * n].reshape(count, BLOCKS, n // BLOCKS).mean(2)
        means = blocks.mean(1)
        deviation = means / reference - 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            reported = T_975_4 * blocks.std(1, ddof=1) / np.sqrt(BLOCKS) / means
        out[str(cycles)] = dict(runs=count, median_deviation=round(float(np.median(deviation)), 4),
                                p10_deviation=round(float(np.percentile(deviation, 10)), 4),
                                p90_deviation=round(float(np.percentile(deviation, 90)), 4),
                                median_reported_ci95=round(float(np.nanmedian(reported)), 4))
    return out
