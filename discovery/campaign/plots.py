"""Campaign figures: the discovery curve (best so far against oracle calls) and the Pareto front.

Both read the history table of ``campaign_report.history`` (one row per finished oracle evaluation, in
order, with ``call``, ``status``, ``origin`` and one column per objective, all maximised) and write a PNG
without a display. The Pareto front is ``discovery.campaign.pareto.pareto_mask`` (plain numpy: no model library).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from discovery.campaign.pareto import pareto_mask


def discovery_curve(history: pd.DataFrame, objectives: Sequence[str], path: str | Path,
                    top_threshold: dict[str, float] | None = None,
                    random_reference: dict[str, np.ndarray] | None = None) -> Path:
    """Best-so-far of each objective against oracle calls, one panel per objective; where given, the
    reference's top-1 % line and what random search would have found by each call (``random_search``
    over ``random_reference``'s values)."""
    plt = _pyplot()
    objectives = list(objectives)
    fig, axes = plt.subplots(1, max(len(objectives), 1), figsize=(5.5 * max(len(objectives), 1), 4.0),
                             squeeze=False)
    colours = _origin_colours(history)
    for ax, name in zip(axes[0], objectives):
        _curve_panel(ax, history, name, colours, (top_threshold or {}).get(name), (random_reference or {}).get(name))
    n_failed = int((history["status"] != "ok").sum()) if "status" in history else 0
    fig.suptitle(f"{len(history)} oracle calls, {n_failed} failed")
    fig.tight_layout()
    return _save(plt, fig, path)


def pareto_plot(history: pd.DataFrame, objectives: tuple[str, str], path: str | Path) -> Path:
    """All successful evaluations in two objectives (both maximised), the Pareto front highlighted."""
    plt = _pyplot()
    x_name, y_name = objectives
    ok = _ok(history)
    values = ok[[x_name, y_name]].to_numpy(float) if len(ok) else np.zeros((0, 2))
    mask = pareto_mask(values)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.scatter(values[~mask, 0], values[~mask, 1], s=12, c="0.6", alpha=0.6, label="evaluated")
    front = values[mask]
    front = front[np.lexsort((-front[:, 1], front[:, 0]))]
    # "pre": between two front points the boundary of the dominated region drops first, then runs right
    ax.step(front[:, 0], front[:, 1], where="pre", c="tab:red", lw=1.2)
    ax.scatter(front[:, 0], front[:, 1], s=30, c="tab:red", zorder=3, label=f"Pareto front ({len(front)})")
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(f"{int((~np.isnan(values).any(axis=1)).sum())} evaluated MOFs")
    fig.tight_layout()
    return _save(plt, fig, path)


def random_search(values: np.ndarray, n_max: int) -> np.ndarray:
    """Expected best of n draws without replacement from ``values``, for n = 1 .. min(n_max, len(values)):
    P(best = the k-th smallest) = C(k - 1, n - 1) / C(N, n), summed in logs (N in the thousands)."""
    from scipy.special import gammaln

    v = np.sort(np.asarray(values, dtype=float))
    N = len(v)
    n = np.arange(1, min(n_max, N) + 1)[:, None]
    k = np.arange(1, N + 1)[None, :]
    log_w = (gammaln(k) - gammaln(n) - gammaln(np.maximum(k - n + 1, 1))
             - gammaln(N + 1) + gammaln(n + 1) + gammaln(N - n + 1))
    return (np.where(k >= n, np.exp(log_w), 0.0) * v[None, :]).sum(axis=1)


def _curve_panel(ax, history: pd.DataFrame, name: str, colours: dict[str, str], threshold: float | None,
                 reference: np.ndarray | None = None) -> None:
    ok = _ok(history)
    calls = ok["call"].to_numpy(float) if len(ok) else np.zeros(0)
    values = ok[name].to_numpy(float) if len(ok) else np.zeros(0)
    for origin, colour in colours.items():
        sel = (ok["origin"].fillna("unknown").astype(str) == origin).to_numpy() if len(ok) else np.zeros(0, bool)
        if sel.any():
            ax.scatter(calls[sel], values[sel], s=10, c=colour, alpha=0.35, label=origin)
    finite = np.isfinite(values)
    if finite.any():
        best = np.maximum.accumulate(values[finite])
        last = history["call"].max() if "call" in history else calls[finite][-1]
        ax.step(np.append(calls[finite], last), np.append(best, best[-1]), where="post", c="k", lw=1.5,
                label="best so far")
    if threshold is not None:
        ax.axhline(threshold, ls="--", c="tab:red", lw=1, label="top 1 % of the reference")
    if reference is not None and len(history):
        expected = random_search(reference, int(history["call"].max()) if "call" in history else len(history))
        ax.plot(np.arange(1, len(expected) + 1), expected, ls=":", c="0.3", lw=1.2,
                label="random search (expected best)")
    ax.set_xlabel("oracle calls")
    ax.set_ylabel(name)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")


def _ok(history: pd.DataFrame) -> pd.DataFrame:
    if history.empty or "status" not in history:
        return history.iloc[0:0]
    return history[history["status"] == "ok"]


def _origin_colours(history: pd.DataFrame) -> dict[str, str]:
    """The same colour for an origin in every panel."""
    if "origin" not in history:
        return {}
    origins = sorted(set(history["origin"].fillna("unknown").astype(str)))
    return {o: f"C{k % 10}" for k, o in enumerate(origins)}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
