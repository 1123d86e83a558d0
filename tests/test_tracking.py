"""MLflow tracking of a campaign (a SQLite store in tmp_path) and the campaign plots."""

from __future__ import annotations

import logging
import subprocess

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from agents.tracking import GIT_COMMIT_TAG, PARENT_TAG, MlflowTracker, default_tracking_uri, flatten_params
from discovery.campaign.plots import discovery_curve, pareto_mask, pareto_plot, random_search

# SQLAlchemy 2.1 deprecates a loader MLflow 3.17's store still configures, once per process
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")

CONFIG = {"name": "demo", "oracle": {"properties": ["henry"], "target": 0.1, "kind": "raspa"},
          "planner": {"objectives": ["log10_kh_co2", "log10_selectivity"], "minimum": {}},
          "proposer": {"table": None, "notes": "x" * 7000}}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One database for the module (creating one takes ~1 s); each test has its own experiment."""
    return tmp_path_factory.mktemp("tracking") / "mlruns"


@pytest.fixture
def tracker(store, request):
    t = MlflowTracker(root=store, experiment=request.node.name)
    t.start("demo", CONFIG, tags={"run_dir": "/somewhere"})
    yield t
    t.finish()


def client(t: MlflowTracker) -> MlflowClient:
    return MlflowClient(tracking_uri=t.tracking_uri)


def test_the_experiment_opens_in_the_model_training_view(tracker, store):
    """MLflow 3's UI files an experiment by its kind tag: a new one gets it, an old one without it too."""
    c = client(tracker)
    assert c.get_experiment_by_name(tracker.experiment).tags["mlflow.experimentKind"] == "custom_model_development"
    old = c.create_experiment("made-before-the-tag")
    assert "mlflow.experimentKind" not in c.get_experiment(old).tags
    MlflowTracker(root=store, experiment="made-before-the-tag").start("demo", CONFIG)
    assert c.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_printed_link_opens_the_run_in_the_training_view(tracker):
    """MLflow 3.17's UI also remembers a GenAI/training choice per browser, GenAI first (seen in headless
    Chromium): the link the CLI prints asks for the training view itself."""
    from agents.tracking import run_page

    experiment = client(tracker).get_experiment_by_name(tracker.experiment).experiment_id
    page = run_page(tracker.tracking_uri, tracker.run_id, "http://127.0.0.1:5000/")
    assert page == (f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{tracker.run_id}"
                    "?workflowType=machine_learning")
    assert run_page(tracker.tracking_uri, "0" * 32, "http://127.0.0.1:5000") is None


def test_tracking_uri_sends_the_run_to_another_store(tmp_path):
    from discovery.config import ConfigError, load_config

    uri = f"sqlite:///{tmp_path / 'team' / 'mlflow.db'}"
    (tmp_path / "team").mkdir()
    config = load_config({"tracking": {"uri": uri, "root": str(tmp_path / "local")}})
    t = MlflowTracker(tracking_uri=config.tracking.uri, root=config.tracking.root, experiment="team")
    run_id = t.start("demo", CONFIG)
    t.finish()
    assert MlflowClient(tracking_uri=uri).get_run(run_id).info.status == "FINISHED"
    assert not (tmp_path / "local").exists() and (tmp_path / "team" / "artifacts").is_dir()
    for bad, why in (("mlflow-server", "is not a URI"), ("https://me:secret@mlflow.example.org", "holds a password")):
        with pytest.raises(ConfigError, match=f"tracking.uri: .*{why}|tracking.uri: {why}"):
            load_config({"tracking": {"uri": bad}})


def test_default_uri_is_absolute_sqlite(tmp_path):
    uri = default_tracking_uri(tmp_path / "store")
    assert uri == f"sqlite:///{tmp_path.resolve()}/store/mlflow.db"
    assert (tmp_path / "store").is_dir()


def test_flatten_params():
    flat = flatten_params(CONFIG)
    assert flat["oracle.properties"] == "henry"
    assert flat["planner.objectives"] == "log10_kh_co2,log10_selectivity"
    assert flat["planner.minimum"] == "{}" and flat["proposer.table"] == "None"
    assert len(flat["proposer.notes"]) == 6000


def test_start_logs_params_and_tags(tracker, store):
    run = client(tracker).get_run(tracker.run_id)
    assert run.info.status == "RUNNING" and run.info.run_name == "demo"
    assert run.data.params["oracle.properties"] == "henry"
    assert run.data.params["oracle.target"] == "0.1"
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    assert run.data.tags[GIT_COMMIT_TAG] == head
    assert run.data.tags["version.mof-discovery"] == "0.1.0"
    assert {"version.torch", "version.botorch", "version.ray", "version.raspalib", "version.pymatgen"} <= set(run.data.tags)
    assert run.data.tags["run_dir"] == "/somewhere"
    # artifacts next to the database, not in the working directory
    assert run.info.artifact_uri.startswith((store / "artifacts").resolve().as_uri())


def test_metrics_by_step_skip_missing(tracker):
    tracker.log_metrics(1, {"best": 1.0, "failed": 0, "hv": None})
    tracker.log_metrics(2, {"best": 2.5, "failed": 1, "hv": float("nan")})
    tracker.log_metrics(3, {"best": float("inf"), "failed": 1, "hv": 0.3})
    c = client(tracker)
    assert [(m.step, m.value) for m in c.get_metric_history(tracker.run_id, "best")] == [(1, 1.0), (2, 2.5)]
    assert [(m.step, m.value) for m in c.get_metric_history(tracker.run_id, "hv")] == [(3, 0.3)]
    assert len(c.get_metric_history(tracker.run_id, "failed")) == 3


def test_retrain_child_run_with_model(tracker, tmp_path):
    model = tmp_path / "model-3"
    (model / "members").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "members" / "0.pt").write_bytes(b"weights")
    child = tracker.log_retrain(3, model, {"n_train": 24, "train_s": 1.5, "skipped": None})
    c = client(tracker)
    run = c.get_run(child)
    assert child != tracker.run_id and run.info.run_name == "retrain-3" and run.info.status == "FINISHED"
    assert run.data.tags[PARENT_TAG] == tracker.run_id
    assert run.data.metrics == {"n_train": 24.0, "train_s": 1.5}
    assert {f.path for f in c.list_artifacts(child, "model")} == {"model/config.json", "model/members"}
    assert [f.path for f in c.list_artifacts(child, "model/members")] == ["model/members/0.pt"]


def test_log_artifact_file_and_missing(tracker, tmp_path, caplog):
    png = discovery_curve(_history(), ["a"], tmp_path / "curve.png")
    tracker.log_artifact(png)
    tracker.log_artifact(png, "plots")
    with caplog.at_level(logging.WARNING, logger="agents.tracking"):
        tracker.log_artifact(tmp_path / "nothing.png")  # logged, not raised
    c = client(tracker)
    assert "curve.png" in [f.path for f in c.list_artifacts(tracker.run_id)]
    assert [f.path for f in c.list_artifacts(tracker.run_id, "plots")] == ["plots/curve.png"]
    assert "nothing.png" in caplog.text


def test_logging_failure_does_not_raise(tracker, caplog):
    tracker.finish()
    client(tracker).delete_run(tracker.run_id)
    with caplog.at_level(logging.WARNING, logger="agents.tracking"):
        tracker.log_metrics(1, {"best": 1.0})
        tracker.log_metrics(2, {"best": 2.0})
    assert caplog.text.count("log_metrics failed") == 1  # repeats go to DEBUG


def test_resume_reopens_same_run(store):
    first = MlflowTracker(root=store, experiment="resume")
    run_id = first.start("demo", CONFIG)
    first.log_metrics(1, {"best": 1.0})
    first.finish("KILLED")
    again = MlflowTracker(root=store, experiment="resume")
    assert again.start("demo", {**CONFIG, "name": "changed"}, tags={"resumed": "1"}, run_id=run_id) == run_id
    again.log_metrics(2, {"best": 2.0})
    c = client(again)
    runs = c.search_runs([c.get_experiment_by_name("resume").experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]
    assert runs[0].info.status == "RUNNING" and runs[0].data.params["name"] == "demo"
    assert runs[0].data.tags["resumed"] == "1"
    assert [m.step for m in c.get_metric_history(run_id, "best")] == [1, 2]
    again.finish()
    assert c.get_run(run_id).info.status == "FINISHED"


def test_resume_unknown_run_starts_new_one(store):
    t = MlflowTracker(root=store, experiment="unknown-run")
    new = t.start("demo", CONFIG, run_id="0" * 32)
    assert new != "0" * 32 and client(t).get_run(new).data.params["name"] == "demo"


def test_bad_uri_raises_naming_it(tmp_path):
    with pytest.raises(RuntimeError, match="foo://nowhere"):
        MlflowTracker(tracking_uri="foo://nowhere").start("demo", CONFIG)
    with pytest.raises(RuntimeError, match="start"):
        MlflowTracker(root=tmp_path).log_metrics(1, {"a": 1.0})


def test_pareto_mask_hand_made():
    values = np.array([
        [1.0, 5.0],  # front
        [2.0, 4.0],  # front
        [2.0, 4.0],  # duplicate of a front point: also on it
        [1.5, 3.0],  # dominated by [2, 4]
        [3.0, 1.0],  # front
        [3.0, 0.5],  # tie in x, worse in y: dominated
        [np.nan, 9.0],  # NaN: never optimal, dominates nothing
        [0.5, 5.0],  # tie in y with [1, 5], worse in x: dominated
    ])
    assert pareto_mask(values).tolist() == [True, True, True, False, True, False, False, False]
    assert pareto_mask(np.array([[np.nan, 1.0]])).tolist() == [False]
    assert pareto_mask(np.zeros((0, 2))).shape == (0,)
    assert pareto_mask(np.array([3.0, 1.0, 3.0])).tolist() == [True, False, True]


def _history() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 30
    a, b = rng.normal(size=n), rng.normal(size=n)
    status = np.where(np.arange(n) % 7 == 3, "failed", "ok")
    a[status == "failed"] = b[status == "failed"] = np.nan
    origin = ["init"] * 10 + ["botorch", "mutation"] * 10
    return pd.DataFrame({"call": np.arange(1, n + 1), "status": status, "origin": origin, "a": a, "b": b})


def test_random_search_is_the_expected_best_of_n_draws():
    import itertools

    values = np.array([0.3, -1.0, 2.5, 0.7, 1.1, -0.2, 0.0])
    expected = random_search(values, 10)
    assert len(expected) == len(values)
    for n in range(1, len(values) + 1):
        exact = np.mean([max(c) for c in itertools.combinations(values, n)])
        assert expected[n - 1] == pytest.approx(exact, rel=1e-9)


def test_plots_write_png(tmp_path):
    h = _history()
    curve = discovery_curve(h, ["a", "b"], tmp_path / "out" / "curve.png", top_threshold={"a": 1.5},
                            random_reference={"a": np.random.default_rng(1).normal(size=200)})
    front = pareto_plot(h, ("a", "b"), tmp_path / "front.png")
    empty = discovery_curve(h.iloc[0:0], ["a"], tmp_path / "empty.png")
    for path in (curve, front, empty):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
