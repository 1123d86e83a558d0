"""The ``discovery`` command line: ``build_parser`` and ``main``, with the commands on building blocks,
topologies, single structures, datasets and benchmarks; the oracle's commands and flags are in ``oracle``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from agents.cli.oracle import (
    DATASET_CHARGES,
    FIXED_CYCLES,
    TIMEOUT_HELP,
    cmd_benchmark_oracle,
    cmd_dataset_export_trajectories,
    cmd_dataset_label,
    cmd_dataset_trajectories,
    cmd_evaluate,
    oracle_arguments,
)
from agents.cli.types import non_negative_int, positive_float, positive_int
from discovery.errors import DiscoveryError


def _print(data: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    print(json.dumps(data, indent=2, default=str) if as_json else text(data))


# ---- building blocks and topologies -------------------------------------------------------------
def cmd_bb_list(args: argparse.Namespace) -> int:
    from discovery.library.building_blocks import BuildingBlockLibrary

    rows = [bb.summary() for bb in BuildingBlockLibrary()
            if (args.kind is None or bb.kind == args.kind) and (args.metal is None or args.metal in bb.metals)]
    _print(rows, args.json, lambda rs: "\n".join(
        f"{r['id']:6s} {r['kind']:4s} cp={r['connection_points']:<2d} {r['formula']}" for r in rs)
        + f"\n{len(rs)} building blocks")
    return 0


def cmd_bb_show(args: argparse.Namespace) -> int:
    from discovery.library.building_blocks import BuildingBlockLibrary

    _print(BuildingBlockLibrary().get(args.id).summary(), args.json,
           lambda r: "\n".join(f"{k:20s} {v}" for k, v in r.items()))
    return 0


def cmd_topology_list(args: argparse.Namespace) -> int:
    from discovery.library.topologies import TopologyLibrary

    infos = TopologyLibrary().select(lambda t: t.n_nodes <= args.max_nodes)
    _print([t.to_dict() for t in infos], args.json, lambda rs: "\n".join(
        f"{r['name']:12s} nodes={sum(n[2] for n in r['node_types']):<3d} "
        f"cn={','.join(str(n[1]) for n in r['node_types'])} edge types={len(r['edge_types'])}" for r in rs)
        + f"\n{len(rs)} topologies")
    return 0


def cmd_topology_show(args: argparse.Namespace) -> int:
    from discovery.library.topologies import TopologyLibrary

    _print(TopologyLibrary().info(args.name).to_dict(), args.json, lambda r: json.dumps(r, indent=2))
    return 0


def cmd_library_rebuild(args: argparse.Namespace) -> int:
    from discovery.library.designspace import build_compatibility_table
    from discovery.library.topologies import build_catalogue

    print(f"topology catalogue: {build_catalogue(workers=args.workers)}")
    print(f"compatibility table: {build_compatibility_table(workers=args.workers)}")
    return 0


def cmd_library_block_checks(args: argparse.Namespace) -> int:
    from discovery.library.block_checks import build_block_checks, load_block_checks, rejected_blocks

    path = build_block_checks(builds=args.builds, workers=args.workers, progress=True)
    table = load_block_checks(path)
    print(json.dumps({"table": str(path), "blocks": len(table),
                      "rejected_for_de_novo": sorted(rejected_blocks(table))}))
    return 0


# ---- single structures ------------------------------------------------------------------------
def cmd_assemble(args: argparse.Namespace) -> int:
    from discovery.library.assembly import Assembler

    mof = Assembler(rmsd_threshold=args.rmsd_threshold).assemble(args.recipe)
    out = Path(args.out) if args.out else Path(f"{mof.id}.cif")
    out.parent.mkdir(parents=True, exist_ok=True)
    mof.to_cif(out)
    mof.to_json(out.with_suffix(".json"))
    info = {"id": mof.id, "formula": mof.formula, "n_atoms": mof.n_atoms, "cif": str(out),
            "record": str(out.with_suffix(".json")), "cell": list(mof.structure.lattice.parameters),
            "beads": len(mof.cg.beads) if mof.cg else 0}
    _print(info, args.json, lambda r: f"{r['id']}: {r['formula']}, {r['n_atoms']} atoms -> {r['cif']}, {r['record']}")
    return 0


def _each_structure(paths: list[str], work: Callable[[Any], dict]) -> tuple[list[dict], int]:
    """Apply ``work`` to every file; a bad file becomes an error row and the batch carries on."""
    from discovery.structures.mof import load_structure

    rows, failures = [], 0
    for p in paths:
        try:
            rows.append({"file": p, **work(load_structure(p))})
        except DiscoveryError as exc:
            failures += 1
            rows.append({"file": p, "error": str(exc)})
    return rows, failures


def cmd_check(args: argparse.Namespace) -> int:
    from discovery.structures.validity import check_mof

    def work(mof):
        report, geometry = check_mof(mof.structure, with_geometry=not args.no_geometry, name=mof.id)
        return {"id": mof.id, "formula": mof.formula, **report.to_dict(),
                "geometry": None if geometry is None else geometry.to_dict()}

    rows, failures = _each_structure(args.structures, work)
    _print(rows, args.json, lambda rs: "\n".join(_check_line(r) for r in rs))
    return 1 if failures or not all(r.get("valid") for r in rows) else 0


def _check_line(r: dict) -> str:
    if "error" in r:
        return f"{r['file']}: ERROR {r['error']}"
    bad = [f"{k} ({v['message']})" for k, v in r["checks"].items() if not v["passed"]]
    return f"{r['file']}: {'valid' if r['valid'] else 'INVALID: ' + '; '.join(bad)}"


def cmd_geometry(args: argparse.Namespace) -> int:
    from discovery.oracle.geometry.zeo import GeometrySettings, compute_geometry

    settings = GeometrySettings(high_accuracy=args.high_accuracy, probe_radius=args.probe_radius)
    rows, failures = _each_structure(args.structures, lambda m: compute_geometry(m.structure, settings, m.id).to_dict())
    _print(rows, args.json, lambda rs: "\n".join(
        f"{r['file']}: ERROR {r['error']}" if "error" in r else
        f"{r['file']}: LCD {r['lcd']:.2f} A  PLD {r['pld']:.2f} A  ASA {r['asa_m2_g']:.0f} m2/g  "
        f"density {r['density_g_cm3']:.3f} g/cm3  void fraction {r['void_fraction']:.3f}" for r in rs))
    return 1 if failures else 0


# ---- datasets and benchmarks ------------------------------------------------------------------
def cmd_dataset_build(args: argparse.Namespace) -> int:
    from discovery.library.dataset import build_dataset

    summary = build_dataset(args.out, size=args.size, seed=args.seed, workers=args.workers,
                            progress=not args.quiet)
    _print(summary, args.json, lambda s: _summary_text(args.out, s))
    return 0


def cmd_dataset_rebuild(args: argparse.Namespace) -> int:
    from agents.cli.oracle import wanted_ids
    from discovery.library.rebuild import rebuild_dataset

    ids = wanted_ids(args.ids)[0] if args.ids else None
    summary = rebuild_dataset(args.table, args.out, ids=ids, workers=args.workers, progress=not args.json)
    _print(summary, args.json, lambda s: f"{s['structures']} MOFs of the {s['source']} in {args.out}; "
                                         f"{len(s['failed'])} failed")
    return 2 if summary["failed"] else 0


def cmd_dataset_import(args: argparse.Namespace) -> int:
    from discovery.library.importer import core_mof_names, import_structures, unpack_core_mof

    out = Path(args.out)
    if args.source == "core-mof":
        names = core_mof_names(args.subset, args.limit, args.seed)
        paths, source = unpack_core_mof(args.subset, names, out / "source"), f"CoRE MOF {args.subset}"
    else:
        folder = Path(args.source)
        if not folder.is_dir():
            raise DiscoveryError(f"{folder}: not a folder of CIFs (or `core-mof`)")
        paths = sorted(folder.glob("*.cif"))[: args.limit]
        if not paths:
            raise DiscoveryError(f"{folder} has no *.cif files")
        source = str(folder)
    summary = import_structures(paths, out, source, workers=args.workers, timeout_s=args.timeout,
                                progress=not args.quiet, decompose_refused=args.decompose_refused)
    _print(summary, args.json, lambda s: _summary_text(args.out, s))
    return 0


def cmd_dataset_summary(args: argparse.Namespace) -> int:
    path = Path(args.dir) / "summary.json"
    if not path.exists():
        raise DiscoveryError(f"{args.dir} has no summary.json: not a dataset directory (or its build never finished)")
    summary = json.loads(path.read_text())
    _print(summary, args.json, lambda s: _summary_text(args.dir, s))
    return 0


def _summary_text(out: str, s: dict) -> str:
    what = f"structures from {s['source']}" if "source" in s else "recipes"
    lines = [f"{out}: {s['valid']} valid MOFs of {s['attempted']} {what} ({100 * s['valid_fraction']:.0f} %)"]
    lines += [f"  rejected, {reason}: {n}" for reason, n in s["failures"].items()]
    plot = Path(out) / "overview.png"
    lines.append(f"  table: {Path(out) / 'mofs.csv'}; structures: {Path(out) / 'structures'}; "
                 f"rejections: {Path(out) / 'failures.csv'}" + (f"; plot: {plot}" if plot.exists() else ""))
    return "\n".join(lines)


def cmd_benchmark_dataset(args: argparse.Namespace) -> int:
    from discovery.benchmark import benchmark_dataset

    result = benchmark_dataset(size=args.size, seed=args.seed, workers=args.workers, out=args.out)
    _print(result, args.json, lambda r: "\n".join(f"{k}: {v}" for k, v in r.items()))
    return 0


def cmd_benchmark_geometry(args: argparse.Namespace) -> int:
    from discovery.benchmark import benchmark_geometry

    result = benchmark_geometry(args.reference)
    _print(result, args.json, lambda r: json.dumps(r, indent=2))
    return 0 if result["within_10pct"] else 1


def build_parser() -> argparse.ArgumentParser:
    from discovery.oracle.settings import TIMEOUT_S

    p = argparse.ArgumentParser(prog="discovery", description="Active-learning discovery of MOFs for CO2 capture.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(parent, name: str, fn: Callable, help: str) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        sp.add_argument("--json", action="store_true", help="print JSON")
        return sp

    bb = sub.add_parser("bb", help="building blocks (pormake's library)").add_subparsers(dest="sub", required=True)
    sp = add(bb, "list", cmd_bb_list, "list building blocks")
    sp.add_argument("--kind", choices=["node", "edge"])
    sp.add_argument("--metal", help="only BBs containing this metal, e.g. Zn")
    add(bb, "show", cmd_bb_show, "show one building block").add_argument("id")

    topo = sub.add_parser("topology", help="RCSR nets shipped by pormake").add_subparsers(dest="sub", required=True)
    add(topo, "list", cmd_topology_list, "list topologies").add_argument("--max-nodes", type=positive_int, default=8)
    add(topo, "show", cmd_topology_show, "show a topology's slots").add_argument("name")

    lib = sub.add_parser("library", help="derived tables of the BB/topology library").add_subparsers(dest="sub", required=True)
    add(lib, "rebuild", cmd_library_rebuild, "recompute the topology catalogue and compatibility table "
        "(CPU-hours; resumable)").add_argument("--workers", type=positive_int)
    sp = add(lib, "block-checks", cmd_library_block_checks, "MOFChecker's failures per building block over a few "
             "random builds (de novo sampling leaves out blocks that always fail; resumable)")
    sp.add_argument("--builds", type=positive_int, default=3, help="recipes built per block")
    sp.add_argument("--workers", type=positive_int)

    sp = add(sub, "assemble", cmd_assemble, "assemble a recipe TOPOLOGY+NODES+EDGES (e.g. pcu+N16+E14) into a CIF")
    sp.add_argument("recipe")
    sp.add_argument("--out", help="CIF path (default: RECIPE.cif); the JSON record goes beside it")
    sp.add_argument("--rmsd-threshold", type=positive_float, default=0.3)

    sp = add(sub, "check", cmd_check, "run the validity checks on CIF or JSON structures")
    sp.add_argument("structures", nargs="+")
    sp.add_argument("--no-geometry", action="store_true", help="skip the Zeo++ pore checks")

    sp = add(sub, "geometry", cmd_geometry, "Zeo++ pore geometry of CIF or JSON structures")
    sp.add_argument("structures", nargs="+")
    sp.add_argument("--high-accuracy", action="store_true")
    sp.add_argument("--probe-radius", type=positive_float, default=1.65)

    sp = add(sub, "evaluate", cmd_evaluate, "run the physics oracle on CIF/JSON structures or dataset directories")
    sp.add_argument("structures", nargs="+")
    sp.add_argument("--properties", default="geometry,henry",
                    help="comma-separated levels: geometry,henry,flue_gas,working_capacity,diffusivity")
    sp.add_argument("--cycles", type=positive_int, help="fixed Monte Carlo cycles: N for --" +
                    ", --".join(c.replace("_", "-") for c in FIXED_CYCLES) + " (default: adaptive, see --target)")
    sp.add_argument("--timeout", type=positive_float, default=TIMEOUT_S, help=TIMEOUT_HELP)
    sp.add_argument("--out", help="JSONL file: results saved as they finish; a rerun reuses those computed from "
                                  "the same file content, levels, settings and versions, and computes the rest")
    sp.add_argument("--retry-failed", action="store_true", help="with --out: compute failed records again")
    sp.add_argument("--workers", type=positive_int)
    oracle_arguments(sp)

    ds = sub.add_parser("dataset", help="design-space datasets").add_subparsers(dest="sub", required=True)
    datasets = ds
    sp = add(ds, "build", cmd_dataset_build, "sample, assemble, check and describe hypothetical MOFs (resumable)")
    sp.add_argument("--size", type=positive_int, required=True, help="number of recipes to attempt")
    sp.add_argument("--seed", type=non_negative_int, default=0)
    sp.add_argument("--out", required=True)
    sp.add_argument("--workers", type=positive_int, help="processes (default: all cores)")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp = add(ds, "rebuild", cmd_dataset_rebuild,
             "a pool table's design-space MOFs, reassembled from their recipes, as a dataset directory to label "
             "again with other settings (resumable)")
    sp.add_argument("table", help="a committed pool table by name (design) or a .jsonl.gz path")
    sp.add_argument("--out", required=True)
    sp.add_argument("--ids", help="only these: a file of ids, one per line, or another pool table")
    sp.add_argument("--workers", type=positive_int, help="processes (default: all cores)")
    sp = add(ds, "import", cmd_dataset_import,
             "real MOFs into a dataset directory: CoRE MOF 2019 or a folder of CIFs, checked (resumable)")
    sp.add_argument("source", help="`core-mof` (the CoRE MOF wheel) or a folder of CIF files")
    sp.add_argument("--out", required=True)
    sp.add_argument("--subset", default="2019-ASR", help="CoRE MOF subset: 2014, 2019-ASR, 2019-FSR")
    sp.add_argument("--limit", type=positive_int, help="a seeded random sample of N (core-mof) or the first N files")
    sp.add_argument("--seed", type=non_negative_int, default=0, help="of the CoRE MOF sample")
    sp.add_argument("--workers", type=positive_int, help="processes (default: all cores)")
    sp.add_argument("--timeout", type=positive_float, default=300.0, help="seconds per structure")
    sp.add_argument("--decompose-refused", action="store_true",
                    help="also cut the structures the checks refuse (to measure decomposition; slower)")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    add(ds, "summary", cmd_dataset_summary, "summarise a dataset directory").add_argument("dir")
    sp = add(ds, "label", cmd_dataset_label,
             "run the oracle over a dataset's structures (parallel, resumable): DIR/labels/CHARGES.jsonl")
    sp.add_argument("dir")
    sp.add_argument("--properties", default="henry", help="comma-separated oracle levels (default: henry)")
    sp.add_argument("--limit", type=positive_int, help="label only the first N structures (in name order)")
    sp.add_argument("--ids", help="label these, in this order (--limit: the first N of them): a file of structure "
                                  "ids, one per line, or a pool table (a committed name such as design, or a "
                                  ".jsonl.gz path) to label its MOFs again")
    sp.add_argument("--workers", type=positive_int)
    sp.add_argument("--timeout", type=positive_float, default=TIMEOUT_S, help=TIMEOUT_HELP)
    sp.add_argument("--retry-failed", action="store_true", help="compute failed labels again")
    # design-space labelling defaults to framework charges on the grid engine (docs/oracle.md)
    oracle_arguments(sp, charges=DATASET_CHARGES, defaults={"charges": "eqeq", "engine": "grid"})

    sp = add(ds, "trajectories", cmd_dataset_trajectories,
             "MD trajectories of CO2 in diverse MOFs of a dataset, for the transport model (resumable)")
    sp.add_argument("dir", help="a dataset directory (`discovery dataset build`)")
    sp.add_argument("--out", required=True, help="trajectories, ids.txt (the selection) and results.jsonl")
    sp.add_argument("--n", type=positive_int, default=60, help="MOFs to select (farthest-point over pore shape, topology)")
    sp.add_argument("--workers", type=positive_int)
    sp.add_argument("--timeout", type=positive_float, default=TIMEOUT_S, help=TIMEOUT_HELP)
    oracle_arguments(sp, charges=DATASET_CHARGES, skip=("trajectories",))  # they go to --out; --seed also selects
    sp = add(ds, "export-trajectories", cmd_dataset_export_trajectories,
             "pack MD trajectory folders into one compact, versioned table (what the transport model learns from)")
    sp.add_argument("dirs", nargs="+", help="folders of `dataset trajectories` (runs with an MD result are packed)")
    sp.add_argument("--out", required=True, help="the table (.npz), e.g. discovery/data/md_traj_none_v1.npz")
    sp.add_argument("--frame-ps", type=positive_float, default=1.0,
                    help="time between stored frames (default %(default)s ps; the model's steps are multiples)")

    bench = sub.add_parser("benchmark", help="benchmarks printing JSON").add_subparsers(dest="sub", required=True)
    sp = add(bench, "dataset", cmd_benchmark_dataset, "build a design space and report throughput and validity")
    sp.add_argument("--size", type=positive_int, default=40)
    sp.add_argument("--seed", type=non_negative_int, default=1)
    sp.add_argument("--workers", type=positive_int)
    sp.add_argument("--out", help="keep the dataset here (default: a temporary directory)")
    sp = add(bench, "oracle", cmd_benchmark_oracle,
             "the oracle against published reference values (K_H, CO2 uptakes, MD diffusivity) and its cost")
    sp.add_argument("--reference", help="directory with co2_298K.csv and structures/ (required but with --cifs)")
    sp.add_argument("--workers", type=positive_int, help="cores to scale throughput to (default: all)")
    sp.add_argument("--no-md", action="store_true", help="skip the transport (MD) part (about 10 CPU-minutes)")
    sp.add_argument("--compare-engines", action="store_true",
                    help="instead: the henry level on RASPA3 and on the grid engine, per structure and charge model")
    sp.add_argument("--grid-check", action="store_true",
                    help="instead: the grid engine's K_H against reference energies on the same insertions")
    sp.add_argument("--estimator-check", action="store_true",
                    help="instead: RASPA3's CBMC Widom estimator replayed on the grid energies beside plain insertion")
    sp.add_argument("--against", choices=("direct", "raspa"), default="direct",
                    help="with --grid-check: direct summation (default) or RASPA3's own energy function")
    sp.add_argument("--names", help="with the engine checks: comma-separated reference structures")
    sp.add_argument("--cifs", help="with the engine checks: a folder of CIFs, not the reference set")
    sp.add_argument("--limit", type=positive_int, help="with --cifs: a random sample of this many (seeded)")
    sp.add_argument("--seed", type=non_negative_int, default=0, help="with --cifs --limit: the sample's seed")
    sp.add_argument("--charges", default="cif,eqeq,none", help="with the engine checks: charge models")
    sp.add_argument("--grid-spacing", type=positive_float, default=0.2,
                    help="with the engine checks: node spacing, A")
    sp.add_argument("--target", type=positive_float, default=0.05,
                    help="with --compare-engines: both engines' relative 95 %% half-width of K_H")
    sp.add_argument("--max-cycles", type=positive_int, default=5000,
                    help="with --compare-engines: RASPA3's cap on Widom cycles (the grid's cap grows with it)")
    sp = add(bench, "geometry", cmd_benchmark_geometry, "Zeo++ LCD/PLD against published reference values")
    sp.add_argument("--reference", required=True, help="directory with co2_298K.csv and structures/")

    from agents.cli.surrogates import (
        register,  # train, predict, dataset export, benchmark surrogate/acquisition
    )

    train = register(sub, datasets, bench, add)
    from agents.cli.generator import (
        register as register_generator,  # train generator, generate, benchmark generator
    )

    register_generator(train, sub, bench, add)
    from agents.cli.campaign import (
        register as register_campaigns,  # run, resume, report, benchmark loop (Ray on use)
    )

    register_campaigns(sub, bench, add)
    from agents.cli.real import register as register_real  # decompose, benchmark decompose

    register_real(sub, bench, add)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except DiscoveryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted; finished work is saved (run the same command again to resume)", file=sys.stderr)
        return 130
    except OSError as exc:  # a path that cannot be read or written: the file and the reason, no traceback
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error:{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug: one line here, the whole trace in a file
        print(f"error: unexpected {type(exc).__name__}: {exc} (full trace: {_write_trace()})", file=sys.stderr)
        return 1


def _write_trace() -> str:
    """The current exception's traceback, in a new file of the system's temporary folder (never in a run
    directory: readers of a run directory do not write to it)."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="discovery-error-", suffix=".txt")
    with os.fdopen(fd, "w") as fh:
        fh.write(traceback.format_exc())
    return path


if __name__ == "__main__":
    sys.exit(main())
