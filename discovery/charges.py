"""Framework partial charges from EQeq (PyPI ``pyeqeq``), the practical charge model when none is given.

pyeqeq's Python wrapper imports ``pkg_resources`` (gone from current setuptools) only to locate its two
data files, so the compiled core is called directly with those paths. Its progress output is captured.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import tempfile
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from .cif import write_cif
from .errors import DiscoveryError


class ChargeError(DiscoveryError):
    """EQeq is missing or failed on a structure."""


def eqeq_charges(structure: Structure, name: str = "structure") -> np.ndarray:
    """EQeq charges (e) per site, in the structure's order (Ewald sums, EQeq's default parameters)."""
    core, ionization, centres = _eqeq()
    with tempfile.TemporaryDirectory(prefix="eqeq-") as tmp:
        cif = Path(tmp) / "input.cif"
        write_cif(structure, cif, name="eqeq")
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
                    core.ostream_redirect(stdout=True, stderr=True):
                out = core.run(str(cif), "json", 1.2, -2.0, 3, "ewald", 2, 2, 50.0, ionization, centres)
            charges = np.array(json.loads(out), dtype=float)
        except Exception as exc:  # the C++ core raises assorted runtime errors
            raise ChargeError(f"{name}: EQeq failed: {exc}") from None
    if charges.shape != (len(structure),) or not np.all(np.isfinite(charges)):
        raise ChargeError(f"{name}: EQeq returned {charges.shape[0]} charges for {len(structure)} atoms")
    return charges


def _eqeq():
    spec = importlib.util.find_spec("pyeqeq")
    try:
        import pyeqeq_eqeq
    except ImportError:
        raise ChargeError("EQeq charges need pyeqeq (`make venv` installs it: pybind11<3, --no-build-isolation)") from None
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return pyeqeq_eqeq, str(data / "ionizationdata.dat"), str(data / "chargecenters.dat")
