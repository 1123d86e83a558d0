"""The campaign core in plain Python (``discovery.campaign``): no Ray, the same selections as on Ray, and
what the generator is told follows the campaign's own objectives."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from discovery.campaign import Campaign, Candidate, Generator, Oracle, Outcome, Surrogate

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"budget": 16, "batch_size": 4, "proposer": {"kind": "table", "candidates_per_round": 24},
         "oracle": {"kind": "lookup"}, "surrogate": {"members": 2, "epochs": 4, "retrain_every": 4, "min_train": 10},
         "tracking": {"mlflow": False}}


def test_the_readme_campaign_runs_without_ray(tmp_path):
    """The README's plain-Python campaign, in a fresh interpreter: 16 evaluations, Ray never imported."""
    block = next(b for b in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
                 if "InProcessExecutor" in b)
    check = ("\nimport sys, json\nprint(json.dumps({'ray': 'ray' in sys.modules, "
             "'evaluated': campaign.report()['counts']['evaluated']}))\n")
    out = subprocess.run([sys.executable, "-c", block + check], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"ray": False, "evaluated": 16}


def test_rounds_in_process(tmp_path):
    campaign = Campaign.from_config(SMALL, run_dir=tmp_path / "run")
    seen = list(campaign.rounds())
    assert [r["round"] for r in seen] == [0, 1, 2, 3]
    assert all(r["evaluated"] == 4 * (k + 1) for k, r in enumerate(seen))
    assert campaign.state.models and campaign.state.done  # a surrogate was fitted once 10 results were in
    campaign.close()
    assert (tmp_path / "run" / "artifacts" / "campaign.csv").exists()  # written when the campaign closes


def test_the_discovery_curve_carries_the_top_1_percent_and_random_search(tmp_path, monkeypatch):
    from discovery.campaign import plots
    from discovery.pool import POOL_TABLE, read_table

    drawn = {}
    real = plots.discovery_curve

    def spy(history, objectives, path, **references):
        drawn.update(references)
        return real(history, objectives, path, **references)

    monkeypatch.setattr(plots, "discovery_curve", spy)
    campaign = Campaign.from_config({**SMALL, "budget": 8}, run_dir=tmp_path / "run")
    list(campaign.rounds())
    campaign.close()
    labels = sorted((r["labels"]["log10_kh_co2"] for r in read_table(POOL_TABLE)[1] if r.get("cg")), reverse=True)
    assert sorted(drawn["random_reference"]["log10_kh_co2"], reverse=True) == labels
    assert drawn["top_threshold"]["log10_kh_co2"] == labels[round(0.01 * len(labels)) - 1]
    assert (tmp_path / "run" / "artifacts" / "discovery_curve.png").stat().st_size > 1000


def test_the_reference_is_the_design_table_labelled_with_the_oracles_charges(tmp_path, monkeypatch):
    """A campaign simulating with EQeq charges is judged against the EQeq-labelled design space, one without
    charges against the uncharged one, and a campaign whose charges have no labelled table against none."""
    import gzip

    from discovery import pool
    from discovery.campaign.parts import reference_values
    from discovery.config import load_config

    def table(charges, values):
        path = tmp_path / f"{charges}.jsonl.gz"
        with gzip.open(path, "wt") as fh:
            for row in [{"format": 1, "charges": charges}, *({"id": f"m{k}", "labels": {"log10_kh_co2": v}}
                                                              for k, v in enumerate(values))]:
                fh.write(json.dumps(row) + "\n")
        return path

    monkeypatch.setattr(pool, "DESIGN_TABLES", {"none": table("none", [-5.0, -4.5]),
                                                "eqeq": table("eqeq", [-4.0, -3.5, -3.0]),
                                                "cif": tmp_path / "missing.jsonl.gz"})
    seen = {c: reference_values(load_config(ROOT / "configs" / "quickstart.yaml", [f"oracle.charges={c}"]))
            for c in ("none", "eqeq", "cif", "auto")}
    assert sorted(seen["none"]) == [-5.0, -4.5] and sorted(seen["eqeq"]) == [-4.0, -3.5, -3.0]
    assert seen["cif"] is None and seen["auto"] is None


class FlakyTestOracle(Oracle):
    """Test double: crashes on its first call, then answers from the values it was given."""

    def __init__(self, values):
        self.values, self.calls = values, 0

    def evaluate(self, candidate: Candidate) -> Outcome:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("simulated crash")
        return Outcome("ok", self.values[candidate.id])


def test_a_crashed_evaluation_is_retried_in_process(tmp_path):
    from discovery.pool import POOL_TABLE, read_table

    values = {r["id"]: r["labels"] for r in read_table(POOL_TABLE)[1]}
    oracle = FlakyTestOracle(values)
    campaign = Campaign.from_config({**SMALL, "budget": 4}, run_dir=tmp_path / "run", oracle=oracle)
    campaign.step()
    results = campaign.state.results.values()
    assert len(results) == 4 and all(r["status"] == "ok" for r in results)
    assert sorted(r["attempts"] for r in results) == [1, 1, 1, 2]
    campaign.close()


@pytest.mark.ray
def test_same_selections_in_process_and_on_ray(ray_session, tmp_path):
    from agents.campaign import Campaign as RayCampaign

    picks = {}
    for name, cls in (("local", Campaign), ("ray", RayCampaign)):
        campaign = cls.from_config(SMALL, run_dir=tmp_path / name)
        picks[name] = [r["selected"] for r in campaign.rounds()]
        campaign.close()
    assert picks["local"] == picks["ray"] and len(picks["local"]) == 4


# ---- the generator follows the campaign's objectives ---------------------------------------------------
class RecordingTestGenerator(Generator):
    """Test double: rows of the pool table; remembers what ``update`` was told."""

    learns = True

    def __init__(self, rows):
        from discovery.campaign.generators import TableGenerator

        self.inner, self.told = TableGenerator(rows), []

    def propose(self, n, context):
        return self.inner.propose(n, context)

    def update(self, results):
        self.told = list(results)
        return None


class TransportTestOracle(Oracle):
    """Test double: K_H from the table, a 'diffusivity' that falls as K_H rises (a trade-off)."""

    def __init__(self, rows):
        self.rows = rows

    def evaluate(self, candidate):
        labels = self.rows[candidate.id]["labels"]
        return Outcome("ok", {**labels, "log10_d_co2": -8.0 - 0.5 * labels["log10_kh_co2"]
                              + 0.1 * (zlib.crc32(candidate.id.encode()) % 7)})  # not hash(): salted per process


class UnusedTestSurrogate(Surrogate):
    """Test double: the random strategy never fits; it only names its targets."""

    def __init__(self, targets):
        self.targets = targets

    def fit(self, version, ids, y):
        raise AssertionError("not used")

    def botorch_inputs(self, pool, observed, known):
        raise AssertionError("not used")


def test_co2_capture_generator_is_told_its_pareto_objectives(tmp_path):
    """configs/co2_capture.yaml optimises K_H(CO2) and D(CO2) under a selectivity constraint (here at the
    pool's median, 10^0.37, so that both sides occur without charges): the generator's feedback ranks
    feasible MOFs first, then by Pareto layer of those two objectives, not by K_H alone."""
    from discovery.campaign.parts import load_table
    from discovery.config import load_config
    from discovery.campaign.pareto import pareto_mask

    config = load_config(ROOT / "configs" / "co2_capture.yaml",
                         ["planner.strategy=random", "planner.minimum.log10_selectivity=0.37", "budget=24", "batch_size=8",
                          "oracle.screen=[]", "proposer.kind=table",
                          "proposer.candidates_per_round=24", "tracking.mlflow=false"])
    rows = load_table(config)
    generator = RecordingTestGenerator(rows)
    with Campaign.from_config(config, run_dir=tmp_path / "run", generator=generator,
                              oracle=TransportTestOracle(rows), surrogate=UnusedTestSurrogate(config.targets)) as campaign:
        list(campaign.rounds())
    told = sorted(generator.told, key=lambda f: -f.score)
    assert len(told) >= 8
    kh = np.array([f.values["log10_kh_co2"] for f in told])
    d = np.array([f.values["log10_d_co2"] for f in told])
    feasible = np.array([f.values["log10_kh_co2"] - f.values["log10_kh_n2"] >= 0.37 for f in told])
    assert feasible.any() and not feasible.all()
    assert not (~feasible[:-1] & feasible[1:]).any()  # every feasible MOF before every infeasible one
    layers, left, k = np.zeros(int(feasible.sum()), dtype=int), np.ones(int(feasible.sum()), dtype=bool), 0
    points = np.column_stack([kh, d])[feasible]
    while left.any():  # non-dominated sorting of the feasible results
        front = np.zeros_like(left)
        front[left] = pareto_mask(points[left])
        layers[front], left, k = k, left & ~front, k + 1
    assert k >= 2 and np.all(np.diff(layers) >= 0)  # told best-first by Pareto layer


def test_a_missing_generator_is_not_trained_unasked_and_leaves_no_run_directory(tmp_path):
    """An hour of training is opt-in (``--train-generator``); the failed start leaves nothing half-made, so the
    same command runs once the model exists."""
    from discovery.errors import DiscoveryError

    config = {"proposer": {"kind": "diffusion", "model": str(tmp_path / "no-model")}, "oracle": {"charges": "none"},
              "tracking": {"mlflow": False}}
    with pytest.raises(DiscoveryError, match="train-generator"):
        Campaign.from_config(config, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_model_files_travel_as_bytes_and_land_once_per_digest(tmp_path):
    """A model directory read on the driver is written back, byte for byte, into a cache folder named by its
    digest; the same files land in the same folder (reused), changed files in another."""
    from discovery.campaign.modelfiles import ModelFiles
    from discovery.errors import DiscoveryError

    src = tmp_path / "model"
    (src / "embedding").mkdir(parents=True)
    (src / "model.json").write_text('{"version": 1}')
    (src / "embedding" / "weights.pt").write_bytes(bytes(range(256)) * 10)
    files = ModelFiles.read(src)
    out = files.materialize(tmp_path / "cache")
    assert out.parent == tmp_path / "cache" and out != src
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        ["embedding/weights.pt", "model.json"]
    assert (out / "embedding" / "weights.pt").read_bytes() == (src / "embedding" / "weights.pt").read_bytes()
    assert files.materialize(tmp_path / "cache") == out and files.nbytes == 2560 + 14
    (src / "model.json").write_text('{"version": 2}')
    assert ModelFiles.read(src).materialize(tmp_path / "cache") != out
    assert not list((tmp_path / "cache").glob(".incoming-*"))  # no scratch folder left behind
    with pytest.raises(DiscoveryError, match="no model directory"):
        ModelFiles.read(tmp_path / "missing")
