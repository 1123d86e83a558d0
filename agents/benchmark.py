"""``discovery benchmark loop``: how well the Ray loop keeps its oracle workers busy.

The same campaign (pool table proposer, BoTorch on the GNN ensemble, retraining every round) runs with
one and with two oracle workers; the oracle is the lookup of the committed labels, made to take
``delay_s`` per call so that it stands for a simulation without spending the CPU a simulation would (the
planner and the retraining need that CPU; what is measured is whether workers wait for them).

- ``oracle_utilization``: busy time of the workers / (workers x span from first start to last finish);
- ``overhead_s_per_round``: idle worker time per round and worker, and its fraction of a round;
- ``speedup_2_workers``: span with one worker / span with two.

With ``workers`` (e.g. 8, 32, 128) it measures instead how many workers one driver keeps busy: each count
runs the same campaign with a batch as large as the worker pool, the workers simulated as slots of a few
threaded actors (``resources.oracle_concurrency``; 128 worker processes would not fit in this machine's
memory, and a lookup only waits), and reports the utilisation and the driver's CPU per result.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from discovery.campaign.report import throughput

from agents.campaign import Campaign


SLOTS_PER_ACTOR = 16  # simulated workers per threaded oracle actor in the scaling runs


def _config(budget: int, batch_size: int, delay_s: float, workers: int, slots: int = 1) -> dict[str, Any]:
    resources = {"oracle_workers": workers, "oracle_concurrency": min(slots, workers)}
    if slots > 1:
        resources["cpus_per_oracle"] = 0.01  # the simulated workers wait; the cores stay the planner's
    return {"name": f"loop-benchmark-{workers}w", "seed": 0, "budget": budget, "batch_size": batch_size,
            "proposer": {"kind": "table", "candidates_per_round": 4 * batch_size},
            "oracle": {"kind": "lookup", "lookup_delay_s": delay_s},
            "surrogate": {"members": 3, "epochs": 10, "retrain_every": batch_size, "min_train": max(10, batch_size)},
            "resources": resources, "tracking": {"mlflow": False}}


def _one(budget: int, batch_size: int, delay_s: float, workers: int, root: Path, slots: int = 1) -> dict[str, Any]:
    campaign = Campaign.from_config(_config(budget, batch_size, delay_s, workers, slots), run_dir=root / f"{workers}w")
    t0, cpu0 = time.monotonic(), time.process_time()
    campaign.run(progress=False)
    wall, driver_cpu = time.monotonic() - t0, time.process_time() - cpu0
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
           "model_versions": len(st.models), "evaluated": len(res),
           "driver_cpu_ms_per_result": round(1000 * driver_cpu / max(1, len(res)), 1)}
    campaign.close()
    return out


def benchmark_scaling(workers: Sequence[int], delay_s: float = 10.0, rounds: int = 4) -> dict[str, Any]:
    """For each worker count n: a campaign of ``rounds`` batches of n candidates on n simulated workers."""
    with tempfile.TemporaryDirectory() as tmp:
        runs = [_one(rounds * n, n, delay_s, n, Path(tmp), slots=SLOTS_PER_ACTOR) for n in workers]
    return {"delay_s": delay_s, "rounds": rounds, "slots_per_actor": SLOTS_PER_ACTOR,
            "oracle_utilization": {str(r["workers"]): r["oracle_utilization"] for r in runs},
            "driver_cpu_ms_per_result": {str(r["workers"]): r["driver_cpu_ms_per_result"] for r in runs},
            "runs": runs}


def benchmark_loop(delay_s: float = 2.0, budget: int = 48, batch_size: int = 8) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        two = _one(budget, batch_size, delay_s, 2, Path(tmp))
        one = _one(budget, batch_size, delay_s, 1, Path(tmp))
    return {"oracle_utilization": two["oracle_utilization"], "overhead_s_per_round": two["overhead_s_per_round"],
            "overhead_fraction_of_round": two["overhead_fraction_of_round"],
            "speedup_2_workers": round(one["span_s"] / two["span_s"], 2), "delay_s": delay_s, "budget": budget,
            "batch_size": batch_size, "runs": [two, one]}
