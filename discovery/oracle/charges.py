"""Framework partial charges: the check every simulation engine applies to them, and EQeq (PyPI ``pyeqeq``),
the practical charge model when none is given.

Policy (``neutral_charges``, used by RASPA3 and LAMMPS alike): a framework must be made of elements the
force field knows and carry one finite charge per atom; a net charge beyond ``NEUTRALITY_TOLERANCE_E`` is
an error (a wrong or incomplete charge set), a smaller one is rounding noise and is spread evenly over the
atoms, so that Ewald and PPPM see an exactly neutral cell. The caller gets the residual it spread.

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
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from pymatgen.core import Structure

from discovery.structures.cif import write_cif
from discovery.errors import DiscoveryError
from discovery.oracle.adsorption.forcefield import ForceFieldError, framework_lj

if TYPE_CHECKING:
    from discovery.structures.mof import MOF

# Both engines rejected beyond 0.01 e before sharing this check (RASPA3's "cif" charges, and MD), so it stays.
# CIF charges (DDEC, EQeq) are printed with 4-6 decimals: the reference frameworks are off by <= 1e-5 e, and
# 4-decimal rounding (<= 5e-5 e an atom, random signs) stays near 1e-3 e even over thousands of atoms, while a
# missing or mis-assigned charge leaves a tenth of an e or more.
NEUTRALITY_TOLERANCE_E = 1e-2


class ChargeError(DiscoveryError):
    """Charges that cannot be simulated (wrong count, not finite, not neutral), or EQeq missing or failing."""


class NeutralCharges(NamedTuple):
    """Per-atom charges (e) that sum to zero, and the net charge ``residual_e`` that was spread to get them."""

    charges: np.ndarray
    residual_e: float


def neutral_charges(mof: MOF, charges: np.ndarray, error: type[DiscoveryError] = ChargeError) -> NeutralCharges:
    """The checks and the neutralisation policy of this module's docstring, before any simulation.

    ForceFieldError naming ``mof.id`` for an element UFF lacks; ``error`` (the calling engine's own error
    class, so that its callers catch what they always caught) for a wrong count, a non-finite charge or a
    net charge beyond ``NEUTRALITY_TOLERANCE_E``."""
    q = np.asarray(charges, dtype=float)
    if q.shape != (mof.n_atoms,):
        raise error(f"{mof.id}: charges must be {mof.n_atoms} finite numbers, got {q.size} charges for "
                    f"{mof.n_atoms} atoms")
    if not np.all(np.isfinite(q)):
        raise error(f"{mof.id}: charges must be {mof.n_atoms} finite numbers, got {int((~np.isfinite(q)).sum())} "
                    "that are not")
    total = float(q.sum())
    if abs(total) > NEUTRALITY_TOLERANCE_E:
        raise error(f"{mof.id}: framework charges sum to {total:+.4f} e, not to zero")
    for el in sorted({site.specie.symbol for site in mof.structure}):
        try:
            framework_lj(el)
        except ForceFieldError as exc:
            raise ForceFieldError(f"{mof.id}: {exc}") from None
    return NeutralCharges(q - total / q.size, total)


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
