"""The frames (``substitution.Frame``: every unit placed) of the MOFs a generator edits, by id.

A frame comes from, in this order: a child the generator built by substitution (``remember``); a row whose CG
view keeps every bead's orientation (an import directory's records); or CoRE MOF 2019-ASR, whose CIF (in the
core-mof wheel) is cut again, because the committed pool table keeps compact CG views without orientations.
The cut uses the row's own units; its beads are matched to the row's unit by unit (``_in_row_order``).
A MOF with no frame (a design-space MOF, a structure the cut refuses) is edited by the CG assembler instead.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from discovery.errors import DiscoveryError
from discovery.generator.substitution import Frame, base_id
from discovery.structures.mof import Bead, CGView

log = logging.getLogger(__name__)
CORE_SUBSET = "2019-ASR"  # the subset the committed real pool was drawn from
MATCH_A = 3.0  # A: a cut bead matched farther than this from the row's bead of its unit: not the same MOF


class FrameSource:
    """Frames by MOF id, each built once (failures too: ``failures`` says why)."""

    def __init__(self, rows: Iterable[Mapping[str, Any]] = ()) -> None:
        self._rows = {r["id"]: r for r in rows if r.get("cg")}
        self._frames: dict[str, Frame | None] = {}
        self.failures: dict[str, str] = {}
        self._core: set[str] | None = None
        self._cifs: tempfile.TemporaryDirectory | None = None

    def remember(self, frame: Frame) -> None:
        self._frames[frame.id] = frame

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """More rows to build frames from (a campaign's stored results); ids already known keep theirs."""
        for r in rows:
            if r.get("cg"):
                self._rows.setdefault(r["id"], r)

    def get(self, mof_id: str) -> Frame | None:
        if mof_id not in self._frames:
            self._frames[mof_id] = self._build(mof_id)
        return self._frames[mof_id]

    def prefetch(self, ids: Iterable[str]) -> None:
        """Unpack the CoRE CIFs of ``ids`` in one pass over the wheel's archive (one pass per id otherwise)."""
        wanted = [i for i in ids if i not in self._frames and self._is_core(i) and not _has_orientations(self._rows[i])]
        if wanted:
            from discovery.library.importer import unpack_core_mof

            unpack_core_mof(CORE_SUBSET, wanted, self._folder())

    def _build(self, mof_id: str) -> Frame | None:
        row = self._rows.get(mof_id)
        if row is None:
            return None
        try:
            if _has_orientations(row):
                return _row_frame(row)
            if self._is_core(mof_id):
                return self._core_frame(row)
        except DiscoveryError as exc:
            self.failures[mof_id] = str(exc)
            log.info("no frame for %s: %s", mof_id, exc)
        return None

    def _is_core(self, mof_id: str) -> bool:
        if mof_id not in self._rows:
            return False
        if self._core is None:
            try:
                from discovery.library.importer import core_mof_names

                self._core = set(core_mof_names(CORE_SUBSET))
            except DiscoveryError:  # core-mof not installed: real parents go through the CG assembler
                self._core = set()
        return mof_id in self._core

    def _folder(self) -> Path:
        if self._cifs is None:
            self._cifs = tempfile.TemporaryDirectory(prefix="core-cifs-")
        return Path(self._cifs.name)

    def _core_frame(self, row: Mapping[str, Any]) -> Frame:
        from discovery.library.decompose import decompose
        from discovery.library.importer import unpack_core_mof
        from discovery.structures.mof import MOF

        path = unpack_core_mof(CORE_SUBSET, [row["id"]], self._folder())[0]
        mof = MOF.from_cif(path, id=row["id"])
        dec = decompose(mof.structure, row["id"], library=_row_blocks(row), topology=False)
        return Frame(row["id"], _in_row_order(dec.cg, row), dec.blocks)


def _has_orientations(row: Mapping[str, Any]) -> bool:
    return all(b.get("orientation") is not None for b in row["cg"]["beads"])


def _row_blocks(row: Mapping[str, Any]) -> dict:
    from discovery.library.units import block_from_row

    return {i: block_from_row(i, u) for i, u in (row.get("units") or {}).items()}


def _row_frame(row: Mapping[str, Any]) -> Frame:
    from discovery.library.units import UnitLibrary

    cg = CGView.from_dict(row["cg"])
    library = UnitLibrary(_row_blocks(row).values())
    return Frame(row["id"], cg, {b: library.get(b) for b in set(cg.bb_ids)})


def _in_row_order(cg: CGView, row: Mapping[str, Any]) -> CGView:
    """``cg``'s beads reordered as the row lists them (the order of the generator's example), unit by unit
    the nearest one-to-one (periodic); raises when the two do not describe the same beads. A bead may come
    back as another conformer of the row's unit (``~N`` is numbered per library, and this cut's library is
    the row's alone), or up to ``MATCH_A`` away (the row's positions came from the import's library, whose
    geometry of a unit can be another MOF's); it keeps the cut's, to which its orientation was fitted. An
    edit decides per unit (``substitution.choose_swaps``), so which of a unit's beads is which matters little."""
    from scipy.optimize import linear_sum_assignment

    lattice = np.asarray(cg.lattice)
    theirs = row["cg"]["beads"]
    if len(theirs) != len(cg.beads):
        raise DiscoveryError(f"{row['id']}: the CIF cut again gives {len(cg.beads)} beads, the row {len(theirs)}")
    order = np.full(len(theirs), -1)
    for unit in {base_id(b["bb_id"]) for b in theirs}:
        rows = [i for i, b in enumerate(theirs) if base_id(b["bb_id"]) == unit]
        mine = [i for i, b in enumerate(cg.beads) if base_id(b.bb_id) == unit]
        if len(rows) != len(mine):
            raise DiscoveryError(f"{row['id']}: the CIF cut again gives {len(mine)} beads of {unit}, the row "
                                 f"{len(rows)}")
        d = (np.array([cg.beads[k].frac_coords for k in mine])[None]
             - np.array([theirs[i]["frac_coords"] for i in rows])[:, None])
        d = np.linalg.norm((d - np.round(d)) @ lattice, axis=-1)
        r, c = linear_sum_assignment(d)
        if d[r, c].max() > MATCH_A:
            raise DiscoveryError(f"{row['id']}: a {unit} bead of the CIF cut again lies {d[r, c].max():.2f} A "
                                 f"from the row's (more than {MATCH_A} A)")
        order[np.array(rows)[r]] = np.array(mine)[c]
    return CGView(cg.lattice, tuple(cg.beads[k] for k in order), row["cg"].get("topology"))
