"""The physics oracle: ``Oracle().evaluate(mof)`` runs the requested levels and returns a typed record.

Levels, cheapest first:
- ``geometry``: Zeo++ pore descriptors (the cheap first fidelity);
- ``henry``: RASPA3 Widom K_H of CO2 and N2 at 298 K (adaptive cycles) and the CO2 heat of adsorption;
- ``flue_gas``: GCMC of CO2/N2 15:85 at 1 bar, 298 K: uptakes and CO2/N2 selectivity;
- ``working_capacity``: flue-gas CO2 uptake minus pure-CO2 uptake at 0.1 bar, 363 K;
- ``diffusivity``: CO2 self-diffusivity from molecular dynamics (LAMMPS).
Every level records its CPU seconds; a level that fails is recorded with its reason and message, and the
other levels still run. Adsorption runs block the pockets a CO2 probe cannot reach (found by Zeo++).
Monte Carlo quantities run until their 95 % interval meets ``target`` or a cycle cap; each records whether it
met it (``converged``) and the record's top-level ``converged`` is False when any did not (``adaptive_checks``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import version
from typing import Any, Callable

import numpy as np

from discovery.clock import cpu_seconds
from discovery.errors import DiscoveryError
from discovery.oracle.adsorption.adaptive import relative
from discovery.oracle.adsorption.forcefield import CO2, N2
from discovery.oracle.adsorption.raspa import (
    Box,
    adaptive_henry,
    adaptive_uptake,
    framework_charges,
    heat_of_adsorption,
    protocol,
    simulation_box,
)
from discovery.oracle.settings import (  # one definition, shared with the config and the CLI
    OracleSettings,
)
from discovery.structures.mof import MOF
from discovery.targets import KH_CO2

LEVELS = ("geometry", "henry", "flue_gas", "working_capacity", "diffusivity")
FLUE_GAS = {"pressure_pa": 1e5, "temperature": 298.0, "mole_fractions": (0.15, 0.85)}
DESORPTION = {"pressure_pa": 1e4, "temperature": 363.0}
VERSIONED = ("mof-discovery", "raspalib", "pyzeo", "pymatgen", "lammps")


# log10 of what the oracle measures (K_H in mol/kg/Pa, uptake in mol/kg): what surrogates learn and campaigns
# optimise, because K_H spans orders of magnitude across MOFs
TARGETS: dict[str, Callable[[dict], float]] = {
    KH_CO2: lambda r: math.log10(r["henry"]["co2"]["kh_mol_kg_pa"]),
    "log10_kh_n2": lambda r: math.log10(r["henry"]["n2"]["kh_mol_kg_pa"]),
    "log10_flue_co2": lambda r: math.log10(r["flue_gas"]["co2_mol_kg"]),
    "log10_d_co2": lambda r: math.log10(r["diffusivity"]["co2_m2_s"]),  # self-diffusivity, m^2/s (MD)
}


@dataclass(frozen=True)
class AdaptiveCheck:
    """One adaptive Monte Carlo quantity of a record: its value, 95 % half-width, the relative half-width asked
    for and whether it was met."""

    value: float
    ci95: float
    target: float | None
    converged: bool

    @property
    def relative_ci(self) -> float:
        return relative(self.value, self.ci95)


# the adaptive quantities of a record: name -> (path to its entry, value key, ci95 key, prefix of its flags)
ADAPTIVE: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "henry.co2": (("henry", "co2"), "kh_mol_kg_pa", "ci95", ""),
    "henry.n2": (("henry", "n2"), "kh_mol_kg_pa", "ci95", ""),
    "flue_gas": (("flue_gas",), "co2_mol_kg", "co2_ci95", ""),  # sized for the CO2 uptake
    "working_capacity.desorption": (("working_capacity",), "desorption_co2_mol_kg", "desorption_ci95", "desorption_"),
}


def adaptive_checks(record: dict[str, Any]) -> dict[str, AdaptiveCheck]:
    """The adaptive Monte Carlo quantities a record (``OracleResult.to_dict()`` or its ``properties``) holds,
    by name (``ADAPTIVE``). A record saved before the flag existed (a reused ``--out`` result) is judged by its
    interval against its settings' ``target``; without either it counts as converged: it cannot say."""
    out = {}
    settings = record.get("settings")
    asked = settings.get("target") if isinstance(settings, dict) else None
    for name, (path, value, ci, prefix) in ADAPTIVE.items():
        entry: Any = record
        for key in path:
            entry = entry.get(key) if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or value not in entry:
            continue
        check = AdaptiveCheck(entry[value], entry[ci], entry.get(prefix + "target", asked), True)
        flag = entry.get(prefix + "converged")
        if flag is None and check.target is not None:
            flag = check.relative_ci <= check.target
        out[name] = replace(check, converged=True if flag is None else bool(flag))
    return out


def target_values(record: dict[str, Any]) -> dict[str, float]:
    """The targets an oracle record (``OracleResult.to_dict()``) provides; failed or missing levels and
    non-positive values (outside the log's domain) are left out."""
    out = {}
    for name, f in TARGETS.items():
        try:
            value = f(record)
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(value):
            out[name] = value
    return out


@dataclass
class OracleResult:
    structure: str
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, dict[str, str]] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    skipped_checks: dict[str, str] = field(default_factory=dict)  # check passed over on request -> its finding

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def unconverged(self) -> list[str]:
        """The adaptive Monte Carlo quantities whose interval ended above its target (``ADAPTIVE`` names)."""
        return [name for name, c in adaptive_checks(self.properties).items() if not c.converged]

    def to_dict(self) -> dict[str, Any]:
        """One flat record: each level's results under its own name (``henry``, ``flue_gas``, ...), and
        ``converged`` (False when any adaptive Monte Carlo interval ended above its target, named in
        ``unconverged``; the diffusivity's own ``converged`` is another matter: whether MD became diffusive)."""
        unconverged = self.unconverged
        return {"structure": self.structure, **self.properties, "failures": self.failures, "cpu_s": self.cpu_s,
                "settings": self.settings, "versions": self.versions, "converged": not unconverged,
                **({"unconverged": unconverged} if unconverged else {}),
                **({"skipped_checks": self.skipped_checks} if self.skipped_checks else {})}


class Oracle:
    """Runs the oracle levels on one structure at a time."""

    def __init__(self, settings: OracleSettings | None = None) -> None:
        self.settings = settings or OracleSettings()
        # the latest charges and box, each keyed on the structure's content and the settings it depends on:
        # the levels of one structure share them, and another structure (or this one edited) never gets them
        self._cache: dict[str, tuple[tuple, Any]] = {}
        self._skipped: dict[str, str] = {}  # the current evaluation's skipped checks and what they found

    def evaluate(self, mof: MOF, properties: tuple[str, ...] = ("geometry", "henry")) -> OracleResult:
        unknown = [p for p in properties if p not in LEVELS]
        if unknown:
            raise DiscoveryError(f"unknown oracle level(s) {unknown}; available: {', '.join(LEVELS)}")
        result = OracleResult(structure=mof.id, settings={**asdict(self.settings), "protocol": protocol()},
                              versions=versions())
        self._cache.clear()  # each evaluation makes (and pays for) its charges and box, once
        result.skipped_checks.update(mof.provenance.get("skipped_checks", {}))
        self._skipped = result.skipped_checks  # the box records what a skipped check found
        for level in sorted(properties, key=LEVELS.index):
            t0 = cpu_seconds()
            try:
                result.properties[level] = getattr(self, f"_{level}")(mof, result)
            except DiscoveryError as exc:
                result.failures[level] = {"reason": type(exc).__name__, "message": str(exc)}
            result.cpu_s[level] = round(cpu_seconds() - t0, 3)
        return result

    def box(self, mof: MOF) -> Box:
        """The simulation box of ``mof``: smallest valid supercell, charges, blocked pockets."""
        key = (self._content(mof), self.settings.charges, self.settings.block_pockets)
        return self._cached("box", key, lambda: self._new_box(mof))

    def charges(self, mof: MOF) -> np.ndarray:
        """The checked, neutral per-atom charges of ``mof`` under ``settings.charges``."""
        key = (self._content(mof), self.settings.charges)
        return self._cached("charges", key, lambda: framework_charges(mof, self.settings.charges))

    def _cached(self, name: str, key: tuple, make: Callable[[], Any]) -> Any:
        if name not in self._cache or self._cache[name][0] != key:
            self._cache[name] = (key, make())
        return self._cache[name][1]

    def _new_box(self, mof: MOF) -> Box:
        pockets = []
        if self.settings.block_pockets:
            from discovery.oracle.geometry.pockets import inaccessible_pockets

            pockets = inaccessible_pockets(mof.structure, name=mof.id)
        return simulation_box(mof, self.charges(mof), pockets=pockets, skip=self.settings.skip_checks,
                              findings=self._skipped)

    @staticmethod
    def _content(mof: MOF) -> tuple:
        """What charges and a box are made from: id, lattice, species, positions and given charges."""
        s = mof.structure
        return (mof.id, s.lattice.matrix.tobytes(), tuple(str(sp) for sp in s.species), s.frac_coords.tobytes(),
                None if mof.charges is None else np.asarray(mof.charges, dtype=float).tobytes())

    def _geometry(self, mof: MOF, _: OracleResult) -> dict[str, Any]:
        from discovery.oracle.geometry.zeo import compute_geometry

        g = compute_geometry(mof.structure, name=mof.id).to_dict()
        renamed = {"lcd": "lcd_A", "pld": "pld_A", "lcd_along_path": "lcd_along_path_A", "cpu_s": "cpu_s_zeo"}
        return {renamed.get(k, k): v for k, v in g.items()}

    def _henry(self, mof: MOF, _: OracleResult) -> dict[str, Any]:
        if self.settings.engine == "grid":
            return self._grid_henry(mof)
        s, box = self.settings, self.box(mof)
        common = dict(charges=s.charges, seed=s.seed, temperature=s.temperature, box=box)
        runs = {g.name.lower(): adaptive_henry(mof, g, target=s.target, first_cycles=s.first_cycles,
                                               max_cycles=s.max_cycles, **common) for g in (CO2, N2)}
        out: dict[str, Any] = {key: {"kh_mol_kg_pa": r.kh, "ci95": r.kh_ci95, "cycles": r.cycles, **_flags(r)}
                               for key, r in runs.items()}
        if s.qst_cycles > 0:  # labelling a design space may skip it: K_H is what the surrogates learn
            heat = heat_of_adsorption(mof, CO2, cycles=s.qst_cycles, **common)
            out["co2"].update(qst_kj_mol=heat.qst_kj_mol, qst_ci95=heat.ci95, qst_cycles=heat.cycles)
        out["kh_ratio_co2_n2"] = runs["co2"].kh / runs["n2"].kh
        engine_cpu = sum(r.cpu_s for r in runs.values()) + (heat.cpu_s if s.qst_cycles > 0 else 0.0)
        out.update(engine="raspa", engine_cpu_s=round(engine_cpu, 3), **_box_record(box))
        return out

    def _grid_henry(self, mof: MOF) -> dict[str, Any]:
        """The henry level on energy grids: K_H of CO2 and N2 and the CO2 Q_st from the same insertions."""
        from discovery.oracle.adsorption.grid import Framework, GridSettings
        from discovery.oracle.adsorption.widom import WidomSettings, grid_henry

        s, box = self.settings, self.box(mof)
        runs = grid_henry(Framework.from_box(box), (CO2, N2), GridSettings(spacing_A=s.grid_spacing, device=s.device),
                          WidomSettings(target=s.target, max_insertions=s.grid_max_insertions,
                                        temperature=s.temperature, seed=s.seed))
        co2, n2 = runs["CO2"], runs["N2"]
        out: dict[str, Any] = {g.lower(): {"kh_mol_kg_pa": r.kh, "ci95": r.kh_ci95, "insertions": r.insertions,
                                           **_flags(r)} for g, r in runs.items()}
        out["co2"].update(qst_kj_mol=co2.qst_kj_mol, qst_ci95=co2.qst_ci95)
        out["kh_ratio_co2_n2"] = co2.kh / n2.kh
        sampling = {k: co2.settings[k] for k in ("interpolation", "block", "orientation_trials", "max_insertions")}
        out.update(engine="grid", engine_cpu_s=round(co2.grid_cpu_s + co2.cpu_s + n2.cpu_s, 3),
                   grid_shape=co2.settings["grid_shape"], grid_cpu_s=round(co2.grid_cpu_s, 3), sampling=sampling,
                   **_box_record(box))
        return out

    def _flue_gas(self, mof: MOF, _: OracleResult) -> dict[str, Any]:
        s = self.settings
        r = adaptive_uptake(mof, (CO2, N2), FLUE_GAS["mole_fractions"], pressure_pa=FLUE_GAS["pressure_pa"],
                            temperature=FLUE_GAS["temperature"], charges=s.charges, target=s.target,
                            first_cycles=s.gcmc_first_cycles, max_cycles=s.gcmc_max_cycles,
                            init_cycles=s.gcmc_init_cycles, seed=s.seed, box=self.box(mof))
        y_co2, y_n2 = FLUE_GAS["mole_fractions"]
        q_co2, q_n2 = r.uptake["CO2"], r.uptake["N2"]
        return {"co2_mol_kg": q_co2, "co2_ci95": r.ci95["CO2"], "n2_mol_kg": q_n2, "n2_ci95": r.ci95["N2"],
                "selectivity": (q_co2 / q_n2) / (y_co2 / y_n2) if q_n2 > 0 else float("inf"),
                "pressure_pa": r.pressure_pa, "temperature_K": r.temperature, "mole_fractions": r.mole_fractions,
                "fugacity_coefficients": r.fugacity_coefficients, "cycles": r.cycles, "init_cycles": r.init_cycles,
                **_flags(r)}

    def _working_capacity(self, mof: MOF, result: OracleResult) -> dict[str, Any]:
        s = self.settings
        if "flue_gas" not in result.properties:  # adsorption step: reuse the flue-gas level, or run it
            if "flue_gas" in result.failures:
                why = result.failures["flue_gas"]["message"]
                raise DiscoveryError(f"{mof.id}: no flue-gas uptake to start from ({why})")
            result.properties["flue_gas"] = self._flue_gas(mof, result)
        adsorbed = result.properties["flue_gas"]
        r = adaptive_uptake(mof, (CO2,), (1.0,), pressure_pa=DESORPTION["pressure_pa"],
                            temperature=DESORPTION["temperature"], charges=s.charges, target=s.target,
                            first_cycles=s.gcmc_first_cycles, max_cycles=s.gcmc_max_cycles,
                            init_cycles=s.gcmc_init_cycles, seed=s.seed, box=self.box(mof))
        desorbed = r.uptake["CO2"]
        return {"co2_mol_kg": adsorbed["co2_mol_kg"] - desorbed,
                "ci95": float(np.hypot(adsorbed["co2_ci95"], r.ci95["CO2"])),
                "adsorption_co2_mol_kg": adsorbed["co2_mol_kg"], "desorption_co2_mol_kg": desorbed,
                "desorption_ci95": r.ci95["CO2"], "desorption_pressure_pa": r.pressure_pa,
                "desorption_temperature_K": r.temperature, "desorption_cycles": r.cycles,
                **_flags(r, "desorption_")}

    def _diffusivity(self, mof: MOF, _: OracleResult) -> dict[str, Any]:
        from discovery.oracle.transport.md import run_md

        s = self.settings
        r = run_md(mof, self.charges(mof), n_guests=s.md_guests, production_ps=s.md_production_ps, seed=s.seed,
                   temperature=s.temperature, out_dir=s.trajectory_dir)
        return {"co2_m2_s": r.d_m2_s, "ci95": r.ci95, "converged": r.converged, "reason": r.reason,
                "loglog_slope": r.slope, "fit_window_ps": list(r.fit_window_ps), "n_guests": r.n_guests,
                "simulated_ps": r.simulated_ps, "mean_temperature_K": r.mean_temperature,
                "ms_per_step": r.ms_per_step, "trajectory": r.trajectory_path, "md_settings": r.settings}


def _flags(r: Any, prefix: str = "") -> dict[str, Any]:
    """Whether an adaptive run (``HenryResult``, ``UptakeResult``, ``GridHenryResult``) met its target, and the
    target (relative 95 % half-width); the interval reached is the entry's ci95."""
    return {prefix + "converged": r.converged, prefix + "target": r.target}


def _box_record(box: Box) -> dict[str, Any]:
    return {"box_copies": box.copies, "box_matrix": [list(r) for r in box.matrix],
            "blocked_pockets": len(box.blocking)}


def versions() -> dict[str, str]:
    """The versions of the packages a result depends on."""
    found = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except Exception:  # an optional engine that is not installed is recorded as absent
            found[name] = "not installed"
    return found
