"""What a campaign has found, from its state: the history table, the best candidates, the Pareto front,
per-round metrics and the report ``discovery report`` prints."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import norm

from discovery.campaign.state import CampaignState
from discovery.campaign.pareto import pareto_mask

DENOVO = "diffusion-denovo"  # the origin of the diffusion generator's de novo samples


def objective_names(state: CampaignState) -> tuple[str, ...]:
    return state.config.planner.objectives


def objective_values(state: CampaignState, ids: Sequence[str]) -> np.ndarray:
    """``n x n_objectives`` (NaN where a target is missing), objectives evaluated by the planner's names."""
    planner = state.config.planner_config()
    if not len(ids):
        return np.zeros((0, len(planner.objectives)))
    Y = torch.from_numpy(state.values(ids, planner.targets))
    return np.stack([planner.output(o)(Y).numpy() for o in planner.objectives], axis=-1).reshape(len(ids), -1)


def history(state: CampaignState) -> pd.DataFrame:
    """One row per finished oracle evaluation, in the order results arrived; with a funnel, then one row
    per MOF screened and not (yet) promoted (status "screened"), and a ``stage`` column."""
    objectives = objective_names(state)
    screened = [i for i in state.screens if i not in state.results]
    ids = [*state.order, *screened]
    values = objective_values(state, ids)
    rows = []
    for call, (cid, v) in enumerate(zip(ids, values), start=1):
        res, cand, rnd = state.results.get(cid) or state.screens[cid], state.candidates.get(cid, {}), state.round_of(cid)
        pred = state.rounds[rnd].predictions.get(cid, {}) if rnd is not None else {}
        status = res["status"] if cid in state.results else "screened"
        row = {"call": call, "id": cid, "round": rnd, "status": status, "reason": res.get("reason"),
               "origin": cand.get("origin"), "parent": cand.get("parent"), "mutation": cand.get("mutation"),
               "generator": cand.get("generator"), "selected_by": state.rounds[rnd].strategy if rnd is not None else None,
               "model_version": state.rounds[rnd].model_version if rnd is not None else None,
               "worker": res.get("worker"), "wall_s": res.get("wall_s"), "cpu_s": res.get("cpu_s"),
               **dict(zip(objectives, v.tolist()))}
        if state.config.funnel:
            row["stage"] = res.get("stage", "full")
        for t, x in res.get("values", {}).items():
            row.setdefault(t, x)
        for t, m in zip(pred.get("targets", []), pred.get("mean", [])):
            row[f"pred_{t}"] = m
        rows.append(row)
    return pd.DataFrame(rows)


def best(state: CampaignState, k: int = 10) -> pd.DataFrame:
    """The k best evaluated candidates by the first objective."""
    h = history(state)
    if h.empty:
        return h
    return h[h.status == "ok"].sort_values(objective_names(state)[0], ascending=False).head(k).reset_index(drop=True)


def pareto_front(state: CampaignState) -> pd.DataFrame:
    """Evaluated candidates no other one beats in every objective (all maximised)."""
    h = history(state)
    if h.empty:
        return h
    ok = h[h.status == "ok"]
    mask = pareto_mask(ok[list(objective_names(state))].to_numpy(float))
    return ok[mask].sort_values(objective_names(state)[0], ascending=False).reset_index(drop=True)


def round_metrics(state: CampaignState, r: int, top_threshold: float | None = None,
                  workers: int | None = None) -> dict[str, float | None]:
    """Metrics logged when round ``r`` is complete (MLflow step ``r``)."""
    ids = state.rounds[r].selected
    ok = [i for i in state.order if state.results[i]["status"] == "ok"]
    values = objective_values(state, ok)
    out: dict[str, float | None] = {"round": r, "evaluated": len(state.results), "failed": len(state.results) - len(ok)}
    if state.config.funnel:  # screens, promotions, and the budget spent on both (full evaluations' worth)
        out.update(funnel_counts(state))
    for j, name in enumerate(objective_names(state)):
        out[f"best_{name}"] = float(np.nanmax(values[:, j])) if len(ok) and np.isfinite(values[:, j]).any() else None
    if values.shape[1] == 2 and len(ok):
        out["hypervolume"] = hypervolume_2d(values, reference=np.nanmin(values, axis=0))
    if top_threshold is not None and len(ok):
        out["top_found"] = int(np.sum(values[:, 0] >= top_threshold))
    out.update(denovo_metrics(state, ok, values, top_threshold))
    out.update(prediction_quality(state, r))
    out.update(throughput(state, ids, workers, round_index=r))
    return out


def denovo_metrics(state: CampaignState, ok: Sequence[str], values: np.ndarray,
                   top_threshold: float | None) -> dict[str, float | None]:
    """What the de novo share of the diffusion generator found (none when it proposed nothing de novo)."""
    if not any(c.get("origin") == DENOVO for c in state.candidates.values()):
        return {}
    rows = [k for k, i in enumerate(ok) if state.candidates.get(i, {}).get("origin") == DENOVO]
    first = values[rows, 0] if rows else np.zeros(0)
    out: dict[str, float | None] = {"denovo_evaluated": len(rows)}
    out[f"best_{objective_names(state)[0]}_denovo"] = float(np.nanmax(first)) \
        if len(first) and np.isfinite(first).any() else None
    if top_threshold is not None:
        out["top_found_denovo"] = int(np.sum(first >= top_threshold))
    return out


def funnel_counts(state: CampaignState) -> dict[str, float]:
    picks = state.picks()
    return {"screened": len(state.screens) + sum(state.results[i].get("stage") == "screen" for i in state.results),
            "promoted": sum(s == "promote" for _, _, s in picks), "budget_spent": state.spent}


def prediction_quality(state: CampaignState, r: int) -> dict[str, float]:
    """Surrogate error and interval coverage on the round's newly validated results (first target)."""
    rnd, errs, zs = state.rounds[r], [], []
    for cid, pred in rnd.predictions.items():
        res = state.result_of(cid, rnd.stage(cid))  # a funnel's screen: what the screen measured
        if not res or res["status"] != "ok" or not pred.get("targets"):
            continue
        target = pred["targets"][0]
        if target in res["values"]:
            errs.append(res["values"][target] - pred["mean"][0])
            zs.append(abs(errs[-1]) / max(pred["std"][0], 1e-9))
    if not errs:
        return {}
    return {"surrogate_mae": float(np.mean(np.abs(errs))),
            "surrogate_coverage_68": float(np.mean(np.array(zs) <= norm.ppf(0.84))),
            "surrogate_coverage_95": float(np.mean(np.array(zs) <= norm.ppf(0.975)))}


def throughput(state: CampaignState, ids: Sequence[str] | None = None, workers: int | None = None,
               round_index: int | None = None) -> dict[str, float]:
    """Oracle results per hour and worker utilisation (busy time over workers x span) over ``ids`` (the
    picks of round ``round_index``: a funnel's screens count, each call once); default every call."""
    if ids is None:
        calls = [*state.results.values(), *state.screens.values()]
    else:
        stage = state.rounds[round_index].stage if round_index is not None else (lambda i: "full")
        calls = [state.result_of(i, stage(i)) for i in ids]
    res = [r for r in calls if r is not None and "started" in r]
    if not res:
        return {}
    span = max(r["finished"] for r in res) - min(r["started"] for r in res)
    busy = sum(r["finished"] - r["started"] for r in res)
    workers = workers or len({r.get("worker") for r in res})
    out = {"oracle_results_per_h": 3600.0 * len(res) / span if span > 0 else math.inf}
    if span > 0 and workers:
        out["worker_utilization"] = min(1.0, busy / (workers * span))
    return out


def hypervolume_2d(values: np.ndarray, reference: np.ndarray) -> float:
    """Area dominated by the points (both maximised) above ``reference``."""
    pts = values[np.isfinite(values).all(axis=1)]
    pts = pts[pareto_mask(pts)]
    pts = pts[np.argsort(-pts[:, 0])]
    area, top = 0.0, reference[1]
    for x, y in pts:
        if y > top:
            area += (x - reference[0]) * (y - top)
            top = y
    return float(area)


def report(state: CampaignState, k: int = 10) -> dict[str, Any]:
    """Counts, best candidates, Pareto front, failures by reason and every oracle evaluation."""
    cands = state.candidates.values()
    invalid = Counter(c.get("reason", "unknown") for c in cands if c["status"] != "valid")
    failed = Counter(r.get("reason") or "unknown" for r in state.results.values() if r["status"] == "failed")
    levels = {"screen": state.config.oracle.screen, "promote": state.config.promote_levels}
    evaluations = [{"candidate_id": i, "round": state.round_of(i),
                    "level": ",".join(levels.get(state.stage_of(i)) or state.config.oracle.properties),
                    "status": state.results[i]["status"] if i in state.results else
                    "screened" if state.stage_of(i) == "screen" and i in state.screens else "pending",
                    **({"values": state.results[i].get("values", {}), "reason": state.results[i].get("reason"),
                        "worker": state.results[i].get("worker"), "wall_s": state.results[i].get("wall_s")}
                       if i in state.results else {})} for i in state.selected]
    return {"run_dir": str(state.run_dir), "name": state.config.name, "objectives": list(objective_names(state)),
            "counts": {"proposed": len(state.candidates), "valid": sum(c["status"] == "valid" for c in cands),
                       "invalid": sum(invalid.values()), "selected": len(state.selected),
                       "evaluated": len(state.results), "ok": sum(r["status"] == "ok" for r in state.results.values()),
                       "failed": sum(failed.values()), "pending": len(state.pending()),
                       "budget": state.config.budget, "rounds": len([r for r in state.rounds.values() if r.selected]),
                       "model_versions": len(state.models),
                       **(funnel_counts(state) if state.config.funnel else {})},
            "by_origin": origin_counts(state),
            "invalid_by_reason": dict(invalid), "failures_by_reason": dict(failed),
            "best": _records(best(state, k)), "pareto_front": _records(pareto_front(state)),
            "evaluations": evaluations}


def origin_counts(state: CampaignState) -> dict[str, dict[str, Any]]:
    """Per origin (diffusion-edit, diffusion-denovo, design-space draw, ...): proposed, valid, evaluated and
    the best value of the first objective."""
    key = f"best_{objective_names(state)[0]}"
    ok = [i for i in state.order if state.results[i]["status"] == "ok"]
    first = dict(zip(ok, objective_values(state, ok)[:, 0].tolist()))
    out: dict[str, dict[str, Any]] = {}
    for cid, cand in state.candidates.items():
        row = out.setdefault(str(cand.get("origin")), {"proposed": 0, "valid": 0, "evaluated": 0, key: None})
        row["proposed"] += 1
        row["valid"] += cand["status"] == "valid"
        value = first.get(cid)
        if value is not None:
            row["evaluated"] += 1
            if math.isfinite(value) and (row[key] is None or value > row[key]):
                row[key] = float(value)
    return out


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    keep = [c for c in frame.columns if c in ("id", "round", "origin", "model_version") or c.startswith("log10")]
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
            for row in frame[keep].to_dict("records")]
