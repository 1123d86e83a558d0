"""The oracle commands of the ``discovery`` CLI: ``evaluate`` (the physics oracle on structures), ``dataset
label`` and ``dataset trajectories`` (the oracle over a dataset), ``benchmark oracle``, and the flags that
make an ``OracleSettings`` (one per field). ``main`` builds the parser with them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any, Callable

from discovery.errors import DiscoveryError


def _print(data: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    print(json.dumps(data, indent=2, default=str) if as_json else text(data))


DATASET_CHARGES = ("eqeq", "none")  # a dataset's CIFs carry no charges; its labels are kept per charge model
TIMEOUT_HELP = "seconds per structure before it is recorded failed (default: %(default)s, as oracle.timeout_s)"
FIXED_CYCLES = ("first_cycles", "max_cycles", "qst_cycles", "gcmc_first_cycles", "gcmc_max_cycles")  # --cycles N


# ---- oracle settings flags ---------------------------------------------------------------------
def oracle_arguments(sp: argparse.ArgumentParser, charges: tuple[str, ...] = (), skip: tuple[str, ...] = (),
                     defaults: dict[str, Any] | None = None) -> None:
    """One flag per oracle setting (``OracleSettings``: --charges, --target, --md-guests, --no-block-pockets, ...)
    with the field's default, choices, bounds and help. ``charges``: only these choices, and the flag is required
    (the command's output depends on it) unless ``defaults`` names it; ``defaults``: this command's own."""
    defaults = defaults or {}
    from discovery.oracle.settings import OracleSettings

    group = sp.add_argument_group("oracle settings", "one flag per discovery.OracleSettings field; the defaults are "
                                  "a campaign config's oracle: defaults (docs/oracle.md)")
    hints = typing.get_type_hints(OracleSettings)
    for f in dataclasses.fields(OracleSettings):
        if f.name in skip:
            continue
        flag, text = "--" + f.name.replace("_", "-"), f.metadata.get("help", "").replace("%", "%%")
        value = defaults.get(f.name, f.default)
        default = f"{text} (default: {'none' if value is None else value}{' here' if f.name in defaults else ''})"
        if hints[f.name] is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=value, help=default)
        elif f.metadata.get("many"):  # a list: the flag, once per item (--skip-check overlap --skip-check formula)
            group.add_argument(flag.rstrip("s"), dest=f.name, action="append", choices=f.metadata["choices"],
                               default=[], help=text)
        elif f.name == "charges" and charges:
            group.add_argument(flag, choices=charges, required=f.name not in defaults, default=value,
                               help=default if f.name in defaults else f"{text} (required here)")
        else:
            kind = next(t for t in (*typing.get_args(hints[f.name]), hints[f.name]) if t is not type(None))
            group.add_argument(flag, type=_setting_type(f, kind), choices=f.metadata.get("choices"),
                               default=value, metavar={int: "INT", float: "FLOAT"}.get(kind), help=default)


def _setting_type(f: dataclasses.Field, kind: type) -> Callable[[str], Any]:
    """The flag's parser: the field's type, then its choices and bounds (``fields.problem``)."""
    from discovery.fields import problem

    def parse(text: str) -> Any:
        value = kind(text)
        why = problem(f, value)
        if why:
            raise argparse.ArgumentTypeError(why)
        return value

    parse.__name__ = kind.__name__  # argparse: "invalid int value: 'x'"
    return parse


def oracle_settings(args: argparse.Namespace, **changes: Any):
    """The OracleSettings of the flags ``oracle_arguments`` added, with ``changes``."""
    from discovery.oracle.settings import OracleSettings

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(OracleSettings) if hasattr(args, f.name)}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    return OracleSettings(**{**given, **changes})


# ---- evaluate and datasets ---------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    from discovery.oracle.batch import evaluate_files

    properties = _levels(args.properties)
    fixed = dict.fromkeys(FIXED_CYCLES, args.cycles) if args.cycles else {}
    settings = oracle_settings(args, **fixed)
    paths = _expand(args.structures)
    if not paths:
        raise DiscoveryError(f"no structures found in {args.structures}")
    rows = evaluate_files(paths, properties, settings, out=args.out, workers=args.workers,
                          timeout_s=args.timeout, progress=not args.json, retry_failed=args.retry_failed)
    _print(rows[0] if len(rows) == 1 else rows, args.json, lambda _: "\n".join(_evaluate_line(r) for r in rows))
    return 1 if any(r.get("failures") for r in rows) else 0


def _expand(items: list[str]) -> list[str]:
    """Files as given; a directory stands for the CIFs in it (or in its structures/ folder)."""
    paths = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            base = p / "structures" if (p / "structures").is_dir() else p
            paths += sorted(str(c) for c in base.glob("*.cif"))
        else:
            paths.append(item)
    return paths


def _evaluate_line(r: dict) -> str:
    from discovery.oracle.core import adaptive_checks

    checks = adaptive_checks(r)

    def note(name: str, what: str = "") -> str:  # an interval the cycle cap left above its target says so
        c = checks.get(name)
        if c is None or c.converged:
            return ""
        target = "?" if c.target is None else f"{100 * c.target:g} %"
        return f" ({what}not converged: {100 * c.relative_ci:.1f} % > {target})"

    parts = [r.get("file", r.get("structure", "?")) + ":"]
    if geo := r.get("geometry"):
        parts.append(f"LCD {geo['lcd_A']:.2f} A, PLD {geo['pld_A']:.2f} A, ASA {geo['asa_m2_g']:.0f} m2/g;")
    if henry := r.get("henry"):
        co2, n2 = henry["co2"], henry["n2"]
        parts.append(f"K_H(CO2) {co2['kh_mol_kg_pa']:.3e} +- {co2['ci95']:.1e} mol/kg/Pa{note('henry.co2')}, "
                     f"K_H(N2) {n2['kh_mol_kg_pa']:.3e}{note('henry.n2')}" +
                     (f", Q_st {co2['qst_kj_mol']:.1f} kJ/mol;" if "qst_kj_mol" in co2 else ";"))
    if flue := r.get("flue_gas"):
        parts.append(f"flue gas CO2 {flue['co2_mol_kg']:.3f}{note('flue_gas')} N2 {flue['n2_mol_kg']:.3f} mol/kg, "
                     f"selectivity {flue['selectivity']:.1f};")
    if wc := r.get("working_capacity"):
        parts.append(f"working capacity {wc['co2_mol_kg']:.3f} +- {wc['ci95']:.3f} mol/kg"
                     f"{note('working_capacity.desorption', 'desorption ')};")
    if diff := r.get("diffusivity"):
        flag = "" if diff["converged"] else " (not diffusive: censored)"
        parts.append(f"D(CO2) {diff['co2_m2_s']:.2e} +- {diff['ci95']:.1e} m2/s{flag};")
    parts += [f"FAILED {level}: {f['message']}" for level, f in (r.get("failures") or {}).items()]
    return " ".join(parts)


def _levels(text: str) -> tuple[str, ...]:
    from discovery.oracle.core import LEVELS

    properties = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in properties if p not in LEVELS]
    if unknown or not properties:
        raise DiscoveryError(f"unknown --properties {unknown or text!r}; available: {', '.join(LEVELS)}")
    return properties


def cmd_dataset_trajectories(args: argparse.Namespace) -> int:
    from discovery.oracle.transport.trajectories import build_trajectories

    summary = build_trajectories(args.dir, args.out, oracle_settings(args), n=args.n, workers=args.workers,
                                 timeout_s=args.timeout, progress=not args.json)
    _print(summary, args.json, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()))
    return 0


def cmd_dataset_export_trajectories(args: argparse.Namespace) -> int:
    from discovery.oracle.transport.table import export_table

    summary = export_table(args.dirs, args.out, frame_ps=args.frame_ps, progress=not args.json)
    _print(summary, args.json, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()))
    return 0


def cmd_dataset_label(args: argparse.Namespace) -> int:
    from discovery.oracle.batch import evaluate_files

    structures = sorted((Path(args.dir) / "structures").glob("*.cif"))
    if not structures:
        raise DiscoveryError(f"{args.dir} has no structures/*.cif: not a dataset directory")
    properties = _levels(args.properties)
    out = Path(args.dir) / "labels" / f"{args.charges}.jsonl"
    out.parent.mkdir(exist_ok=True)
    if args.ids:
        structures = _listed(structures, args.ids)
    paths = [str(p) for p in structures[: args.limit]]
    rows = evaluate_files(paths, properties, oracle_settings(args), out=str(out), workers=args.workers,
                          timeout_s=args.timeout, progress=not args.json, retry_failed=args.retry_failed)
    failed = [r for r in rows if r.get("failures")]
    cpu_h = sum(sum(r.get("cpu_s", {}).values()) for r in rows) / 3600.0
    summary = {"labels": str(out), "structures": len(paths), "labelled": len(rows) - len(failed),
               "failed": len(failed), "cpu_hours": round(cpu_h, 2), "properties": list(properties),
               "charges": args.charges}
    _print(summary, args.json, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()))
    return 0


def _listed(structures: list[Path], ids: str) -> list[Path]:
    """The dataset's structures named by ``ids``, in its order: a file of ids (one per line, blank lines and
    # comments skipped; an id the dataset lacks is an error that names it), or a pool table (a committed
    name such as ``design``, or a ``.jsonl.gz`` path: its MOFs, to label them again with other settings; the
    ones the dataset lacks are reported and skipped)."""
    by_id = {p.stem: p for p in structures}
    wanted, table = wanted_ids(ids)
    missing = [i for i in wanted if i not in by_id]
    if missing and not table:
        raise DiscoveryError(f"--ids: {len(missing)} id(s) not in the dataset, e.g. {missing[:3]}")
    if missing:
        print(f"--ids: {len(missing)} of the table's {len(wanted)} MOFs are not in the dataset (e.g. "
              f"{', '.join(missing[:3])}): skipped", file=sys.stderr)
    listed = [by_id[i] for i in wanted if i in by_id]
    if not listed:
        raise DiscoveryError(f"--ids: {ids} names no structure of the dataset")
    return listed


def wanted_ids(ids: str) -> tuple[list[str], bool]:
    """The ids ``ids`` names, and whether it named a pool table."""
    from discovery.pool import POOLS, read_table

    if ids in POOLS or ids.endswith(".jsonl.gz"):
        _, rows = read_table(POOLS.get(ids, ids))
        return list(dict.fromkeys(r["id"] for r in rows)), True
    try:
        lines = Path(ids).read_text().splitlines()
    except OSError as exc:
        raise DiscoveryError(f"--ids: cannot read {ids}: {exc.strerror}") from None
    return list(dict.fromkeys(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))), False


# ---- benchmark ---------------------------------------------------------------------------------
def _engine_checks(args: argparse.Namespace) -> int:
    """--compare-engines (RASPA3 against the grid engine), --grid-check (the grids against direct sums or
    RASPA3's energies) or --estimator-check (RASPA3's CBMC estimator against plain insertion)."""
    from discovery.oracle.engine_benchmark import (
        CHARGES,
        check_estimators,
        check_grids,
        cif_structures,
        compare_engines,
        reference_structures,
    )

    labels = dict(CHARGES)
    wanted = [c.strip() for c in args.charges.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in labels]
    if unknown:
        raise DiscoveryError(f"--charges: unknown charge model(s) {unknown}; use {', '.join(labels)}")
    if not 0 < args.target < 1:
        raise DiscoveryError(f"--target must be in (0, 1), got {args.target}")
    flag = "--grid-check" if args.grid_check else "--estimator-check" if args.estimator_check else "--compare-engines"
    if args.cifs:
        structures, published = cif_structures(args.cifs, args.limit, args.seed), {}
    elif args.reference:
        names = [n.strip() for n in (args.names or "").split(",") if n.strip()]
        structures, published = reference_structures(args.reference, names)
    else:
        raise DiscoveryError(f"{flag} needs --reference DIR or --cifs DIR")
    models = [(c, labels[c]) for c in wanted]
    if args.grid_check:
        result = check_grids(structures, models, args.grid_spacing, against=args.against)
    elif args.estimator_check:
        result = check_estimators(structures, models, args.grid_spacing)
    else:
        result = compare_engines(structures, models, published, args.grid_spacing, target=args.target,
                                 max_cycles=args.max_cycles)
    _print(result, args.json, lambda r: json.dumps(r, indent=2))
    return 0


def cmd_benchmark_oracle(args: argparse.Namespace) -> int:
    if args.against != "direct" and not args.grid_check:
        raise DiscoveryError("--against chooses the reference of --grid-check; add --grid-check")
    checks = [f for f, on in (("--compare-engines", args.compare_engines), ("--grid-check", args.grid_check),
                               ("--estimator-check", args.estimator_check)) if on]
    if len(checks) > 1:
        raise DiscoveryError(f"choose one of {', '.join(checks)}")
    if checks:
        return _engine_checks(args)
    if not args.reference:
        raise DiscoveryError("benchmark oracle needs --reference DIR (co2_298K.csv and structures/)")
    from discovery.benchmark import benchmark_oracle

    result = benchmark_oracle(args.reference, workers=args.workers, md=not args.no_md)
    _print(result, args.json, lambda r: json.dumps(r, indent=2))
    transport_ok = args.no_md or result["transport"]["within_20pct"]
    return 0 if result["within_5pct_co2"] and transport_ok else 1

