"""Assembly of a coarse-grained (CG) MOF sample into atoms, after MOFDiff (Fu et al., 2023).

A CG sample is a lattice, one bead position per building block (BB) and the BB id of each bead, with no
orientations. Every BB's connection points (CPs, pormake's dummy ``X`` atoms) must meet a CP of a
neighbouring BB: in pormake-built MOFs the two X's of a bond coincide (within 0.2 A, rarely 0.7 A) and
the real atoms bonded to them form the bond between the BBs. A unit cut from a real MOF keeps its X's at
its partner atoms; assembly reads it with each X moved to its bond's midpoint (``units.assembly_form``), where
pormake's sit. Assembly finds orientations that make the X's meet, from known ones where given:

0-3. Orient (``cg_orient``, where the steps are described): a first guess (each bead's CPs pointed at its
   nearest neighbouring beads), an annealed Gaussian overlap of CPs over several restarts with repair
   rounds, a one-to-one pairing of the CPs, and Procrustes refinement so that paired X's coincide. The
   sample's arrays and its candidate CP pairs under periodic images are in ``cg_beads``.
4. Build: the BBs' real atoms (X removed); each linker's free spin about its axis optimised as in
   pormake assembly (``discovery.library.orient``); each node turned, among the rotations that keep its CPs in
   place, to the one that clashes least. The best ``candidates`` distinct configurations are built in
   turn until one passes ``validity.check_structure``.

Convention: malformed input raises (an unknown BB id: ``UnknownBuildingBlockError``; shapes, non-finite
numbers, a degenerate lattice: ``CGAssemblyError``). A well-formed sample whose CPs cannot be paired (or
do not meet after refinement) returns an ``AssemblyResult`` with ``mof=None`` and a message saying why.
A MOF is returned whenever they can, with ``report`` (the atom checks, no Zeo++) saying if it is valid.

Orientations follow ``assembly._orthogonal_fit``: placed = (library - library CP centroid) @ O.T + bead,
and are proper rotations: every BB keeps the library's hand. pormake sometimes places the mirror image
of a BB whose CP set is chiral (no proper rotation maps it onto its mirror image: N50, N307, N383, N161;
in 20 of 300 pormake MOFs here). With ``allow_reflection`` such BBs may be fitted mirrored (det O = -1,
the enantiomer); on 15 of those MOFs it made no difference (12 valid either way), so it is off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from pymatgen.core import Lattice, Structure

from discovery.library.assembly import orthogonal_fit
from discovery.library.building_blocks import BuildingBlockLibrary
from discovery.errors import CGAssemblyError
from discovery.structures.mof import MOF, Bead, CGView
from discovery.library.orient import optimise_edge_spins
from discovery.library.units import assembly_form
from discovery.structures.validity import ValidityReport, check_structure
from discovery.generator.cg_beads import Beads, candidate_pairs, chiral_cp_set, Pairs
from discovery.generator.cg_orient import Bonds, choose_node_symmetries, cp_positions, Fit, refine, search


@dataclass(frozen=True)
class CGAssemblySettings:
    """Knobs of the assembly (lengths in Angstrom). Defaults measured on pormake-built MOFs."""

    # candidate bonds
    neighbour_margin: float = 2.0  # bead pairs farther apart than their arm lengths plus this never bond
    edge_edge_bonds: bool = False  # as in pormake nets, a linker bonds only to nodes
    # more candidate CP pairs than this refuse the sample: pormake's MOFs have at most ~800, real MOFs a median
    # of ~3,000, but a rod or sheet unit with arms across the cell (300 CPs, arms of 37 A) gave 11 million
    # and an annealing that ran for hours
    max_candidate_pairs: int = 200_000
    allow_reflection: bool = False  # let BBs with a chiral CP set be placed mirrored (see module doc)
    # 1. annealing
    # 4 x 150 (not 8 x 250): on 40 generated samples the same validity (23 vs 21 valid) at 0.56 instead of
    # 0.76 CPU-s per sample
    restarts: int = 4
    steps: int = 150
    sigma_start: float = 4.0  # Gaussian overlap width at the first step: wide, node arms reach 6-7 A...
    sigma_end: float = 0.2  # ...and at the last (geometric schedule)
    learning_rate: float = 0.05  # Adam, on quaternion components and translations (A)
    translation_weight: float = 0.5  # penalty per A^2 of bead movement (one CP's overlap is at most 1)
    # re-anneal the best configuration with its bad beads redrawn. 1, not 4: on 64 generated samples 35 valid
    # either way, at 0.33 instead of 0.54 CPU-s per sample (failures pay for every round)
    repair_rounds: int = 1
    repair_steps: int = 150
    repair_sigma_start: float = 1.0  # narrower than the first round: the well placed beads should stay
    repair_gap: float = 0.35  # a bead with a pair wider than this after annealing is bad
    repair_reach: float = 3.0  # beads with a CP this close to a bad bead's CP may be redrawn too
    # 2. pairing, 3. refinement
    pair_threshold: float = 1.0  # CPs farther apart than this after annealing are not paired
    refine_iterations: int = 300
    refine_tolerance: float = 1e-4  # stop once no CP moved more than this in an iteration (A)
    refine_translation_weight: float = 0.1  # Procrustes penalty on bead movement, in units of one CP
    max_gap: float = 0.8  # widest pair accepted after refinement (pormake's own output reaches 0.7)
    # 4. atoms
    spin_edges: bool = True
    spin_passes: int = 2  # passes of orient.optimise_edge_spins over all linkers...
    spin_angles: int = 36  # ...each trying this many angles
    choose_node_symmetry: bool = True  # among a node's CP-preserving rotations, the one that clashes least
    candidates: int = 3  # complete pairings built, best first, until one passes validity.check_structure


DEFAULT_SETTINGS = CGAssemblySettings()


@dataclass(frozen=True)
class AssemblyResult:
    """Outcome of one assembly. ``mof`` is None on failure, and ``message`` says why.

    ``rmsd_cp``: RMS distance between paired CPs after refinement (A; NaN when nothing was paired);
    ``n_unpaired``: CPs without a partner; ``cpu_s``: CPU seconds of this call; ``report``: the atom
    checks of ``validity.check_structure`` on the MOF (None without a MOF, or with ``candidates=1``)."""

    mof: MOF | None
    rmsd_cp: float
    n_unpaired: int
    n_connection_points: int
    message: str
    cpu_s: float
    report: ValidityReport | None = None
    unpaired_beads: tuple[int, ...] = ()  # on a pairing failure, the beads owning the unpaired CPs

    @property
    def ok(self) -> bool:
        return self.mof is not None


# ---- input ---------------------------------------------------------------------------------------


def _read_sample(lattice, bb_ids: Sequence[str], frac_coords, cart_coords, library: BuildingBlockLibrary) -> Beads:
    lat = np.asarray(lattice, dtype=float)
    if lat.shape != (3, 3) or not np.all(np.isfinite(lat)) or abs(np.linalg.det(lat)) < 1e-6:
        raise CGAssemblyError(f"lattice must be a non-degenerate 3 x 3 matrix of finite numbers, got {lat.tolist()}")
    if (frac_coords is None) == (cart_coords is None):
        raise CGAssemblyError("give exactly one of frac_coords and cart_coords")
    coords = np.asarray(frac_coords if frac_coords is not None else cart_coords, dtype=float)
    if isinstance(bb_ids, str) or coords.ndim != 2 or coords.shape[1] != 3 or len(coords) != len(bb_ids) \
            or len(coords) == 0:
        raise CGAssemblyError(f"expected one 3-vector per BB id: {len(bb_ids)} id(s), coordinates of shape "
                              f"{coords.shape}")
    if not np.all(np.isfinite(coords)):
        raise CGAssemblyError("bead coordinates are not all finite numbers")
    frac = coords if frac_coords is not None else coords @ np.linalg.inv(lat)
    # UnknownBuildingBlockError names a bad id; real MOFs' units in pormake's X convention (see assembly_form)
    bbs = tuple(assembly_form(library.get(str(b))) for b in bb_ids)
    vectors = [bb.connection_points - bb.centroid for bb in bbs]
    counts = np.array([len(v) for v in vectors])
    if (counts == 0).any():
        raise CGAssemblyError(f"{bbs[int(np.argmin(counts))].id} has no connection points")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    table = np.full((len(bbs), counts.max()), -1, dtype=int)
    for i, (s, n) in enumerate(zip(starts, counts)):
        table[i, :n] = np.arange(s, s + n)
    return Beads(lattice=lat, centres=(frac % 1.0) @ lat, bbs=bbs, cp_vectors=np.concatenate(vectors),
                  cp_bead=np.repeat(np.arange(len(bbs)), counts), cp_table=table,
                  arms=np.array([np.linalg.norm(v, axis=1).max() for v in vectors]),
                  chiral=np.array([chiral_cp_set(bb) for bb in bbs]),
                  is_edge=np.array([bb.kind == "edge" for bb in bbs]))


# ---- 4. atoms --------------------------------------------------------------------------------------


@dataclass
class PlacedBB:
    """The attributes of a pormake BuildingBlock that ``orient.optimise_edge_spins`` reads and moves."""

    atoms: object  # ase.Atoms, X included
    connection_point_indices: tuple[int, ...]
    bonds: np.ndarray

    @property
    def n_connection_points(self) -> int:
        return len(self.connection_point_indices)


def _build(beads: Beads, orientation: np.ndarray, t: np.ndarray,
           settings: CGAssemblySettings) -> tuple[list[PlacedBB], int]:
    """Placed BBs, linkers spun; and how many linkers turned."""
    placed = _place(beads, orientation, t)
    if not settings.spin_edges:
        return placed, 0
    spun = optimise_edge_spins(placed, beads.lattice, n_angles=settings.spin_angles, passes=settings.spin_passes)
    return placed, spun


def _place(beads: Beads, orientation: np.ndarray, t: np.ndarray) -> list[PlacedBB]:
    from ase import Atoms

    placed = []
    for bb, o, c in zip(beads.bbs, orientation, beads.centres + t):
        positions = (bb.positions - bb.centroid) @ o.T + c
        placed.append(PlacedBB(Atoms(symbols=list(bb.symbols), positions=positions),
                                bb.connection_point_indices, bb.bonds))
    return placed


def _to_mof(beads: Beads, placed: list[PlacedBB], mof_id: str, topology: str | None,
            provenance: dict) -> MOF:
    lat = beads.lattice
    inv = np.linalg.inv(lat)
    symbols, positions, atom_bead, cg_beads = [], [], [], []
    for k, (bb, pb) in enumerate(zip(beads.bbs, placed)):
        real = np.array([s != "X" for s in bb.symbols])
        pos = np.asarray(pb.atoms.positions)
        centre = pos[list(bb.connection_point_indices)].mean(axis=0)  # the bead sits at its CP centroid
        symbols += [s for s in bb.symbols if s != "X"]
        positions.append(pos[real])
        atom_bead += [k] * int(real.sum())
        cg_beads.append(Bead(bb_id=bb.id, role=bb.kind, frac_coords=(centre @ inv) % 1.0,
                             orientation=orthogonal_fit(bb.positions - bb.centroid, pos - centre)))
    structure = Structure(Lattice(lat), symbols, (np.concatenate(positions) @ inv) % 1.0)
    return MOF(id=mof_id, structure=structure, cg=CGView(lattice=lat, beads=tuple(cg_beads), topology=topology),
               atom_bead=np.array(atom_bead, dtype=int), provenance=provenance)


def default_mof_id(lattice: np.ndarray, bb_ids: Sequence[str], frac_coords: np.ndarray) -> str:
    """A stable id from the BB ids and the rounded lattice and bead positions."""
    key = json.dumps([list(map(str, bb_ids)), np.round(lattice, 2).tolist(),
                      np.round(np.asarray(frac_coords) % 1.0, 3).tolist()])
    return "cg-" + hashlib.sha1(key.encode()).hexdigest()[:12]


# ---- public API ------------------------------------------------------------------------------------


def assemble_cg(lattice, bb_ids: Sequence[str], *, frac_coords=None, cart_coords=None,
                library: BuildingBlockLibrary | None = None, seed: int | None = 0,
                settings: CGAssemblySettings = DEFAULT_SETTINGS, mof_id: str | None = None,
                topology: str | None = None, orientations: Sequence[np.ndarray | None] | None = None) -> AssemblyResult:
    """Assemble a CG sample (lattice rows in A, one bead position per BB id) into an all-atom MOF.

    Give exactly one of ``frac_coords`` / ``cart_coords`` (B x 3). ``orientations``: per bead a known
    orientation to start from (3 x 3, library frame -> placed, as ``Bead.orientation``; None where unknown),
    e.g. a decomposed MOF's own. Raises UnknownBuildingBlockError for
    an unknown BB id and CGAssemblyError for malformed input; a sample that cannot be assembled returns
    a result with ``mof=None`` and a message (see the module docstring)."""
    start = time.process_time()
    library = library if library is not None else _default_library()
    beads = _read_sample(lattice, bb_ids, frac_coords, cart_coords, library)
    n_cp = len(beads.cp_bead)
    if orientations is not None and len(orientations) != len(beads.bbs):
        raise CGAssemblyError(f"{len(orientations)} orientations for {len(beads.bbs)} beads")

    def fail(message: str, rmsd: float = float("nan"), unpaired: int = n_cp,
             at_beads: tuple[int, ...] = ()) -> AssemblyResult:
        return AssemblyResult(None, rmsd, unpaired, n_cp, message, time.process_time() - start, None, at_beads)

    if n_cp % 2:
        return fail(f"{n_cp} connection points in all: an odd number cannot be paired into bonds")
    pairs = candidate_pairs(beads, settings.neighbour_margin, settings.edge_edge_bonds)
    if len(pairs.a) == 0:
        return fail(f"all {n_cp} connection points unpaired: no two beads are close enough to bond",
                    at_beads=tuple(range(len(beads.bbs))))
    if len(pairs.a) > settings.max_candidate_pairs:
        widest = int(np.argmax(beads.arms))
        return fail(f"too many candidate bonds: {len(pairs.a)} connection-point pairs (limit "
                    f"{settings.max_candidate_pairs}); unit {beads.bbs[widest].id} reaches {beads.arms[widest]:.1f} A "
                    "from its centre, across the cell (a rod or a sheet)", at_beads=(widest,))
    fits = search(beads, pairs, settings, np.random.default_rng(seed), orientations)
    if fits[0].n_unpaired:
        return fail(f"{fits[0].n_unpaired} of {n_cp} connection points unpaired: no partner within "
                    f"{settings.pair_threshold} A after {settings.restarts} restarts and "
                    f"{settings.repair_rounds} repair rounds", unpaired=fits[0].n_unpaired,
                    at_beads=_unpaired_beads(beads, pairs, fits[0]))
    frac = beads.centres @ np.linalg.inv(beads.lattice)
    mof_id = mof_id or default_mof_id(beads.lattice, [bb.id for bb in beads.bbs], frac)
    complete = [f for f in fits if f.n_unpaired == 0][: max(1, settings.candidates)]
    first = None
    for rank, fit in enumerate(complete):
        built = _complete(beads, pairs, fit, settings, mof_id, topology)
        if isinstance(built, str):  # the CPs do not meet after refinement
            if first is None:
                first = fail(built, unpaired=0)
            continue
        mof, rmsd = built
        mof.provenance.update(seed=seed, candidate=rank)
        report = check_structure(mof.structure) if settings.candidates > 1 else None
        result = AssemblyResult(mof, rmsd, 0, n_cp, "", time.process_time() - start, report)
        if report is None or report.valid:
            return result
        if first is None or first.mof is None:
            first = result
    # Nothing valid: the best configuration, with its report (or why its CPs do not meet).
    return dataclasses.replace(first, cpu_s=time.process_time() - start)


def _complete(beads: Beads, pairs: Pairs, fit: Fit, settings: CGAssemblySettings, mof_id: str,
              topology: str | None) -> tuple[MOF, float] | str:
    """Refine, build and polish one complete pairing: the MOF and its CP RMSD, or why it cannot be built."""
    bonds = Bonds(pairs.a[fit.chosen], pairs.b[fit.chosen], pairs.shift[fit.chosen])
    orientation, t = refine(beads, fit.orientation, fit.t, bonds, settings)
    gaps = bonds.gaps(cp_positions(beads, orientation, t))
    if gaps.max() > settings.max_gap:
        return (f"connection points do not meet: after refinement the widest of {len(gaps)} pairs is "
                f"{gaps.max():.2f} A apart (> {settings.max_gap} A); the beads do not fit together")
    placed, n_spun = _build(beads, orientation, t, settings)
    n_turned = 0
    if settings.choose_node_symmetry:
        orientation, relabel, n_turned = choose_node_symmetries(beads, placed, orientation, t)
        if n_turned:  # the turned nodes' CPs moved a little: fit again, then re-spin the linkers
            bonds = bonds.relabel(relabel)
            orientation, t = refine(beads, orientation, t, bonds, settings)
            gaps = bonds.gaps(cp_positions(beads, orientation, t))
            placed, n_spun = _build(beads, orientation, t, settings)
    rmsd = _rms(gaps)
    provenance = {"builder": "cg_assembly", "rmsd_cp": round(rmsd, 4), "max_cp_gap": round(float(gaps.max()), 4),
                  "bead_shift_max": round(float(np.linalg.norm(t, axis=1).max()), 4),
                  "n_beads": len(beads.bbs), "n_mirrored": int((np.linalg.det(orientation) < 0).sum()),
                  "edges_spun": n_spun, "nodes_turned": n_turned}
    return _to_mof(beads, placed, mof_id, topology, provenance), rmsd


def _unpaired_beads(beads: Beads, pairs: Pairs, fit: Fit) -> tuple[int, ...]:
    paired = np.zeros(len(beads.cp_bead), dtype=bool)
    paired[pairs.a[fit.chosen]] = paired[pairs.b[fit.chosen]] = True
    return tuple(int(i) for i in np.unique(beads.cp_bead[~paired]))


def assemble_cg_view(cg: CGView, use_orientations: bool = False, **kwargs) -> AssemblyResult:
    """``assemble_cg`` on a CG view's lattice, bead positions and BB ids; its orientations are the search's
    starting point with ``use_orientations``, otherwise ignored."""
    kwargs.setdefault("topology", cg.topology)
    if use_orientations:
        kwargs.setdefault("orientations", [b.orientation for b in cg.beads])
    return assemble_cg(cg.lattice, cg.bb_ids, frac_coords=np.array([b.frac_coords for b in cg.beads]), **kwargs)


_LIBRARY: BuildingBlockLibrary | None = None


def _default_library() -> BuildingBlockLibrary:
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = BuildingBlockLibrary()
    return _LIBRARY


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x ** 2))) if len(x) else float("nan")
