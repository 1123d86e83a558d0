"""Pockets a CO2 probe cannot reach from the channels (Zeo++ ``network -block``), for blocking in RASPA3.

Zeo++ classifies the void space the probe centre can occupy into channels (percolating) and pockets
(closed), samples it with Monte Carlo points and covers the pocket points with spheres that stay
``probe + 0.1`` A clear of every sampled channel point (Zeo++'s ``blockPockets``). Widom or GCMC moves
that put a guest atom inside a sphere are rejected, so guests never sit where they could not diffuse to.

pyzeo 0.2.0 compiles that routine into its extension but does not wrap it: its ``volume()`` calls the
string-returning ``calcAV`` with blocking off. This module calls the exported C++ overload
``calcAV(atmnet, orgatmnet, highAccuracy, r_chan, r_probe, numSamples, excludePockets, ostream&, filename,
visualize, VisIT, Liverpool, blockingMode, low, high, probeOccupiable)`` through ctypes with
``blockingMode`` on (Zeo++'s ``-block`` mode), both radii the probe's and ``std::cout`` as the stream.
Zeo++ writes the ``.block`` format: a count, then one line per sphere, ``a b c r`` with the centre in
fractional coordinates of the unit cell it was given and the radius in A. As in geometry.py, this runs
in a child process (Zeo++ may ``exit()``), on a copy jittered by 1e-3 A (voro++ and symmetric inputs);
Zeo++ seeds its own sampler, so results are reproducible. Zeo++'s default (CCDC) radii are used.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from pymatgen.core import Structure

from discovery.errors import GeometryError
from discovery.oracle.geometry.zeo import CO2_PROBE_RADIUS, run_zeo_child

SAMPLES_PER_A3 = 5.0  # Monte Carlo points per A^3 of cell when ``samples`` is not given
MIN_SAMPLES = 20000
TIMEOUT_S = 120.0

# The pyzeo 0.2.0 symbol (Itanium mangling) of the ostream overload of calcAV, and the Cython layout of
# pyzeo.extension.AtomNetwork: PyObject_HEAD, then ``ATOM_NETWORK *thisptr``, then ``int rad_flag``.
_CALC_AV = "_Z6calcAVP12ATOM_NETWORKS0_bddibRSoPcbbbbddb"
_CHILD = "from discovery.oracle.geometry.pockets import _child; _child()"


class PocketError(GeometryError):
    """Zeo++ could not find the inaccessible pockets of a structure (crash, timeout, unreadable output)."""


@dataclass(frozen=True)
class Pocket:
    """One Zeo++ blocking sphere: centre in fractional coordinates of the unit cell, radius in A."""

    centre_frac: tuple[float, float, float]
    radius_A: float


def inaccessible_pockets(structure: Structure, probe_radius: float = CO2_PROBE_RADIUS, samples: int | None = None,
                         *, name: str = "structure", timeout_s: float = TIMEOUT_S) -> list[Pocket]:
    """Spheres covering the void a probe of ``probe_radius`` (A) cannot reach from the channels; [] when
    there is none. ``samples``: Zeo++'s Monte Carlo points per unit cell (default ``SAMPLES_PER_A3``
    per A^3, at least ``MIN_SAMPLES``). PocketError, naming ``name``, when Zeo++ fails."""
    if not probe_radius > 0:
        raise ValueError(f"probe_radius must be positive, not {probe_radius}")
    if samples is None:
        samples = max(MIN_SAMPLES, math.ceil(SAMPLES_PER_A3 * structure.lattice.volume))
    if samples < 1:
        raise ValueError(f"samples must be at least 1, not {samples}")
    args = {"probe_radius": float(probe_radius), "samples": int(samples)}
    result = run_zeo_child(["-c", _CHILD], structure, args, timeout_s, name, "Zeo++ pocket blocking", PocketError)
    return [Pocket((a, b, c), r) for a, b, c, r in result["spheres"]]


def raspa_blocking(pockets: list[Pocket]) -> list[tuple[float, float, float, float]]:
    """The ``blocking_pockets=`` argument of ``raspalib.Component`` (3.1.0): one ``(a, b, c, r)`` per sphere.

    raspalib wants the centre in fractional coordinates of the unit cell passed to ``Framework`` (the
    same cell Zeo++ was given) and the radius in A; it applies every sphere in every replica of the cell,
    and rejects a trial molecule when any of its atoms is inside a sphere. Evidence (a 10 A cubic cell
    with one UFF carbon, replicated 3 x 3 x 3, CO2 Widom): the Rosenbluth weight with a sphere divided by
    the one without matched a direct numpy average of exp(-U/kT) over random CO2 poses, with these
    rules, to 0.001: (0.5, 0.5, 0.5, 4) gave 0.573 (numpy 0.573; 0.708 if only the C atom were tested,
    ~0.98 for one sphere per replicated box), (1/6, 1/6, 1/6, 4) gave 0.667 (numpy 0.667; 0.573 if the
    centre were a fraction of the 30 A box), (5, 5, 5, 4) gave 0.713 (numpy 0.712 for the centre
    5 x 10 A = a lattice point; 0.573 if it were Cartesian) and (0, 0, 0, 2), inside the carbon's own
    repulsive core, gave 1.000. tests/test_pockets.py repeats the first two.
    """
    return [(*(float(x) for x in p.centre_frac), float(p.radius_A)) for p in pockets]


def pocket_images(pockets: Sequence, matrix: Sequence[Sequence[int]] | np.ndarray
                  ) -> tuple[tuple[float, float, float, float], ...]:
    """Every periodic image of each unit-cell pocket that falls in a supercell, as ``(x, y, z, r)``: the
    centre in fractions of the supercell, the radius in A. One per pocket and copy of the unit cell.

    ``pockets``: ``Pocket``s or ``(fractional centre, radius)`` pairs of the unit cell; ``matrix``: the
    supercell's rows in unit-cell vectors (``discovery.structures.supercell.SimulationCell.matrix``). Both engines
    block these spheres: RASPA3 in box fractions, LAMMPS insertion in Cartesian coordinates.
    """
    if not len(pockets):
        return ()
    matrix = np.asarray(matrix, dtype=float)
    inverse = np.linalg.inv(matrix)
    # a box point t S (t in [0, 1)^3) has unit-cell coordinates within +-span, so for a centre within one cell
    # of the unit cell (Zeo++'s are in it, give or take rounding) these shifts reach every image
    span = int(np.abs(matrix).sum(axis=0).max()) + 1
    shifts = np.array(np.meshgrid(*[np.arange(-span, span + 1)] * 3, indexing="ij")).reshape(3, -1).T
    out = []
    for centre, radius in (_sphere(p) for p in pockets):
        frac = (np.asarray(centre, dtype=float)[None, :] + shifts) @ inverse  # unit-cell -> box fractions
        inside = np.all((frac >= -1e-9) & (frac < 1.0 - 1e-9), axis=1)
        out += [(*map(float, f), float(radius)) for f in frac[inside]]
    return tuple(out)


def _sphere(pocket) -> tuple:
    return (pocket.centre_frac, pocket.radius_A) if isinstance(pocket, Pocket) else tuple(pocket)


# ----------------------------------------------------------------------------------------------------
# Child process: ``python -c "from discovery.oracle.geometry.pockets import _child; _child()" CIF JSON_SETTINGS``
# ----------------------------------------------------------------------------------------------------

def _block(cif: str, probe_radius: float, samples: int, stdout_file: str) -> list[list[float]]:
    """Zeo++ blocking spheres ``[a, b, c, r]``; the C-level stdout must already go to ``stdout_file``."""
    import ctypes

    from pyzeo import extension
    from pyzeo.extension import AtomNetwork

    net = AtomNetwork.read_from_CIF(cif)
    head = object.__basicsize__
    if type(net).__basicsize__ != head + 2 * ctypes.sizeof(ctypes.c_void_p):
        raise RuntimeError("pyzeo.extension.AtomNetwork has an unexpected layout; this pyzeo is not 0.2.0")
    atmnet = ctypes.c_void_p.from_address(id(net) + head).value
    lib = ctypes.CDLL(extension.__file__)  # the already loaded extension: dlsym also sees its libstdc++
    calc_av = lib[_CALC_AV]
    calc_av.restype = ctypes.c_double
    b, d, p = ctypes.c_bool, ctypes.c_double, ctypes.c_void_p
    calc_av.argtypes = [p, p, b, d, d, ctypes.c_int, b, p, ctypes.c_char_p, b, b, b, b, d, d, b]
    cout = ctypes.addressof(ctypes.c_void_p.in_dll(lib, "_ZSt4cout"))
    flush = lib["_ZNSo5flushEv"]
    flush.argtypes, flush.restype = [p], p
    calc_av(atmnet, atmnet, False, probe_radius, probe_radius, samples, True, cout, b"zeo", False, False, False,
            True, -1.0, -1.0, False)
    flush(cout)
    ctypes.CDLL(None).fflush(None)
    return _parse_block(Path(stdout_file).read_text(errors="replace"))


def _parse_block(text: str) -> list[list[float]]:
    """The ``.block`` part (count, then ``a b c r`` lines) that ends Zeo++'s stdout."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    for i in range(len(rows) - 1, -1, -1):
        row = rows[i]
        if len(row) == 1 and row[0].isdigit() and int(row[0]) == len(rows) - 1 - i:
            if all(len(r) == 4 for r in rows[i + 1:]):
                return [[float(x) for x in r] for r in rows[i + 1:]]
    raise RuntimeError("no blocking spheres at the end of Zeo++'s output")


def _child() -> None:
    cif, settings = sys.argv[1], json.loads(sys.argv[2])
    out = os.fdopen(os.dup(1), "w")
    with tempfile.NamedTemporaryFile(prefix="zeo-stdout-", suffix=".txt") as log:
        os.dup2(log.fileno(), 1)  # Zeo++ writes progress, then the spheres, to the C-level stdout
        try:
            result = {"spheres": _block(cif, **settings, stdout_file=log.name)}
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
    out.write(json.dumps(result) + "\n")
    out.flush()
