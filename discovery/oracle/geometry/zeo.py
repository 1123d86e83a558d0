"""Pore geometry from Zeo++ (PyPI ``pyzeo``): cavity and pore-limiting diameters, surface area, void fraction.

Conventions, recorded in every result's settings:
- the probe is CO2 (radius 1.65 A, half its 3.3 A kinetic diameter) for the accessible surface area,
  the accessible volume and the channel count; the void fraction is the geometric one (point probe);
- Zeo++'s default (CCDC) radii; ``high_accuracy=True`` adds Zeo++'s DEF sphere decomposition
  (10-100x slower; LCD/PLD change by a few percent);
- atoms are displaced by ~0.001 A (a fixed seed) before the Voronoi step: exactly symmetric positions
  make voro++ fail or abort the process; the change is far below any reported digit.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from discovery.errors import GeometryError
from discovery.structures.cif import write_cif

CO2_PROBE_RADIUS = 1.65
JITTER_A = 1e-3


@dataclass(frozen=True)
class GeometrySettings:
    probe_radius: float = CO2_PROBE_RADIUS
    sa_samples: int = 1000  # Monte Carlo samples per atom for the surface area
    vol_samples: int = 20000  # Monte Carlo samples per cell for volumes
    high_accuracy: bool = False
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        for name in ("probe_radius", "sa_samples", "vol_samples", "timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise GeometryError(f"geometry setting {name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class Geometry:
    """Zeo++ descriptors. Diameters in A; ``asa_*`` accessible to the probe; fractions of the cell volume."""

    lcd: float
    pld: float
    lcd_along_path: float
    density_g_cm3: float
    asa_m2_g: float
    asa_m2_cm3: float
    nasa_m2_g: float
    void_fraction: float
    probe_accessible_fraction: float
    probe_inaccessible_fraction: float
    n_channels: int
    n_pockets: int
    cpu_s: float
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def compute_geometry(structure: Structure, settings: GeometrySettings | None = None, name: str = "structure") -> Geometry:
    """Run Zeo++ on a structure in a child process; GeometryError on a crash, timeout or bad output."""
    settings = settings or GeometrySettings()
    args = {k: v for k, v in asdict(settings).items() if k != "timeout_s"}
    result = run_zeo_child(["-m", "discovery.oracle.geometry._zeo"], structure, args, settings.timeout_s, name, "Zeo++")
    return Geometry(**result, settings=asdict(settings))


@dataclass(frozen=True)
class PoreChannels:
    """Zeo++'s channel analysis alone (no Monte Carlo areas or volumes): the number of channels a sphere of
    each radius travels through. A sphere of diameter d percolates exactly when the PLD is at least d, so
    this answers the pore checks at about half the cost of ``compute_geometry``, without the descriptors."""

    channels: dict[float, int]  # probe radius (A) -> channels
    cpu_s: float

    def percolates(self, radius: float) -> bool:
        return self.channels[radius] > 0


def compute_channels(structure: Structure, radii: tuple[float, ...], timeout_s: float = 120.0,
                     name: str = "structure") -> PoreChannels:
    """Run Zeo++'s channel analysis at each radius in a child process (``compute_geometry``'s conventions:
    CCDC radii, the same jitter); GeometryError on a crash, timeout or bad output."""
    result = run_zeo_child(["-m", "discovery.oracle.geometry._zeo"], structure,
                           {"task": "channels", "radii": list(radii)}, timeout_s, name, "Zeo++")
    return PoreChannels(dict(zip(radii, result["channels"])), result["cpu_s"])


def run_zeo_child(argv: list[str], structure: Structure, args: dict, timeout_s: float, name: str, what: str,
                  error: type[GeometryError] = GeometryError) -> dict:
    """Run a Zeo++ task in a child Python (``python ARGV CIF JSON_ARGS``) on a jittered copy of the
    structure and return the JSON object it prints last; ``error`` naming the structure when the child
    times out, aborts (Zeo++ may call exit()) or reports an error."""
    with tempfile.TemporaryDirectory(prefix="zeo-") as tmp:
        cif = Path(tmp) / "input.cif"
        write_cif(jitter(structure), cif, name="zeo")
        try:
            proc = subprocess.run([sys.executable, *argv, str(cif), json.dumps(args)],
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise error(f"{name}: {what} gave no result within {timeout_s:g} s") from None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise error(f"{name}: {what} aborted (exit code {proc.returncode}): {tail}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise error(f"{name}: {what} failed: {result['error']}")
    return result


def jitter(structure: Structure) -> Structure:
    """A copy with every atom moved by a seeded ~0.001 A (voro++ aborts on exactly symmetric inputs)."""
    rng = np.random.default_rng(0)
    cart = structure.cart_coords + rng.normal(0.0, JITTER_A, size=(len(structure), 3))
    return Structure(structure.lattice, structure.species, cart, coords_are_cartesian=True)
