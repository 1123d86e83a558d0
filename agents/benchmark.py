"""``discovery benchmark loop``: how well the Ray loop keeps its oracle workers busy.

The same campaign (pool table proposer, BoTorch on the GNN ensemble, retraining every round) runs with
one and with two oracle workers; the oracle is the lookup of the committed labels, made to take
``delay_s`` per call so that it stands for a simulation without spending the CPU a simulation would (the
planner and the retraining need that CPU; what is measured is whether workers wait for them).

- ``oracle_utilization``: busy time of the workers / (workers x span from first start to last finish);
- ``overhead_s_per_round``: idle worker time per round and worker, and its fraction of a round;
- ``speedup_2_workers``: span with one worker / span with two.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from discovery.campaign.report import throughput

from agents.campaign import Campaign


def _config(budget: int, batch_size: int, delay_s: float, workers: int) -> dict[str, Any]:
    return {"name": f"loop-benchmark-{workers}w", "seed": 0, "budget": budget, "batch_size": batch_size,
            "proposer": {"kind": "table", "candidates_per_round": 4 * batch_size},
            "oracle": {"kind": "lookup", "lookup_delay_s": delay_s},
            "surrogate": {"members": 3, "epochs": 10, "retrain_every": batch_size, "min_train": max(10, batch_size)},
            "resources": {"oracle_workers": workers}, "tracking": {"mlflow": False}}


def _one(budget: int, batch_size: int, delay_s: float, workers: int, root: Path) -> dict[str, Any]:
    campaign = Campaign.from_config(_config(budget, batch_size, delay_s, workers), run_dir=root / f"{workers}w")
    t0 = time.monotonic()
    campaign.run(progress=False)
    wall = time.monotonic() - t0
    st = campaign.state
    res = [st.results[i] for i in st.order]
    span = max(r["finished"] for r in res) - min(r["started"] for r in res)
    busy = sum(r["finished"] - r["started"] for r in res)
    rounds = len([r for r in st.rounds.values() if r.selected])
    idle_per_worker = (workers * span - busy) / workers
    out = {"workers": workers, "wall_s": round(wall, 1), "span_s": round(span, 1), "rounds": rounds,
           "oracle_utilization": round(throughput(st, workers=workers)["worker_utilization"], 3),
           "overhead_s_per_round": round(idle_per_worker / rounds, 2),
           "overhead_fraction_of_round": round(idle_per_worker / span, 3),
           "model_versions": len(st.models), "evaluated": len(res)}
    campaign.close()
    return out


def benchmark_loop(delay_s: float = 2.0, budget: int = 48, batch_size: int = 8) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        two = _one(budget, batch_size, delay_s, 2, Path(tmp))
        one = _one(budget, batch_size, delay_s, 1, Path(tmp))
    return {"oracle_utilization": two["oracle_utilization"], "overhead_s_per_round": two["overhead_s_per_round"],
            "overhead_fraction_of_round": two["overhead_fraction_of_round"],
            "speedup_2_workers": round(one["span_s"] / two["span_s"], 2), "delay_s": delay_s, "budget": budget,
            "batch_size": batch_size, "runs": [two, one]}
