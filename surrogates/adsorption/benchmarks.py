"""Benchmarks of the adsorption surrogate and of BoTorch selection on the labelled pool.

``benchmark_surrogate``: train on ``n_train`` MOFs, score the held-out rest: Spearman and MAE of
log10 K_H(CO2), coverage of the calibrated 68 % and 95 % intervals, training time, scoring rate.

``benchmark_acquisition``: campaigns against the pool with the oracle replaced by a lookup of the labels.
Every strategy starts from the same random MOFs for a given seed, then picks q per round within a budget
of 10 % of the pool; BoTorch and greedy retrain the ensemble each round (warm-started). Campaigns run one
per core. Random search is
run to the end of the pool (it costs nothing) so that its calls to reach half of the top 1 % are measured,
not extrapolated; the exact expectation for random draws, k (N + 1) / (K + 1), is printed beside it.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from scipy.stats import norm, spearmanr
from tqdm import tqdm

from discovery.errors import DiscoveryError
from discovery.parallel import default_workers
from discovery.campaign.planner import Planner, PlannerConfig

from surrogates.adsorption.botorch_model import ensemble_model, fit_gp, gp_features, gp_prediction
from surrogates.adsorption.data import LabelledPool, load_pool
from surrogates.adsorption.ensemble import DeepEnsemble, EnsembleConfig
from surrogates.adsorption.graphs import register_units, registered_units


def benchmark_surrogate(source: str | Path | None = None, n_train: int = 1000, config: EnsembleConfig | None = None,
                        seed: int = 0, progress: bool = True, surrogate: str = "ensemble") -> dict[str, Any]:
    pool = load_pool(source, progress=progress)
    if len(pool) < n_train + 50:
        raise DiscoveryError(f"the pool has {len(pool)} labelled MOFs: too few for {n_train} training + 50 test")
    order = np.random.default_rng(seed).permutation(len(pool))
    train, test = pool.subset(order[:n_train]), pool.subset(order[n_train:])
    model = DeepEnsemble.fit(train.graphs, train.y, config or EnsembleConfig(seed=seed), progress=progress)
    cold, scored = _scoring_rates(model, test.graphs)
    pred = model.predict(test.graphs)
    if surrogate == "gp":  # the GP on the ensemble's representation and the descriptors replaces its output
        features = gp_features(model, pool.graphs)
        gp = fit_gp(features[order[:n_train]], torch.from_numpy(train.y), domain=features)
        pred.mean, pred.std = gp_prediction(gp, features[order[n_train:]])
    y, mean, std = test.y[:, 0], pred.mean[:, 0], pred.std[:, 0]
    probe = np.array([float(g.globals[0, 5]) for g in test.graphs])  # log10 K_H of the probe, + 5
    return {"surrogate": surrogate, "target": pool.targets[0], "spearman": float(spearmanr(y, mean).statistic),
            "mae_log10": float(np.abs(y - mean).mean()),
            "coverage_68": _coverage(y, mean, std, 0.68), "coverage_95": _coverage(y, mean, std, 0.95),
            "train_s": round(model.info["train_s"], 1), "train_cpu_s": round(model.info["train_cpu_s"], 1),
            "predict_per_s": round(scored, 1), "predict_per_s_first_pass": round(cold, 1), "n_train": len(train), "n_test": len(test),
            "members": model.config.members, "calibration_scale": model.scale.tolist(),
            "other_targets": {t: {"spearman": float(spearmanr(test.y[:, j], pred.mean[:, j]).statistic),
                                  "mae_log10": float(np.abs(test.y[:, j] - pred.mean[:, j]).mean()),
                                  "coverage_95": _coverage(test.y[:, j], pred.mean[:, j], pred.std[:, j], 0.95)}
                              for j, t in enumerate(pool.targets) if j > 0},
            "baseline_probe_kh_spearman": float(spearmanr(y, probe).statistic), "data_version": pool.data_version}


def _coverage(y: np.ndarray, mean: np.ndarray, std: np.ndarray, level: float) -> float:
    half = norm.ppf(0.5 + level / 2) * std
    return float(np.mean(np.abs(y - mean) <= half))


def _scoring_rates(model: DeepEnsemble, graphs: Sequence, at_least: int = 5000) -> tuple[float, float]:
    """MOFs scored per wall-clock second (all members, calibrated), on graphs already built: on a first pass
    over ``graphs``, which embeds each building block the first time it is met (real MOFs bring many new
    units), and then with every block's vector cached, as a long-running scorer of a library is."""
    model.predict(graphs[:1])  # one-off set-up, not a per-MOF cost
    t0 = time.perf_counter()
    model.predict(graphs)
    first = len(graphs) / (time.perf_counter() - t0)
    batch = list(graphs) * max(1, math.ceil(at_least / max(1, len(graphs))))
    t0 = time.perf_counter()
    model.predict(batch)
    return first, len(batch) / (time.perf_counter() - t0)


# ---- acquisition --------------------------------------------------------------------------------------
def run_campaign(pool: LabelledPool, strategy: str, seed: int, budget: int, q: int, n_init: int,
                 config: EnsembleConfig, planner: PlannerConfig, surrogate: str = "ensemble") -> list[int]:
    """Rows of ``pool`` in the order a lookup-oracle campaign evaluates them."""
    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.choice(len(pool), size=n_init, replace=False)]
    plan = Planner(replace(planner, strategy=strategy, seed=seed))
    model = None
    while len(order) < budget:
        left = np.setdiff1d(np.arange(len(pool)), order)
        k = min(q, budget - len(order))
        if strategy == "random":
            order += [int(left[i]) for i in plan.select(None, left.reshape(-1, 1), None, k).rows]
            continue
        model = DeepEnsemble.fit([pool.graphs[i] for i in order], pool.y[order],
                                 replace(config, seed=seed * 100 + len(order)), warm_start=model)
        if surrogate == "gp":
            X = gp_features(model, pool.graphs)
            bt_model = fit_gp(X[order], torch.from_numpy(pool.y[order]), domain=X)
        else:
            bt_model, X = ensemble_model(model, pool.graphs, known={i: pool.y[i] for i in order})
        picked = plan.select(bt_model, X[left], X[order], k).rows
        order += [int(left[i]) for i in picked]
    return order


def calls_to_find(order: Sequence[int], targets: set[int], k: int) -> int | None:
    """Oracle calls until ``k`` of ``targets`` have been evaluated (None: not within ``order``)."""
    found = 0
    for calls, row in enumerate(order, start=1):
        found += row in targets
        if found >= k:
            return calls
    return None


def benchmark_acquisition(source: str | Path | None = None, seeds: int = 5, budget_fraction: float = 0.1,
                          q: int = 20, n_init: int = 10, config: EnsembleConfig | None = None,
                          plot: str | Path | None = "discovery_curve.png", progress: bool = True,
                          workers: int | None = None, surrogate: str = "ensemble") -> dict[str, Any]:
    pool = load_pool(source, progress=progress)
    n = len(pool)
    budget = int(budget_fraction * n)
    top = set(np.argsort(-pool.y[:, 0])[: max(1, math.ceil(0.01 * n))].tolist())
    half = math.ceil(len(top) / 2)
    config = config or EnsembleConfig(members=4, epochs=15)  # warm-started each round: fewer epochs suffice
    planner = PlannerConfig(objectives=(pool.targets[0],), targets=pool.targets)
    orders: dict[str, list[list[int]]] = {"botorch": [], "greedy": [], "random": []}
    t0 = time.monotonic()
    runs = [(s, seed, n if s == "random" else budget) for seed in range(seeds) for s in orders]
    # random runs on to the end of the pool: its calls to the target are measured, not extrapolated
    with _campaign_pool(workers, pool, q, n_init, config, planner, surrogate) as ex:
        for (strategy, _, _), order in zip(runs, tqdm(ex.map(_campaign, runs), total=len(runs), desc="campaigns",
                                                      disable=not progress)):
            orders[strategy].append(order)
    calls = {s: [calls_to_find(o, top, half) for o in os] for s, os in orders.items()}
    recall = {s: float(np.mean([len(top & set(o[:budget])) / len(top) for o in os])) for s, os in orders.items()}
    mean_calls = {s: (float(np.mean(c)) if all(c) else None) for s, c in calls.items()}
    out = {"acceleration_factor": _ratio(mean_calls["random"], mean_calls["botorch"]),
           "enhancement_factor": _ratio(recall["botorch"], recall["random"]),
           "top1pct_recall": recall, "calls_to_half_top1pct": calls, "mean_calls_to_half_top1pct": mean_calls,
           "random_expected_calls": half * (n + 1) / (len(top) + 1),
           "acceleration_vs_greedy": _ratio(mean_calls["greedy"], mean_calls["botorch"]),
           "best_found_log10": {s: float(np.mean([pool.y[o[:budget], 0].max() for o in os])) for s, os in orders.items()},
           "surrogate": surrogate, "pool": n, "top1pct": len(top), "budget": budget, "q": q, "n_init": n_init, "seeds": seeds,
           "wall_s": round(time.monotonic() - t0, 1), "data_version": pool.data_version}
    if plot:
        out["plot"] = str(discovery_curve_plot(orders, top, budget, plot))
    return out


_SHARED: dict[str, Any] = {}


def _init_campaigns(pool, q, n_init, config, planner, surrogate, units) -> None:
    torch.set_num_threads(1)  # one campaign per core: more threads per process only contend
    register_units(units)  # the pool's graphs index real MOFs' units as the parent registered them
    _SHARED.update(pool=pool, q=q, n_init=n_init, config=config, planner=planner, surrogate=surrogate)


def _campaign(run: tuple[str, int, int]) -> list[int]:
    strategy, seed, budget = run
    s = _SHARED
    return run_campaign(s["pool"], strategy, seed, budget, s["q"], s["n_init"], s["config"], s["planner"],
                        s["surrogate"])


def _campaign_pool(workers: int | None, *shared) -> ProcessPoolExecutor:
    """Campaigns are independent: one process per core (spawned, so that torch starts clean)."""
    return ProcessPoolExecutor(max_workers=workers or default_workers(), mp_context=mp.get_context("spawn"),
                               initializer=_init_campaigns, initargs=(*shared, registered_units()))


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def discovery_curve_plot(orders: dict[str, list[list[int]]], top: set[int], budget: int, path: str | Path) -> Path:
    """Top-1 % recall against oracle calls, mean and range over seeds, per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    calls = np.arange(1, budget + 1)
    for strategy, runs in orders.items():
        curves = np.array([np.cumsum([r in top for r in o[:budget]]) / len(top) for o in runs])
        ax.plot(calls, curves.mean(0), label=strategy)
        ax.fill_between(calls, curves.min(0), curves.max(0), alpha=0.2)
    ax.set(xlabel="oracle calls", ylabel="fraction of the top 1 % found", title="Discovery curve (lookup oracle)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
