"""The surrogate commands of the ``discovery`` CLI: train, predict, export a pool table, benchmarks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

from agents.cli.types import POOL_HELP, data_source, non_negative_int, positive_int
from discovery.errors import DiscoveryError
from discovery.targets import KH_CO2


def _print(data, as_json: bool, text: Callable) -> None:
    print(json.dumps(data, indent=2, default=str) if as_json else text(data))


def _config(args: argparse.Namespace):
    import yaml

    from surrogates.adsorption.ensemble import EnsembleConfig

    values = {}
    if getattr(args, "config", None):
        try:
            values = yaml.safe_load(Path(args.config).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise DiscoveryError(f"{args.config}: cannot read the surrogate config ({exc})") from exc
    for key in ("members", "epochs", "seed"):
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    return EnsembleConfig.from_dict(values)


def cmd_train_surrogate(args: argparse.Namespace) -> int:
    from surrogates.adsorption.train import train_surrogate

    summary = train_surrogate(data_source(args), args.out, _config(args), charges=args.charges, progress=not args.json)
    _print(summary, args.json, lambda s: "\n".join(f"{k}: {v}" for k, v in s.items()))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from surrogates.adsorption.train import predict_structures

    rows = predict_structures(args.model, args.structures)

    def line(r: dict) -> str:
        if "error" in r:
            return f"{r['file']}: ERROR {r['error']}"
        co2 = r.get(KH_CO2, {})
        sel = r.get("log10_selectivity")
        return (f"{r['structure']}: log10 K_H(CO2) {co2.get('mean', float('nan')):.3f} +- {co2.get('std', 0):.3f}"
                + (f", log10 S(CO2/N2) {sel['mean']:.2f} +- {sel['std']:.2f}" if sel else ""))

    _print(rows if len(rows) > 1 else rows[0], args.json, lambda _: "\n".join(line(r) for r in rows))
    return 1 if any("error" in r for r in rows) else 0


def cmd_dataset_export(args: argparse.Namespace) -> int:
    from surrogates.adsorption.data import export_table

    header = export_table(args.dir, args.out, charges=args.charges)
    _print(header, args.json, lambda h: f"{h['n']} MOFs -> {args.out}")
    return 0


def cmd_benchmark_surrogate(args: argparse.Namespace) -> int:
    from surrogates.adsorption.benchmarks import benchmark_surrogate

    result = benchmark_surrogate(data_source(args), n_train=args.n_train, config=_config(args), progress=not args.json,
                                 surrogate=args.surrogate)
    _print(result, True, str)
    return 0


def cmd_benchmark_acquisition(args: argparse.Namespace) -> int:
    from surrogates.adsorption.benchmarks import benchmark_acquisition

    result = benchmark_acquisition(data_source(args), seeds=args.seeds, q=args.q, n_init=args.n_init, plot=args.plot,
                                   progress=not args.json, workers=args.workers, surrogate=args.surrogate)
    _print(result, True, str)
    return 0


def register(sub, datasets, benchmarks, add: Callable):
    """Add the surrogate commands to the ``discovery`` parser (its subparsers, and those of ``dataset`` and
    ``benchmark``); returns the ``train`` subparsers, for the other learned models."""
    data_help = "a labelled dataset directory or a pool table (default: the committed design-space table)"
    train = sub.add_parser("train", help="train learned models").add_subparsers(dest="sub", required=True)
    sp = add(train, "surrogate", cmd_train_surrogate, "train the adsorption surrogate (deep ensemble of GNNs)")
    sp.add_argument("--data", help=data_help)
    sp.add_argument("--pool", help=POOL_HELP)
    sp.add_argument("--charges", default="none", help="which labels of a dataset directory (labels/CHARGES.jsonl)")
    sp.add_argument("--out", default="models/adsorption", help="model directory (weights.pt + model.json)")
    sp.add_argument("--config", help="YAML with EnsembleConfig fields (members, epochs, net: {...}, ...)")
    sp.add_argument("--members", type=int)
    sp.add_argument("--epochs", type=int)
    sp.add_argument("--seed", type=non_negative_int)

    sp = add(sub, "predict", cmd_predict, "score structures (JSON records with a CG view) with a saved surrogate")
    sp.add_argument("structures", nargs="+")
    sp.add_argument("--model", default="default",
                    help="model directory written by `discovery train surrogate`; default: the shipped one")

    sp = add(datasets, "export", cmd_dataset_export,
             "write a labelled dataset's pool table (CG views, descriptors, log10 labels; gzipped JSON lines)")
    sp.add_argument("dir")
    sp.add_argument("--out", required=True)
    sp.add_argument("--charges", default="none")

    sp = add(benchmarks, "surrogate", cmd_benchmark_surrogate,
             "held-out accuracy, calibration, training time and scoring rate of the surrogate")
    sp.add_argument("--data", help=data_help)
    sp.add_argument("--pool", help=POOL_HELP)
    sp.add_argument("--n-train", type=int, default=1000)
    sp.add_argument("--surrogate", choices=["ensemble", "gp"], default="ensemble",
                    help="gp: a GPyTorch GP on the ensemble's representation and the descriptors")
    sp.add_argument("--config", help="YAML with EnsembleConfig fields")
    sp.add_argument("--members", type=int)
    sp.add_argument("--epochs", type=int)
    sp.add_argument("--seed", type=non_negative_int)
    sp = add(benchmarks, "acquisition", cmd_benchmark_acquisition,
             "BoTorch vs greedy vs random campaigns on the labelled pool (lookup oracle)")
    sp.add_argument("--data", help=data_help)
    sp.add_argument("--pool", help=POOL_HELP)
    sp.add_argument("--seeds", type=int, default=5)
    sp.add_argument("--q", type=int, default=20, help="MOFs picked per round")
    sp.add_argument("--n-init", type=int, default=10, help="random MOFs before the first model")
    sp.add_argument("--plot", default="discovery_curve.png", help="where the discovery-curve PNG goes")
    sp.add_argument("--workers", type=positive_int, help="campaigns run in parallel (default: all cores)")
    sp.add_argument("--surrogate", choices=["ensemble", "gp"], default="ensemble")

    from agents.cli.transport import (
        register as register_transport,  # train transport, predict-transport, benchmark
    )

    register_transport(train, sub, benchmarks, add)
    return train
