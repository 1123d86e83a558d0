"""The closed loop on Ray with cheap oracles: the lookup of the committed pool table, and test doubles."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ray

SMALL = {"budget": 32, "batch_size": 8, "proposer": {"kind": "table", "candidates_per_round": 48},
         "oracle": {"kind": "lookup"}, "surrogate": {"members": 2, "epochs": 6, "retrain_every": 8, "min_train": 10},
         "tracking": {"mlflow": False}}


def _config(**changes):
    config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in SMALL.items()}
    for key, value in changes.items():
        *parents, last = key.split("__")
        node = config
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return config


@pytest.fixture(scope="module")
def by_value(ray_session):
    """Test doubles defined here travel to the Ray workers by value (this module is not importable there)."""
    ray_session.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield


class CrashOnceTestOracle:
    """Test double: kills its worker process the first time it sees a candidate, answers the second time;
    candidates in ``always`` crash every time."""

    def __init__(self, marks: Path, always: tuple[str, ...] = ()) -> None:
        self.marks, self.always = marks, always

    def evaluate(self, candidate):
        from discovery.campaign import Outcome

        mark = self.marks / candidate.id
        if candidate.id in self.always or not mark.exists():
            mark.touch()
            os._exit(1)
        return Outcome("ok", {"log10_kh_co2": -5.0 + 0.01 * len(candidate.id), "log10_kh_n2": -6.0})


def test_campaign_runs_rounds_and_beats_random(ray_session, tmp_path):
    from agents.campaign import Campaign

    best = {}
    for strategy in ("botorch", "random"):
        campaign = Campaign.from_config(_config(budget=48, planner__strategy=strategy), run_dir=tmp_path / strategy)
        report = campaign.run(progress=False)
        h = campaign.history()
        best[strategy] = float(np.sort(h.log10_kh_co2.to_numpy())[-8:].mean())
        assert report["counts"]["evaluated"] == 48 and report["counts"]["failed"] == 0
        if strategy == "botorch":
            assert report["counts"]["model_versions"] >= 2  # retrained as results came in
            assert set(h.selected_by) == {"random", "botorch"}
            assert h[h.selected_by == "botorch"].model_version.notna().all()  # scored-by version recorded
        campaign.close()
    assert best["botorch"] > best["random"]


def test_ask_and_tell(ray_session, tmp_path):
    from agents.campaign import Campaign
    from discovery.errors import DiscoveryError

    campaign = Campaign.from_config(_config(), run_dir=tmp_path / "run")
    asked = campaign.ask(4)
    assert len(asked) == 4 and len({a["id"] for a in asked}) == 4
    with pytest.raises(DiscoveryError, match="not asked"):
        campaign.tell([{"id": "pcu+N0+E0", "values": {"log10_kh_co2": -5.0}}])
    with pytest.raises(DiscoveryError, match="finite"):
        campaign.tell([{"id": asked[0]["id"], "values": {"log10_kh_co2": math.nan}}])
    campaign.tell([{"id": a["id"], "values": {"log10_kh_co2": -5.0 - k, "log10_kh_n2": -6.0}} for k, a in enumerate(asked)])
    assert campaign.best(1).id[0] == asked[0]["id"]
    assert len(campaign.history()) == 4
    again = campaign.ask(4)
    assert not {a["id"] for a in again} & {a["id"] for a in asked}  # never asks twice
    campaign.close()


def test_oracle_slots_share_a_threaded_actor(ray_session, tmp_path):
    """``resources.oracle_concurrency``: four worker slots served by one actor, its calls overlapping (what
    ``discovery benchmark loop --workers`` uses to simulate many workers)."""
    from agents.campaign import Campaign

    config = _config(budget=8, batch_size=4, oracle__lookup_delay_s=0.5, surrogate__min_train=20,
                     resources={"oracle_workers": 4, "oracle_concurrency": 4, "cpus_per_oracle": 0.5})
    campaign = Campaign.from_config(config, run_dir=tmp_path / "run")
    campaign.run(progress=False)
    results = [campaign.state.results[i] for i in campaign.state.order]
    campaign.close()
    assert len(results) == 8 and len({r["worker"] for r in results}) == 1
    spans = sorted((r["started"], r["finished"]) for r in results)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # calls ran at the same time


def test_next_round_is_planned_while_the_oracle_runs(ray_session, tmp_path):
    """A batch as large as the worker pool: round 1 is selected while round 0 is still being evaluated (the
    scheduler once waited for a first result before it planned, idling every worker a round's planning)."""
    import json

    from agents.campaign import Campaign

    config = _config(budget=8, batch_size=4, oracle__lookup_delay_s=4.0, surrogate__min_train=20,
                     resources={"oracle_workers": 4, "oracle_concurrency": 4, "cpus_per_oracle": 0.5})
    with Campaign.from_config(config, run_dir=tmp_path / "run") as campaign:
        campaign.run(progress=False)
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    kinds = [(e["type"], e.get("round")) for e in events]
    first_result = next(k for k, e in enumerate(events) if e["type"] == "result")
    assert kinds.index(("selected", 1)) < first_result


def test_crashed_worker_is_retried_then_recorded(by_value, ray_session, tmp_path):
    from agents.campaign import Campaign

    marks = tmp_path / "marks"
    marks.mkdir()
    campaign = Campaign.from_config(_config(budget=4, batch_size=4, oracle__kind="raspa", oracle__max_retries=1,
                                            resources__oracle_workers=2), run_dir=tmp_path / "run",
                                    oracle=CrashOnceTestOracle(marks))
    first = campaign.ask(4)[0]["id"]  # plan one round, then let the scheduler evaluate it
    campaign.state.close()
    campaign.close()
    campaign = Campaign.resume(tmp_path / "run", oracle=CrashOnceTestOracle(marks, always=(first,)))
    report = campaign.run(progress=False)
    statuses = {e["candidate_id"]: e for e in report["evaluations"]}
    assert statuses[first]["status"] == "failed" and report["failures_by_reason"] == {"worker_crash": 1}
    assert sum(e["status"] == "ok" for e in statuses.values()) == 3  # each crashed once, then succeeded
    campaign.close()


def test_mlflow_receives_params_metrics_and_artifacts(ray_session, tmp_path):
    from mlflow import MlflowClient

    from agents.campaign import Campaign

    root = tmp_path / "mlruns"
    config = _config(budget=32, tracking={"mlflow": True, "root": str(root), "experiment": "test"})
    campaign = Campaign.from_config(config, run_dir=tmp_path / "run")
    campaign.run(progress=False)
    run_id = (tmp_path / "run" / "mlflow_run_id").read_text().strip()
    campaign.close()
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    run = client.get_run(run_id)
    assert run.data.params["budget"] == "32" and run.data.params["oracle.kind"] == "lookup"
    assert "mlflow.source.git.commit" in run.data.tags
    assert run.data.tags["mlflow.note.content"].startswith("Campaign ") and "32 of 32 oracle calls" in \
        run.data.tags["mlflow.note.content"]  # the run page's description
    best = client.get_metric_history(run_id, "best_log10_kh_co2")
    assert len(best) == 4 and all(b.value <= a.value for b, a in zip(best, best[1:]))  # per round, never worse
    assert {"campaign.csv", "discovery_curve.png", "report.json"} <= {a.path for a in client.list_artifacts(run_id)}
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    assert children and all(client.list_artifacts(c.info.run_id, "model") for c in children)


def _events(run_dir: Path) -> list[dict]:
    import json

    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if x.strip().endswith("}")]


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path):
    """``kill -9`` of the driver mid-campaign, then ``discovery resume``: no result lost, none repeated
    (each candidate has one result event), and the same selections and results as a run never killed."""
    import signal
    import subprocess
    import time

    import yaml

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_config(budget=40, oracle__lookup_delay_s=0.4)))
    cli = [sys.executable, "-m", "agents.cli.main"]
    env = dict(os.environ)  # with the session's Ray token (conftest)
    subprocess.run([*cli, "run", str(config), "--run-dir", str(tmp_path / "whole"), "--no-mlflow", "--json"],
                   check=True, capture_output=True, env=env, timeout=600)
    proc = subprocess.Popen([*cli, "run", str(config), "--run-dir", str(tmp_path / "killed"), "--no-mlflow", "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if (tmp_path / "killed" / "events.jsonl").exists() and \
                sum(e["type"] == "result" for e in _events(tmp_path / "killed")) >= 20:
            break
    proc.send_signal(signal.SIGKILL)  # the driver alone, as `kill -9 PID` would
    proc.wait()
    try:  # what Ray left of the killed driver's local instance (its agents) goes too
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    n_before = sum(e["type"] == "result" for e in _events(tmp_path / "killed"))
    assert 20 <= n_before < 40
    subprocess.run([*cli, "resume", str(tmp_path / "killed"), "--no-mlflow", "--json"], check=True,
                   capture_output=True, env=env, timeout=600)
    whole, killed = _events(tmp_path / "whole"), _events(tmp_path / "killed")
    results = [e["id"] for e in killed if e["type"] == "result"]
    assert len(results) == len(set(results)) == 40
    selections = lambda events: {e["round"]: e["ids"] for e in events if e["type"] == "selected"}  # noqa: E731
    assert selections(killed) == selections(whole)
    values = lambda events: {e["id"]: e["values"] for e in events if e["type"] == "result"}  # noqa: E731
    assert values(killed) == values(whole)


CLUSTER_SCRIPT = """
import json, shutil, sys
from ray.cluster_utils import Cluster
from agents.campaign import Campaign
from agents.cli.main import main


class DensityTestOracle:  # test double (defined in __main__, so it travels to the workers by value)
    def evaluate(self, candidate):
        from discovery.structures.mof import MOF

        density = float(MOF.from_json(candidate.mof_json).structure.density)
        return {"status": "ok", "values": {"log10_kh_co2": -6.0 + density, "log10_kh_n2": -6.0}}


config, run_dir, model = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
assert main(["train", "generator", "--steps", "100", "--embedding-epochs", "2", "--hidden", "32", "--layers", "2",
             "--diffusion-steps", "20", "--out", model, "--json"]) == 0
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
config["resources"], config["proposer"]["model"] = {"address": cluster.address}, model
campaign = Campaign.from_config(config, run_dir=run_dir, oracle=DensityTestOracle())
shutil.rmtree(model)  # the model travels with the job: no worker may read it by path
report = campaign.run(progress=False)
nodes = {campaign.state.results[i]["worker"].split(":")[1] for i in campaign.state.order}
generators = sorted({c["generator"] for c in campaign.state.candidates.values()})
print(json.dumps({"evaluated": report["counts"]["evaluated"], "nodes": sorted(nodes), "generators": generators}))
campaign.close()
import ray
ray.shutdown()
cluster.shutdown()
"""


def test_diffusion_campaign_runs_on_a_two_node_cluster(tmp_path):
    """A local multi-node ``ray.cluster_utils.Cluster`` runs the diffusion generator's campaign: the model
    directory is deleted once the campaign is built (it reaches the generator's worker as bytes, not by
    path); one oracle worker per node (1 CPU each), both used."""
    import json
    import subprocess

    config = json.dumps(_config(budget=8, batch_size=4, oracle__kind="raspa", surrogate__min_train=20, proposer={
        "kind": "diffusion", "candidates_per_round": 8, "finetune_after": 4, "strength": 0.05,
        "block_strength": 0.05}))
    out = subprocess.run([sys.executable, "-c", CLUSTER_SCRIPT, config, str(tmp_path / "run"), str(tmp_path / "model")],
                         check=True, capture_output=True, text=True, timeout=600)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["evaluated"] == 8
    assert len(result["nodes"]) == 2
    assert result["generators"] and all(g.startswith("diffusion-v") for g in result["generators"])


def test_a_killed_surrogate_agent_is_restored(ray_session, tmp_path):
    """Ray restarts a dead surrogate agent empty; the driver hands it the candidates and model again."""
    import ray

    from agents.campaign import Campaign

    campaign = Campaign.from_config(_config(budget=40), run_dir=tmp_path / "run")
    campaign.ask(8)  # round 0 planned, its graphs added to the agent
    campaign.tell([{"id": i, "status": "failed", "reason": "test"} for i in campaign.state.pending()])
    ray.kill(campaign.executor.agents["surrogate"], no_restart=False)
    report = campaign.run(progress=False)
    assert report["counts"]["evaluated"] == 40 and report["counts"]["model_versions"] >= 1
    campaign.close()


def test_gp_surrogate_and_two_objectives(ray_session, tmp_path):
    """The GP alternative (config ``surrogate.kind: gp``) with qLogNEHVI on CO2 K_H and CO2/N2 selectivity."""
    from agents.campaign import Campaign

    config = _config(budget=32, surrogate__kind="gp", planner__objectives=["log10_kh_co2", "log10_selectivity"])
    campaign = Campaign.from_config(config, run_dir=tmp_path / "run")
    report = campaign.run(progress=False)
    last = campaign.state.round_metrics[max(campaign.state.round_metrics)]
    assert report["counts"]["evaluated"] == 32 and last["hypervolume"] > 0
    front = campaign.pareto_front()
    assert len(front) >= 1 and {"log10_kh_co2", "log10_selectivity"} <= set(front.columns)
    assert (tmp_path / "run" / "artifacts" / "pareto_front.png").stat().st_size > 0
    campaign.close()


def test_step_by_step(ray_session, tmp_path):
    """``for r in campaign.rounds()``: synchronous rounds, each complete when it is yielded."""
    from agents.campaign import Campaign

    campaign = Campaign.from_config(_config(budget=24), run_dir=tmp_path / "run")
    seen = [r for r in campaign.rounds()]
    assert [r["round"] for r in seen] == [0, 1, 2]
    assert all(r["evaluated"] == 8 * (k + 1) for k, r in enumerate(seen))
    assert campaign.state.done
    campaign.close()


class DensityTestOracle:
    """Test double: a cheap 'adsorption' from the candidate's atoms (denser frameworks score higher)."""

    def evaluate(self, candidate):
        from discovery.structures.mof import MOF

        density = MOF.from_json(candidate.mof_json).structure.density
        return {"status": "ok", "values": {"log10_kh_co2": -6.0 + float(density), "log10_kh_n2": -6.0}}


def test_diffusion_generator_in_the_loop(by_value, ray_session, tmp_path):
    """The default proposer: a (tiny, test-sized) diffusion generator proposes, is fine-tuned once results are
    in, and every candidate records the generator version that made it."""
    from agents.campaign import Campaign
    from agents.cli.main import main

    model = tmp_path / "generator"
    assert main(["train", "generator", "--steps", "200", "--embedding-epochs", "2", "--hidden", "32", "--layers", "2",
                 "--diffusion-steps", "20", "--out", str(model), "--json"]) == 0
    config = _config(budget=12, batch_size=4, oracle__kind="raspa", proposer={
        "kind": "diffusion", "model": str(model), "candidates_per_round": 8, "finetune_after": 2, "strength": 0.05,
        "block_strength": 0.05})
    campaign = Campaign.from_config(config, run_dir=tmp_path / "run", oracle=DensityTestOracle())
    report = campaign.run(progress=False)
    campaign.close()
    candidates = campaign.state.candidates.values()
    assert report["evaluations"] and all(c["generator"].startswith("diffusion-v") for c in candidates)
    # a quarter of each round de novo (proposer.denovo_fraction), the rest edits of the best so far
    assert {c["origin"] for c in candidates} == {"diffusion-edit", "diffusion-denovo"}
    assert report["by_origin"]["diffusion-denovo"]["proposed"] >= 2
    assert sum(e["status"] == "ok" for e in report["evaluations"]) >= 2
    assert any(c["generator"] == "diffusion-v2" for c in candidates)  # fine-tuned on the first results
    assert (tmp_path / "run" / "generator" / "v2" / "model.pt").exists()


class TransportTestOracle:
    """Test double: cheap 'adsorption' and 'diffusivity' from the candidate's density (denser: stronger
    binding, slower transport), standing in for RASPA3 and the MD oracle."""

    def evaluate(self, candidate):
        from discovery.structures.mof import MOF

        density = float(MOF.from_json(candidate.mof_json).structure.density)
        return {"status": "ok", "values": {"log10_kh_co2": -6.0 + density, "log10_kh_n2": -6.5,
                                           "log10_d_co2": -7.0 - density}}


def test_transport_is_a_second_objective(by_value, ray_session, tmp_path):
    """Adsorption and transport (qLogNEHVI): the CG dynamics model scores every candidate, its predictions
    are recorded with the adsorption ones, and the Pareto front is drawn in both."""
    import torch

    from agents.campaign import Campaign
    from discovery.campaign.parts import Parts
    from surrogates.transport.dynamics import CGDynamics, TransportConfig, save_model

    torch.manual_seed(0)
    save_model(CGDynamics(TransportConfig(hidden=16)), tmp_path / "transport",
               {"dt_ps": 5.0, "contact_radii_A": {"H": 2.0, "C": 2.2, "O": 2.2, "Zn": 2.5, "Cu": 2.5}})
    config = _config(budget=24, batch_size=4, oracle={"kind": "raspa", "properties": ["geometry", "henry", "diffusivity"]},
                     proposer={"kind": "designspace", "candidates_per_round": 8},
                     surrogate={"members": 2, "epochs": 4, "retrain_every": 4, "min_train": 10,
                                "transport_model": str(tmp_path / "transport"), "transport_ps": 100.0},
                     planner={"objectives": ["log10_kh_co2", "log10_d_co2"]})
    campaign = Campaign.from_config(config, run_dir=tmp_path / "run", oracle=TransportTestOracle())
    report = campaign.run(progress=False)
    campaign.close()
    assert report["counts"]["evaluated"] == 24, campaign.unscorable
    kept = Parts.from_config(campaign.config, tmp_path / "run").oracle().settings  # the MD oracle's
    assert kept.trajectory_dir == str(tmp_path / "run" / "trajectories")
    predicted = [p for rnd in campaign.state.rounds.values() for p in rnd.predictions.values()]
    assert predicted and all(p["targets"] == ["log10_kh_co2", "log10_kh_n2", "log10_d_co2"] for p in predicted)
    assert all(math.isfinite(p["mean"][2]) and p["std"][2] > 0 for p in predicted)
    front = campaign.pareto_front()
    assert len(front) >= 1 and {"log10_kh_co2", "log10_d_co2"} <= set(front.columns)
    assert (tmp_path / "run" / "artifacts" / "pareto_front.png").stat().st_size > 0


def test_transport_objective_needs_the_md_oracle_and_a_model(tmp_path):
    from agents.campaign import Campaign
    from discovery.config import ConfigError, load_config
    from discovery.errors import DiscoveryError

    with pytest.raises(ConfigError, match="diffusivity"):
        load_config(_config(oracle={"kind": "raspa"}, proposer={"kind": "designspace"},
                            planner={"objectives": ["log10_kh_co2", "log10_d_co2"]}))
    config = load_config(_config(oracle={"kind": "raspa", "properties": ["henry", "diffusivity"]},
                                 proposer={"kind": "designspace"}, planner={"objectives": ["log10_d_co2"]}))
    assert config.targets == ("log10_kh_co2", "log10_kh_n2", "log10_d_co2")
    with pytest.raises(DiscoveryError, match="train transport"):  # before any actor starts
        Campaign.from_config(config.to_dict() | {"surrogate": {"transport_model": str(tmp_path / "none")}},
                             run_dir=tmp_path / "run")
