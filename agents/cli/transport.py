"""The transport commands: ``discovery train transport``, ``discovery predict-transport``,
``discovery benchmark transport``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from agents.cli.types import non_negative_int, positive_float, positive_int
from discovery.errors import DiscoveryError

DATA_HELP = ("MD runs: a trajectory table (`default`: the one shipped in the package; `discovery dataset "
             "export-trajectories`) or a folder of MD trajectories with the oracle's results.jsonl (`discovery "
             "dataset trajectories`); repeat to add sources, e.g. a campaign's RUN/trajectories (default: default)")
DATA = "default"
MODEL = "default"  # the shipped model (discovery/models.py)


def _one_thread() -> None:
    """The model's ops are small: one thread is as fast, leaves the other cores free, and is reproducible."""
    import torch

    torch.set_num_threads(1)


def cmd_train(args: argparse.Namespace) -> int:
    from surrogates.transport.bench import benchmark_transport

    _one_thread()
    result = benchmark_transport(args.data or [DATA], n_test=args.n_heldout, step_ps=args.step_ps,
                                 epochs=args.epochs, seed=args.seed, every_ps=args.every_ps, model_out=args.out,
                                 progress=not args.json)
    summary = {k: v for k, v in result.items() if k != "per_mof"}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"trained on {summary['n_train_mofs']} MOFs ({summary['n_train_frames']} frames, "
              f"{summary['train_cpu_s']:.0f} CPU-s), long step {summary['long_step_ps']} ps; held out "
              f"{summary['n_test_mofs']}: log10 D error {_fmt(summary['mae_log10_d'])}, stable "
              f"{summary['stable_fraction']:.2f}; saved to {args.out}", file=sys.stderr)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from discovery.structures.mof import load_structure
    from surrogates.transport.dynamics import load_model
    from surrogates.transport.predict import predict_transport

    _one_thread()
    model = load_model(args.model)
    rows = []
    for path in tqdm(args.structures, desc="rollouts", disable=args.json or len(args.structures) < 2):
        try:
            mof = load_structure(path)
            rows.append({"file": path, **predict_transport(model, mof, n_guests=args.guests,
                                                           simulated_ps=args.ps, seed=args.seed).to_dict()})
        except DiscoveryError as exc:  # a bad structure is reported; the others are still scored
            rows.append({"file": path, "error": str(exc)})
    if args.json:
        print(json.dumps(rows if len(rows) > 1 else rows[0]))
    else:
        for r in rows:
            print(f"{r['file']}: ERROR {r['error']}" if "error" in r else
                  f"{r['structure']}: D(CO2) {r['d_m2_s']:.3g} m2/s (log10 {r['log10_d']:.2f} +- "
                  f"{r['log10_std']:.2f}), {'converged' if r['converged'] else r['reason']}, "
                  f"{'stable' if r['stable'] else 'UNSTABLE'}, {r['simulated_ps']:.0f} ps in {r['cpu_s']:.2f} CPU-s")
    return 1 if any("error" in r for r in rows) else 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from surrogates.transport.bench import benchmark_transport

    _one_thread()
    result = benchmark_transport(args.data or [DATA], n_test=args.n_test, step_ps=args.step_ps, epochs=args.epochs,
                                 seed=args.seed, every_ps=args.every_ps, model_out=args.model_out,
                                 progress=not args.json)
    print(json.dumps(result, indent=None if args.json else 1, default=str))
    return 0


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _training_options(sp: argparse.ArgumentParser) -> None:
    from surrogates.transport.bench import DEFAULT_EVERY_PS, DEFAULT_STEP_PS

    sp.add_argument("--data", action="append", help=DATA_HELP)
    sp.add_argument("--step-ps", type=positive_float, default=DEFAULT_STEP_PS,
                    help="the model's long step (default %(default)s ps: 1,250 MD steps of 4 fs)")
    sp.add_argument("--epochs", type=positive_int, default=15)
    sp.add_argument("--every-ps", type=positive_float, default=DEFAULT_EVERY_PS,
                    help="time between training frames along a trajectory (default %(default)s ps)")
    sp.add_argument("--seed", type=non_negative_int, default=0)


def register(train, sub, benchmarks, add: Callable) -> None:
    sp = add(train, "transport", cmd_train,
             "train the CG dynamics transport model on MD trajectories (some MOFs held out to measure its error)")
    _training_options(sp)
    sp.add_argument("--n-heldout", type=int, default=5, help="MOFs held out to measure the model's error")
    sp.add_argument("--out", default="models/transport", help="model directory (weights.pt + model.json)")

    sp = add(sub, "predict-transport", cmd_predict,
             "CO2 self-diffusivity of CIF/JSON structures from rollouts of the CG dynamics model")
    sp.add_argument("structures", nargs="+")
    sp.add_argument("--model", default=MODEL,
                    help="`default` (the shipped model) or a directory written by `discovery train transport`")
    sp.add_argument("--ps", type=float, default=2000.0, help="simulated time, ps (the MD oracle runs 2,000)")
    sp.add_argument("--guests", type=int, default=10, help="CO2 molecules in the box (the MD oracle's 10)")
    sp.add_argument("--seed", type=non_negative_int, default=0)

    sp = add(benchmarks, "transport", cmd_benchmark,
             "the CG dynamics model against MD on held-out MOFs: speedup, log10 D error, stable rollouts")
    _training_options(sp)
    sp.add_argument("--n-test", type=int, default=10, help="MOFs held out")
    sp.add_argument("--model-out", help="save the trained model here")
