"""``discovery train generator``, ``discovery generate`` and ``discovery benchmark generator``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from agents.cli.types import POOL_HELP, data_source, non_negative_int, positive_float, positive_int
from discovery.config import ProposerConfig

PROPOSER = ProposerConfig()  # defaults shared with the campaign config
DATA_HELP = "a pool table or a dataset directory with CG views (default: the committed pool table)"


def cmd_train(args: argparse.Namespace) -> int:
    from discovery.generator.model import ModelSettings
    from discovery.generator.pipeline import train_generator

    settings = ModelSettings(hidden=args.hidden, layers=args.layers, steps=args.diffusion_steps)
    summary = train_generator(data_source(args), args.out, steps=args.steps, embedding_epochs=args.embedding_epochs,
                              seed=args.seed, settings=settings, progress=not args.json)
    print(json.dumps(summary, indent=None if args.json else 1))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from discovery.generator.metrics import generation_metrics
    from discovery.generator.pipeline import generate, load_generator, trained_on, write_generated
    from discovery.generator.templates import DenovoSettings
    from discovery.generator.train import training_rows

    # the generator's parents, and what novelty is measured against: by default what it was trained on
    training = training_rows(data_source(args) or trained_on(args.model))
    denovo = DenovoSettings(rmsd=args.denovo_rmsd, unseen_weight=args.unseen_nets)
    generator = load_generator(args.model, seed=args.seed, rows=training, denovo=denovo)
    high = args.condition == "high_co2"
    parents = (generator.elite if high else generator.replay) if args.mode == "edit" else ()
    steer = args.steer if high else 1
    records, cpu = generate(generator, args.n, seed=args.seed, steer=steer, parents=parents,
                            strength=args.strength, block_strength=args.block_strength, progress=not args.json,
                            geometry=args.geometry)
    edit = args.mode == "edit"
    metrics = {**generation_metrics(records, training, cpu), "generator_version": generator.version,
               "mode": args.mode, "strength": args.strength if edit else None,
               "block_strength": args.block_strength if edit else None,
               "condition": args.condition, "steer": steer if args.mode == "denovo" else None, "seed": args.seed,
               **({"denovo_rmsd": args.denovo_rmsd, "unseen_nets": args.unseen_nets} if not edit else {})}
    if not edit:
        valid = [r for r in records if r["status"] == "valid"]
        metrics["outside_design_space"] = round(sum(not r["in_design_space"] for r in valid) / len(valid), 4) \
            if valid else 0.0
    write_generated(records, args.out, metrics)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"{metrics['n_valid']} of {metrics['n_sampled']} valid (validity {metrics['validity']:.2f}, "
              f"uniqueness {metrics['uniqueness']:.2f}, novelty {metrics['novelty']:.2f}, "
              f"{metrics['valid_per_cpu_s']:.3f} valid/CPU-s; {metrics['edited_in_place']} edited in place); "
              f"CIFs in {args.out}/cifs", file=sys.stderr)
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from surrogates.generator_benchmark import benchmark_generator

    result = benchmark_generator(args.model, n=args.n, seed=args.seed, source=data_source(args), strength=args.strength,
                                 block_strength=args.block_strength, guidance=args.guidance, progress=not args.json,
                                 denovo_n=args.denovo_n, steer=args.steer)
    print(json.dumps(result, indent=None if args.json else 1))
    return 0


def _edit_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--strength", type=positive_float, default=PROPOSER.strength,
                    help="edit: fraction of the diffusion run from which bead positions are denoised (0-1]")
    sp.add_argument("--block-strength", type=positive_float, default=PROPOSER.block_strength,
                    help="edit: the same for the building blocks (0-1]")


def register(train, sub, benchmarks, add: Callable) -> None:
    """Add the generator commands: ``train generator``, ``generate``, ``benchmark generator``."""
    sp = add(train, "generator", cmd_train, "train the MOF diffusion generator (BB embeddings + CG diffusion)")
    sp.add_argument("--data", help=DATA_HELP)
    sp.add_argument("--pool", help=POOL_HELP)
    sp.add_argument("--out", default="models/generator", help="model directory")
    sp.add_argument("--steps", type=positive_int, default=PROPOSER.train_steps,
                    help="training steps (batches of 32 MOFs)")
    sp.add_argument("--embedding-epochs", type=positive_int, default=300)
    sp.add_argument("--hidden", type=positive_int, default=96)
    sp.add_argument("--layers", type=positive_int, default=3)
    sp.add_argument("--diffusion-steps", type=positive_int, default=100)
    sp.add_argument("--seed", type=non_negative_int, default=0)

    sp = add(sub, "generate", cmd_generate, "sample MOFs with a trained generator; CIFs and metrics into --out")
    sp.add_argument("--n", type=positive_int, required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--model", default="default", help="a generator directory; default: the shipped one")
    sp.add_argument("--mode", choices=["edit", "denovo"], default="edit",
                    help="edit: re-noise and denoise training MOFs; denovo: a net chosen by a prior latent, its "
                         "building blocks denoised from noise, built by pormake")
    sp.add_argument("--condition", choices=["high_co2", "none"], default="high_co2",
                    help="high_co2: edit the training set's top decile by CO2 K_H, or (denovo) keep the latent "
                         "the property head ranks best of --steer; none: random training MOFs / prior latents")
    _edit_arguments(sp)
    sp.add_argument("--steer", type=positive_int, default=PROPOSER.steer,
                    help="denovo with high_co2: latents drawn per sample")
    sp.add_argument("--denovo-rmsd", type=positive_float, default=PROPOSER.denovo_rmsd,
                    help="denovo: pormake's node-slot RMSD a node block may have (the design space uses 0.1)")
    sp.add_argument("--unseen-nets", type=float, default=PROPOSER.denovo_unseen,
                    help="denovo: share of the net prior on nets the training set does not hold [0, 1)")
    sp.add_argument("--geometry", action="store_true",
                    help="Zeo++'s pore descriptors (LCD, PLD, surface area, void fraction) for each valid MOF; "
                         "without it the pore checks use Zeo++'s channel analysis alone (about half the cost) and "
                         "only the density is recorded")
    sp.add_argument("--data", help=DATA_HELP + "; novelty is measured against it")
    sp.add_argument("--pool", help=POOL_HELP + "; default: what the model was trained on")
    sp.add_argument("--seed", type=non_negative_int, default=0)

    sp = add(benchmarks, "generator", cmd_benchmark,
             "validity, uniqueness, novelty, valid MOFs per CPU-second and the retrain lift of the generator")
    sp.add_argument("--model", default="default",
                    help="a generator directory (trained here first if missing); default: the shipped one")
    sp.add_argument("--n", type=positive_int, default=200, help="samples per edit measurement")
    sp.add_argument("--denovo-n", type=positive_int, default=1000,
                    help="de novo samples (a fifth of it again per conditioning measurement)")
    sp.add_argument("--steer", type=positive_int, default=8,
                    help="conditioning: latents drawn per de novo sample, the property head keeps the best")
    _edit_arguments(sp)
    sp.add_argument("--guidance", type=positive_float, default=PROPOSER.guidance,
                    help="after fine-tuning: amplify what it changed in the building blocks by this factor")
    sp.add_argument("--data", help=DATA_HELP)
    sp.add_argument("--pool", help=POOL_HELP)
    sp.add_argument("--seed", type=non_negative_int, default=0)
