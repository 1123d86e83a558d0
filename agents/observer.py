"""What a researcher reviews: the campaign's MLflow run and the same artifacts in its run directory.

MLflow observes; it never drives. One parent run per campaign (resolved config as params, git commit and
package versions as tags; a resumed campaign reopens the same run), metrics per round, a child run per
retraining with the model, and at the end the artifacts ``ArtifactWriter`` writes to the run directory (the
campaign table, the discovery-curve and Pareto-front plots, the best candidates' CIFs). A tracking failure
is logged and the campaign goes on: the run directory is the record.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from discovery.campaign import report as reports
from discovery.campaign.observers import ArtifactWriter
from discovery.campaign.state import CampaignState

log = logging.getLogger(__name__)
RUN_ID_FILE = "mlflow_run_id"


class MlflowObserver(ArtifactWriter):
    def __init__(self, state: CampaignState, mlflow: bool = True) -> None:
        super().__init__(state)
        self.enabled = mlflow
        self.tracker = None

    @property
    def active(self) -> bool:  # type: ignore[override]
        return self.tracker is not None

    def started(self) -> None:
        if not self.enabled or self.tracker is not None:
            return
        from agents.tracking import MlflowTracker

        t = self.state.config.tracking
        self.tracker = MlflowTracker(tracking_uri=t.uri, experiment=t.experiment, root=t.root)
        id_file = self.state.run_dir / RUN_ID_FILE
        previous = id_file.read_text().strip() if id_file.exists() else None
        run_id = self.tracker.start(self.state.config.name, self.state.config.to_dict(),
                                    tags={"run_dir": str(self.state.run_dir.resolve())}, run_id=previous)
        id_file.write_text(run_id)

    @property
    def run_id(self) -> str | None:
        return self.tracker.run_id if self.tracker else None

    def round(self, r: int, metrics: Mapping[str, Any]) -> None:
        if self.tracker:
            self.tracker.log_metrics(r, {k: v for k, v in metrics.items() if isinstance(v, (int, float))})

    def retrained(self, info: Mapping[str, Any]) -> None:
        if self.tracker:
            metrics = {k: info[k] for k in ("n_train", "train_s", "train_cpu_s") if k in info}
            self.tracker.log_retrain(info["version"], info.get("path"), metrics)

    def finished(self, status: str = "FINISHED") -> list[Path]:
        """Write the artifacts to ``RUN_DIR/artifacts`` and log them; returns the files."""
        files = super().finished(status)
        if self.tracker:
            self.tracker.describe(describe(reports.report(self.state, k=1)))
            for f in files:
                self.tracker.log_artifact(f, "cifs" if f.suffix == ".cif" else None)
            self.tracker.finish(status)
            self.tracker = None
        return files


def describe(report: Mapping[str, Any]) -> str:
    """One paragraph for the run's page: how far the campaign got and its best MOF."""
    c, objective = report["counts"], report["objectives"][0]
    text = (f"Campaign {report['name']!r}: {c['evaluated']} of {c['budget']} oracle calls ({c['failed']} failed) "
            f"in {c['rounds']} rounds; {c['proposed']} MOFs proposed, {c['invalid']} invalid; "
            f"{c['model_versions']} surrogate versions.")
    if report["best"] and report["best"][0].get(objective) is not None:
        top = report["best"][0]
        text += f" Best {objective}: {top[objective]:.3f} ({top['id']}, round {top['round']}, {top['origin']})."
    return text + " Artifacts: discovery_curve.png, campaign.csv, report.json."
