"""What a researcher reviews: the campaign's MLflow run and the same artifacts in its run directory.

MLflow observes; it never drives. One parent run per campaign (resolved config as params, git commit and
package versions as tags; a resumed campaign reopens the same run), metrics per round, a child run per
retraining with the model, and at the end the campaign table, the discovery-curve and Pareto-front plots
and the best candidates' CIFs. A tracking failure is logged and the campaign goes on: the run directory
is the record.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

from discovery import campaign_report as reports
from discovery.campaign_plots import discovery_curve, pareto_plot
from discovery.campaign_state import CampaignState

log = logging.getLogger(__name__)
RUN_ID_FILE = "mlflow_run_id"


class CampaignObserver:
    def __init__(self, state: CampaignState, mlflow: bool = True) -> None:
        self.state, self.enabled = state, mlflow
        self.tracker = None

    def started(self) -> None:
        if not self.enabled or self.tracker is not None:
            return
        from .tracking import MlflowTracker

        t = self.state.config.tracking
        self.tracker = MlflowTracker(experiment=t.experiment, root=t.root)
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

    def finished(self, status: str = "FINISHED") -> Path:
        """Write the artifacts to ``RUN_DIR/artifacts`` and log them; returns that folder."""
        out = self.state.run_dir / "artifacts"
        out.mkdir(exist_ok=True)
        files = self._write(out)
        if self.tracker:
            for f in files:
                self.tracker.log_artifact(f, "cifs" if f.suffix == ".cif" else None)
            self.tracker.finish(status)
            self.tracker = None
        return out

    def _write(self, out: Path) -> list[Path]:
        history = reports.history(self.state)
        objectives = list(reports.objective_names(self.state))
        files = [out / "campaign.csv", out / "report.json"]
        history.to_csv(files[0], index=False)
        files[1].write_text(json.dumps(reports.report(self.state), indent=1, default=str))
        if not history.empty:
            files.append(discovery_curve(history, objectives, out / "discovery_curve.png"))
            if len(objectives) == 2:
                files.append(pareto_plot(history, tuple(objectives), out / "pareto_front.png"))
        return files + self._cifs(out / "cifs")

    def _cifs(self, folder: Path) -> list[Path]:
        """CIFs of the best candidates (those with a structure: not table lookups)."""
        from discovery.mof import MOF

        paths = []
        for cid in reports.best(self.state, self.state.config.tracking.top_k).get("id", []):
            text = self.state.structure_json(cid)
            if text:
                folder.mkdir(exist_ok=True)
                paths.append(folder / f"{cid}.cif")
                MOF.from_json(text).to_cif(paths[-1])
        return paths
