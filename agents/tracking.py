"""The MLflow record of a campaign: one parent run, metrics per round, a child run per retraining.

The store defaults to a SQLite database ``mlruns/mlflow.db`` with artifacts in ``mlruns/artifacts`` (no
server needed). Everything goes through an explicit ``MlflowClient``, never MLflow's global active run,
so several trackers can live in one process. Only ``start`` raises; once a run exists, a failing MLflow
call is logged at WARNING and the campaign goes on, because the run directory is the record.
"""

from __future__ import annotations

import logging
import math
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping

from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

log = logging.getLogger(__name__)

PACKAGES = ("mof-discovery", "torch", "botorch", "ray", "raspalib", "pymatgen")
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # the tag MLflow's UI shows as the source version
PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"  # the run's description in MLflow's UI
# MLflow 3 files an experiment by this tag; without it a campaign opens under the GenAI views
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# MLflow 3.17's UI also keeps a per-browser choice between its GenAI and training views, GenAI by default
# (seen in headless Chromium): a link with this query opens the training view whatever the browser chose
TRAINING_VIEW = "workflowType=machine_learning"


def run_page(tracking_uri: str, run_id: str, server: str) -> str | None:
    """The run's page in MLflow's training view on ``server`` (its address), or None if the store cannot
    be read. Reads only."""
    try:
        experiment = MlflowClient(tracking_uri=tracking_uri).get_run(run_id).info.experiment_id
    except Exception:  # noqa: BLE001 - a link is a convenience; the run id is printed anyway
        return None
    return f"{server.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}?{TRAINING_VIEW}"


def default_tracking_uri(root: str | Path = "mlruns") -> str:
    """``sqlite:///<absolute root>/mlflow.db``; creates the folder."""
    path = Path(root).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config as ``{"oracle.properties": "henry", ...}``, values cut to MLflow's length limit."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_params(value, f"{name}."))
        else:
            text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            out[name] = text[:MAX_PARAM_VAL_LENGTH]
    return out


def git_commit(cwd: str | Path | None = None) -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    versions = {}
    for pkg in packages:
        try:
            versions[f"version.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[f"version.{pkg}"] = "missing"
    return versions


class MlflowTracker:
    """Observer of one campaign; ``start`` once, then log, then ``finish``."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = "mof-discovery",
                 root: str | Path = "mlruns") -> None:
        self.tracking_uri = tracking_uri or default_tracking_uri(root)
        self.experiment = experiment
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._run_id: str | None = None
        self._failures: set[tuple[str, str]] = set()

    @property
    def run_id(self) -> str | None:
        return self._run_id

    def start(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str] | None = None,
              run_id: str | None = None) -> str:
        """Create the campaign's run (or reopen ``run_id`` of a resumed campaign); returns its id."""
        try:
            client = MlflowClient(tracking_uri=self.tracking_uri)
            self._experiment_id = self._get_or_create_experiment(client)
            if run_id and self._reopen(client, run_id, tags or {}):
                self._run_id = run_id
            else:
                self._run_id = self._create(client, name, params, tags or {})
            self._client = client
        except Exception as exc:
            raise RuntimeError(f"MLflow tracking at {self.tracking_uri!r} cannot be used: "
                               f"{type(exc).__name__}: {exc}") from exc
        return self._run_id

    def log_metrics(self, step: int, metrics: Mapping[str, float | None]) -> None:
        """Metrics at ``step``; None, NaN, infinite and non-numeric values are left out."""
        client, run_id = self._live()
        batch = _metrics(metrics, step)
        for k in range(0, len(batch), MAX_METRICS_PER_BATCH):
            self._safely("log_metrics", client.log_batch, run_id, metrics=batch[k:k + MAX_METRICS_PER_BATCH])

    def log_retrain(self, version: int, model_dir: str | Path | None,
                    metrics: Mapping[str, float | None]) -> str | None:
        """A child run ``retrain-<version>`` with the metrics and the model under ``model``; its id."""
        client, parent = self._live()
        try:
            child = client.create_run(self._experiment_id, run_name=f"retrain-{version}",
                                      tags={PARENT_TAG: parent, "retrain.version": str(version)}).info.run_id
        except Exception as exc:
            self._warn("log_retrain", exc)
            return None
        ok = self._safely("log_retrain", client.log_batch, child, metrics=_metrics(metrics, int(version)))
        if model_dir is not None:
            ok = self._log_path(child, Path(model_dir), "model") and ok
        self._safely("log_retrain", client.set_terminated, child, "FINISHED" if ok else "FAILED")
        return child

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file, or a directory's contents, under ``artifact_path`` of the campaign's run."""
        self._log_path(self._live()[1], Path(path), artifact_path)

    def describe(self, text: str) -> None:
        """The run's description (what MLflow's run page shows first)."""
        client, run_id = self._live()
        self._safely("describe", client.set_tag, run_id, NOTE_TAG, text)

    def finish(self, status: str = "FINISHED") -> None:
        if self._run_id is not None and self._client is not None:
            self._safely("finish", self._client.set_terminated, self._run_id, status)

    def _get_or_create_experiment(self, client: MlflowClient) -> str:
        found = client.get_experiment_by_name(self.experiment)
        if found is None:
            try:
                return client.create_experiment(self.experiment, artifact_location=self._artifact_location(),
                                                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
            except Exception:
                # another process created it in between
                found = client.get_experiment_by_name(self.experiment)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        if EXPERIMENT_KIND_TAG not in found.tags:  # an experiment made before the tag was set
            client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return found.experiment_id

    def _artifact_location(self) -> str | None:
        """Next to a local database (``artifacts/`` beside ``mlflow.db``); a server chooses its own."""
        if not self.tracking_uri.startswith("sqlite:///"):
            return None
        folder = (Path(self.tracking_uri[len("sqlite:///"):]).parent / "artifacts").expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return folder.as_uri()

    def _create(self, client: MlflowClient, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        all_tags = {GIT_COMMIT_TAG: git_commit(), **package_versions(), **{k: str(v) for k, v in tags.items()}}
        run_id = client.create_run(self._experiment_id, run_name=name, tags=all_tags).info.run_id
        flat = [Param(k, v) for k, v in flatten_params(params).items()]
        for k in range(0, len(flat), MAX_PARAMS_TAGS_PER_BATCH):
            client.log_batch(run_id, params=flat[k:k + MAX_PARAMS_TAGS_PER_BATCH])
        return run_id

    def _reopen(self, client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> bool:
        """Mark ``run_id`` running again; False (and a new run) when it is not in this experiment."""
        try:
            run = client.get_run(run_id)
        except Exception as exc:
            log.warning("MLflow run %s not found in %s (%s); starting a new run", run_id, self.tracking_uri, exc)
            return False
        if run.info.experiment_id != self._experiment_id or run.info.lifecycle_stage == "deleted":
            log.warning("MLflow run %s is deleted or in another experiment; starting a new run", run_id)
            return False
        client.update_run(run_id, status="RUNNING")
        for key, value in tags.items():
            client.set_tag(run_id, key, str(value))
        return True

    def _log_path(self, run_id: str, path: Path, artifact_path: str | None) -> bool:
        client = self._live()[0]
        if path.exists():
            call = client.log_artifacts if path.is_dir() else client.log_artifact
            return self._safely("log_artifact", call, run_id, str(path), artifact_path)
        self._warn("log_artifact", FileNotFoundError(f"no file or directory at {path}"))
        return False

    def _safely(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Whether ``call`` went through; a failure is logged, never raised."""
        try:
            call(*args, **kwargs)
        except Exception as exc:
            self._warn(what, exc)
            return False
        return True

    def _warn(self, what: str, exc: Exception) -> None:
        # the first failure of a kind at WARNING, repeats at DEBUG: a dead server must not flood the log
        kind = (what, type(exc).__name__)
        level = logging.DEBUG if kind in self._failures else logging.WARNING
        self._failures.add(kind)
        log.log(level, "MLflow %s failed, campaign continues (%s: %s)", what, type(exc).__name__, exc)

    def _live(self) -> tuple[MlflowClient, str]:
        if self._client is None or self._run_id is None:
            raise RuntimeError("MlflowTracker.start() has not been called")
        return self._client, self._run_id


def _metrics(metrics: Mapping[str, float | None], step: int) -> list[Metric]:
    now = int(time.time() * 1000)
    out = []
    for key, value in metrics.items():
        try:
            x = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            out.append(Metric(key, x, now, int(step)))
    return out
