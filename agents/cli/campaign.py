"""``discovery run | resume | report`` and ``discovery benchmark loop``. Ray is imported only when a
command runs, so that ``discovery --help`` and the other commands stay light."""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from agents.cli.types import non_negative_float, positive_int, positive_int_list


def _summary(report: dict[str, Any], run_id: str | None, tracking) -> str:
    """The campaign's report in a few lines, and where its MLflow run is (``tracking``: the config's section)."""
    c = report["counts"]
    lines = [f"campaign {report['name']!r} in {report['run_dir']}",
             f"  proposed {c['proposed']} ({c['invalid']} invalid), evaluated {c['evaluated']} of budget "
             f"{c['budget']} ({c['failed']} failed, {c['pending']} pending), {c['rounds']} rounds, "
             f"{c['model_versions']} surrogate versions"]
    if "screened" in c:  # a funnel: evaluated = promoted (or failed); the budget is CPU
        lines.append(f"  funnel: {c['screened']} screened, {c['promoted']} promoted; {c['budget_spent']:.2f} of "
                     f"{c['budget']} full evaluations' worth of CPU spent")
    if report["invalid_by_reason"]:
        lines.append(f"  invalid candidates by reason: {report['invalid_by_reason']}")
    if report["failures_by_reason"]:
        lines.append(f"  failed evaluations by reason: {report['failures_by_reason']}")
    lines.append(f"  best by {report['objectives'][0]}:")
    for row in report["best"][:5]:
        values = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k.startswith("log10") and v is not None)
        lines.append(f"    {row['id']:<40} {values}  (round {row['round']}, {row['origin']})")
    if len(report["objectives"]) > 1:
        lines.append(f"  Pareto front: {len(report['pareto_front'])} candidates")
    lines.append(f"  artifacts: {report['run_dir']}/artifacts (campaign.csv, report.json, plots, CIFs)")
    from agents.tracking import run_page

    uri = tracking.uri
    if run_id and uri and uri.startswith(("http://", "https://")):
        lines.append(f"  MLflow run {run_id} on {uri}, experiment {tracking.experiment!r}: "
                     f"{run_page(uri, run_id, uri) or uri}")
    elif run_id:
        store = uri or f"sqlite:///{tracking.root}/mlflow.db"
        page = run_page(store, run_id, "http://127.0.0.1:5000")
        lines.append(f"  MLflow run {run_id}; browse with:\n"
                     f"    mlflow ui --backend-store-uri {store} --host 127.0.0.1 --port 5000"
                     + (f"\n    then open {page}" if page else ""))
    return "\n".join(lines)


def _finish(campaign, report: dict[str, Any], as_json: bool) -> int:
    run_id_file = campaign.run_dir / "mlflow_run_id"
    run_id = run_id_file.read_text().strip() if run_id_file.exists() else None
    print(json.dumps(report, indent=2, default=str) if as_json else _summary(report, run_id,
                                                                             campaign.config.tracking))
    campaign.close()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from agents.campaign import Campaign

    overrides = [*(args.set or ()), *(["proposer.train_if_missing=true"] if args.train_generator else [])]
    campaign = Campaign.from_config(args.config, run_dir=args.run_dir, overrides=overrides,
                                    track=False if args.no_mlflow else None)
    print(f"campaign run directory: {campaign.run_dir} (resume with `discovery resume {campaign.run_dir}`)")
    return _finish(campaign, campaign.run(progress=not args.json), args.json)


def cmd_resume(args: argparse.Namespace) -> int:
    from agents.campaign import Campaign

    campaign = Campaign.resume(args.run_dir, track=False if args.no_mlflow else None, budget=args.budget)
    return _finish(campaign, campaign.run(progress=not args.json), args.json)


def cmd_report(args: argparse.Namespace) -> int:
    from discovery.campaign.report import report
    from discovery.campaign.state import CampaignState

    state = CampaignState.open(args.run_dir, writable=False)  # a reader: the log stays as it is
    rep = report(state, k=args.top)
    state.close()
    run_id_file = state.run_dir / "mlflow_run_id"
    print(json.dumps(rep, indent=2, default=str) if args.json else
          _summary(rep, run_id_file.read_text().strip() if run_id_file.exists() else None, state.config.tracking))
    return 0


def cmd_benchmark_loop(args: argparse.Namespace) -> int:
    from agents.benchmark import benchmark_loop, benchmark_scaling

    if args.workers:
        result = benchmark_scaling(args.workers, delay_s=args.delay if args.delay is not None else 10.0,
                                   rounds=args.rounds)
    else:
        result = benchmark_loop(delay_s=args.delay if args.delay is not None else 2.0, budget=args.budget,
                                batch_size=args.batch_size)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def register(sub, benchmarks, add: Callable) -> None:
    sp = add(sub, "run", cmd_run, "run a discovery campaign from a config (YAML)")
    sp.add_argument("config", help="e.g. configs/quickstart.yaml")
    sp.add_argument("--run-dir", help="where the campaign's state and artifacts go (default: runs/NAME-TIME)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config value, e.g. --set budget=32 --set oracle.charges=none")
    sp.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    sp.add_argument("--train-generator", action="store_true",
                    help="train the diffusion generator first when proposer.model is missing (tens of minutes)")

    sp = add(sub, "resume", cmd_resume, "continue a campaign from its run directory (after a crash or kill)")
    sp.add_argument("run_dir")
    sp.add_argument("--budget", type=positive_int, help="raise the campaign's budget (oracle evaluations in all)")
    sp.add_argument("--no-mlflow", action="store_true")

    sp = add(sub, "report", cmd_report, "counts, best candidates, Pareto front, failures and every evaluation")
    sp.add_argument("run_dir")
    sp.add_argument("--top", type=positive_int, default=10)

    sp = add(benchmarks, "loop", cmd_benchmark_loop,
             "oracle-worker utilisation, scheduling overhead per round and 2-worker speedup of the Ray loop")
    sp.add_argument("--delay", type=non_negative_float,
                    help="seconds each (lookup) oracle call takes (default 2, with --workers 10)")
    sp.add_argument("--budget", type=positive_int, default=48)
    sp.add_argument("--batch-size", type=positive_int, default=8)
    sp.add_argument("--workers", type=positive_int_list, metavar="N,N,...",
                    help="instead: utilisation and driver CPU per result with these many simulated workers, "
                         "e.g. 8,32,128 (a batch of N per round)")
    sp.add_argument("--rounds", type=positive_int, default=4, help="with --workers: rounds per worker count")
