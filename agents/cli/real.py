"""Commands on real MOFs' building units: ``discovery decompose``, ``discovery benchmark decompose`` and
``discovery benchmark cg-assembly``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agents.cli.types import non_negative_int, positive_float, positive_int
from discovery.errors import DiscoveryError


def cmd_decompose(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from discovery.library.decompose import check_reassembly, decompose, decomposed_mof
    from discovery.library.units import UnitLibrary
    from discovery.structures.mof import load_structure

    library = UnitLibrary.load(args.library) if args.library and Path(args.library).exists() else UnitLibrary()
    rows = []
    for path in tqdm(args.structures, desc="decomposing", unit="MOF", disable=len(args.structures) < 2):
        # a structure that fails is reported and the others go on
        try:
            mof = load_structure(path)
            dec = decompose(mof.structure, mof.id, library={bb.id: bb for bb in library},
                            topology=not args.no_topology)
        except DiscoveryError as exc:
            rows.append({"name": str(path), "error": str(exc)})
            continue
        row = {**dec.to_dict(), "reassembly": check_reassembly(dec)}
        if not args.cg:
            row.pop("cg")
        if args.out:
            out = Path(args.out) / f"{mof.id}.json" if len(args.structures) > 1 else Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            decomposed_mof(mof, dec).to_json(out)
            row["record"] = str(out)
        if args.library:
            row["new_units"] = library.add(dec.blocks.values())
        rows.append(row)
    if args.library:
        library.save(args.library)
    if args.json:
        print(json.dumps(rows if len(rows) > 1 else rows[0], indent=2))
    else:
        print("\n\n".join(f"{r['name']}: {r['error']}" if "error" in r else _text(r) for r in rows))
        if args.library:
            print(f"\nunit library {args.library}: {len(library)} units, version {library.version}")
    return 1 if any("error" in r for r in rows) else 0


def _text(r: dict) -> str:
    check = r["reassembly"]
    lines = [f"{r['name']}: {r['formula']}, topology {r['topology'] or 'not identified'}"
             + (f" ({r['topology_method']})" if r["topology_method"] else "")
             + (f", {r['guests_removed']} guest atoms removed" if r["guests_removed"] else ""),
             f"  {'unit':15s} {'formula':14s} {'kind':5s} {'cp':>3s} {'count':>5s}  library"]
    lines += [f"  {u['id']:15s} {u['formula']:14s} {u['kind']:5s} {u['connection_points']:3d} {u['count']:5d}  "
              f"{u['library']}{' (rod)' if u['periodic'] else ''}" for u in r["units"]]
    lines.append(f"  reassembled from the CG view: {'same framework' if check['structure_match'] else 'DIFFERENT'}"
                 f" (largest atom deviation {check['max_deviation_A']:.2f} A); {r['cpu_s']:.1f} CPU-s")
    if "record" in r:
        lines.append(f"  record with CG view: {r['record']}")
    return "\n".join(lines)


def cmd_benchmark_decompose(args: argparse.Namespace) -> int:
    from discovery.library.decompose_bench import benchmark_decompose

    result = benchmark_decompose(n=args.n, seed=args.seed, subset=args.subset, workers=args.workers,
                                 timeout_s=args.timeout, out=args.out, progress=not args.json)
    print(json.dumps(result, indent=2))
    return 0


def cmd_benchmark_cg_assembly(args: argparse.Namespace) -> int:
    from discovery.generator.assembly_bench import benchmark_cg_assembly

    print(json.dumps(benchmark_cg_assembly(args.data, n=args.n, seed=args.seed, progress=not args.json), indent=2))
    return 0


def register(sub, bench, add) -> None:
    sp = add(sub, "decompose", cmd_decompose,
             "cut MOFs (CIF or JSON) into building units: topology, units, CG view, reassembly check")
    sp.add_argument("structures", nargs="+")
    sp.add_argument("--out", help="write the MOF record with its CG view here (a folder when several structures)")
    sp.add_argument("--library", help="an extended unit library (.json.gz): its units are reused, new ones added")
    sp.add_argument("--cg", action="store_true", help="with --json: include the CG view (beads)")
    sp.add_argument("--no-topology", action="store_true", help="skip the net identification")
    sp = add(bench, "decompose", cmd_benchmark_decompose,
             "import, decompose and reassemble a random CoRE MOF sample; fractions and failure reasons")
    sp.add_argument("--n", type=positive_int, default=200)
    sp.add_argument("--seed", type=non_negative_int, default=0)
    sp.add_argument("--subset", default="2019-ASR")
    sp.add_argument("--workers", type=positive_int)
    sp.add_argument("--timeout", type=positive_float, default=300.0, help="seconds per structure")
    sp.add_argument("--out", help="keep the imported dataset here (default: a temporary directory)")
    sp = add(bench, "cg-assembly", cmd_benchmark_cg_assembly,
             "the generator's assembler on MOFs' own CG views, without and with their orientations")
    sp.add_argument("data", help="an imported dataset (its structures/*.json) or a folder of MOF records")
    sp.add_argument("--n", type=positive_int, default=30)
    sp.add_argument("--seed", type=non_negative_int, default=0)
