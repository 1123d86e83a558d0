"""Observers: what watches a campaign without driving it. The core calls ``started``, ``round``,
``retrained`` and ``finished``; ``ArtifactWriter`` (the default) writes the campaign table, the report, the
plots and the best CIFs to ``RUN_DIR/artifacts`` when the campaign stops. MLflow tracking
(``agents.observer.MlflowObserver``) extends it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from discovery.campaign import report as reports
from discovery.campaign.state import CampaignState


class Observer:
    """Every hook does nothing by default; ``active`` is True while an observer holds something open that
    ``finished`` closes."""

    active = False

    def started(self) -> None: ...

    def round(self, r: int, metrics: Mapping[str, Any]) -> None: ...

    def retrained(self, info: Mapping[str, Any]) -> None: ...

    def finished(self, status: str = "FINISHED") -> Any: ...


class ArtifactWriter(Observer):
    def __init__(self, state: CampaignState) -> None:
        self.state = state

    def finished(self, status: str = "FINISHED") -> list[Path]:
        """Write the artifacts to ``RUN_DIR/artifacts``; returns the files."""
        out = self.state.run_dir / "artifacts"
        out.mkdir(exist_ok=True)
        return self._write(out)

    def _write(self, out: Path) -> list[Path]:
        from discovery.campaign.plots import discovery_curve, pareto_plot

        history = reports.history(self.state)
        objectives = list(reports.objective_names(self.state))
        files = [out / "campaign.csv", out / "report.json"]
        history.to_csv(files[0], index=False)
        files[1].write_text(json.dumps(reports.report(self.state), indent=1, default=str))
        if not history.empty:
            files.append(discovery_curve(history, objectives, out / "discovery_curve.png", **self._references()))
            if len(objectives) == 2:
                files.append(pareto_plot(history, tuple(objectives), out / "pareto_front.png"))
        return files + self._cifs(out / "cifs")

    def _references(self) -> dict:
        """The first objective's top-1 % line and random-search curve, where a labelled reference applies."""
        from discovery.campaign.parts import reference_values, top_value

        config = self.state.config
        values = reference_values(config)
        if values is None:
            return {}
        name = config.planner.objectives[0]
        return {"top_threshold": {name: top_value(values, config.top_fraction)}, "random_reference": {name: values}}

    def _cifs(self, folder: Path) -> list[Path]:
        """CIFs of the best candidates (those with a structure: not table lookups)."""
        from discovery.structures.mof import MOF

        paths = []
        for cid in reports.best(self.state, self.state.config.tracking.top_k).get("id", []):
            text = self.state.structure_json(cid)
            if text:
                folder.mkdir(exist_ok=True)
                paths.append(folder / f"{cid}.cif")
                MOF.from_json(text).to_cif(paths[-1])
        return paths
