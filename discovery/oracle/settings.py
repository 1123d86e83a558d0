"""The physics oracle's settings, each defined once: its default, its allowed values and a one-line help.

``OracleSettings`` (the Python API, recorded in every result's ``settings``) is read by the campaign config's
``oracle:`` section (``config.OracleConfig`` holds every ``SimulationSettings`` field under the same name and
default) and by the command line (``discovery evaluate``, ``dataset label`` and ``dataset trajectories`` have
one flag per field, ``--first-cycles``, ``--no-block-pockets``, ..., with these defaults). A value outside its
choices or bounds fails when the settings are made, naming the setting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from discovery.fields import bounded, check, choice, setting

# seconds one structure may take (in a batch of `discovery evaluate`/`dataset label`, or as a campaign's
# oracle call: oracle.timeout_s) before it is recorded as failed
TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class SimulationSettings:
    """Every oracle setting but the seed: what a campaign config's ``oracle:`` section holds (a campaign's
    oracle takes the campaign's ``seed``)."""

    # auto: a user's CIF keeps its own charges (DDEC, REPEAT, ...); a MOF without any (generated, assembled,
    # or a CIF without _atom_site_charge) gets EQeq: CO2 is a quadrupole, so charges are on by default
    charges: str = choice("auto", "cif", "eqeq", "none", default="auto",
                          help="framework charges: the structure's if it has them, else EQeq (auto); the "
                               "structure's only (cif); computed (eqeq); none")
    target: float = bounded(0.05, 0.001, 1.0,
                            help="relative 95 % half-width at which Monte Carlo cycles stop (Widom and GCMC)")
    # grid: framework energy grids computed once per structure and Widom insertion by interpolation
    # (discovery.oracle.adsorption.widom); RASPA3 stays the reference, and GCMC levels always run on it
    engine: str = choice("raspa", "grid", default="raspa",
                         help="henry level engine: RASPA3 Widom (raspa) or energy-grid Widom (grid)")
    # coarser than 0.3 A the interpolated energies of strongly charged cells go wrong (benchmark oracle --grid-check)
    grid_spacing: float = bounded(0.2, 0.05, 0.3, help="grid engine: node spacing along each cell vector, A")
    grid_max_insertions: int = bounded(2_000_000, 100_000, help="grid engine: cap on Widom insertions per guest")
    device: str = choice("cpu", "cuda", default="cpu", help="grid engine: where grids and insertions are computed")
    first_cycles: int = bounded(500, 10, help="Widom cycles of the first run (more runs follow until the target or the cap)")
    max_cycles: int = bounded(5000, 10, help="cap on Widom cycles")
    qst_cycles: int = bounded(1000, 0, help="one-molecule cycles for the CO2 heat of adsorption; 0 skips Q_st")
    gcmc_init_cycles: int = bounded(500, 0, help="GCMC initialisation cycles (flue_gas, working_capacity)")
    gcmc_first_cycles: int = bounded(1000, 10, help="GCMC production cycles of the first run")
    gcmc_max_cycles: int = bounded(5000, 10, help="cap on GCMC production cycles")
    block_pockets: bool = setting(True, help="block the pockets Zeo++ finds inaccessible to CO2 (Monte Carlo levels)")
    # the benchmarked MD protocol (md_benchmark.SHORT_PROTOCOL): within 20 % of the long reference in ~6 CPU-min
    md_guests: int = bounded(10, 1, help="CO2 molecules in the MD box (diffusivity)")
    md_production_ps: float = bounded(2000.0, 1.0, help="MD production time, ps (diffusivity)")
    trajectories: str | None = setting(None, help="folder where MD trajectories are kept (npz, docs/trajectories.md)")
    skip_checks: tuple[str, ...] = choice("formula", "overlap", default=(), many=True,
                                          help="structure checks passed over on request (their findings are "
                                               "recorded in the result's skipped_checks)")
    temperature: float = bounded(298.0, 1.0, help="K, of the henry and diffusivity levels (flue gas: 298 K, "
                                                  "desorption: 363 K)")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class OracleSettings(SimulationSettings):
    seed: int = bounded(0, 0, help="random seed of every simulation")

    @classmethod
    def of(cls, section: SimulationSettings, **changes: Any) -> "OracleSettings":
        """The settings a config section (any ``SimulationSettings``) holds, with ``changes`` (e.g. the seed)."""
        shared = {f.name: getattr(section, f.name) for f in dataclasses.fields(SimulationSettings)}
        return cls(**{**shared, **changes})

    @property
    def trajectory_dir(self) -> str | None:
        """The old name of ``trajectories``."""
        return self.trajectories
