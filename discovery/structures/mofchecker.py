"""MOFChecker's sanity checks, reimplemented on the project's periodic bond graph.

MOFChecker (K. M. Jablonka et al., github.com/kjappelbaum/mofchecker, v0.9.6; MOFChecker 2.0 and its
drop-in port mofchecker-next, github.com/henk789/mofchecker-next) is the validity test MOF generators
report. It cannot be installed here (its cone-angle dependency libconeangle has wheels for CPython
3.9/3.10 only), so each check is written again from its published definition, on this project's
building blocks. Names and sign conventions are MOFChecker's: ``has_*`` True means the problem is
present, except ``has_carbon``, ``has_hydrogen``, ``has_metal``, ``is_porous`` and
``has_3d_connected_graph``, where True is the good outcome.

Validity as MOFDiff reports it (Fu et al., ICLR 2024; github.com/microsoft/MOFDiff,
``mofdiff/common/mof_utils.py``: ``check_mof`` and ``mof_properties``, pinned ``mofchecker==0.9.6``):
every Boolean of MOFChecker's ``get_mof_descriptors()`` must have its good value, except
``has_3d_connected_graph`` (skipped there to match the paper), and ``is_porous`` is Zeo++'s
PLD >= 2.4 A. A check that could not run (None: no EQeq, no Zeo++) is not a Boolean there and is
skipped; ``mofchecker_valid`` does the same. mofchecker-next's ``mode="0.9.6"`` reproduces this set.

Deliberate differences from MOFChecker, for all checks:
- Neighbours: the project's covalent-radius rule (``bonds.bond_graph``: d < 1.25 (r_i + r_j), Cordero
  radii from ASE) instead of MOFChecker's hand-tuned VESTA pair cutoffs. A coordination number counts
  bonds to distinct periodic images separately, as MOFChecker's ``len(get_connected_sites)`` does.
- The cell is checked as given: MOFChecker first symmetrises (symprec 0.5 A) and reduces to the
  primitive cell, which can move atoms by up to 0.5 A.
- Angles use the bonded periodic-image vectors (MOFChecker 2.0 rebuilds them from minimum-image
  distances, which is wrong for a bond across a short cell edge).
- ``is_porous`` is Zeo++'s answer where the caller ran it (``porous``); otherwise a grid stand-in.
Per-check definitions and their sources are in the docstrings below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from ase.data import atomic_numbers, vdw_radii
from pymatgen.core import Element, Structure
from scipy import ndimage

from discovery.structures.bonds import PeriodicGraph, bond_graph
from discovery.structures.elements import covalent_radius, is_metal

MOFCHECKER_CHECKS = (
    "has_carbon", "has_hydrogen", "has_metal", "has_atomic_overlaps",
    "has_overcoordinated_c", "has_overcoordinated_n", "has_overcoordinated_h",
    "has_undercoordinated_c", "has_undercoordinated_n", "has_undercoordinated_rare_earth",
    "has_undercoordinated_alkali_alkaline", "has_lone_molecule", "has_suspicious_terminal_oxo",
    "has_geometrically_exposed_metal", "has_high_charges", "is_porous", "has_3d_connected_graph",
)
# MOFDiff's set: every check above but the 3D-connectivity one (see the module docstring). MOFChecker
# 0.9.6 spells the oxo check ``has_suspicicious_terminal_oxo``; 2.0 and mofchecker-next fixed the typo.
MOFDIFF_VALIDITY = tuple(c for c in MOFCHECKER_CHECKS if c != "has_3d_connected_graph")
GOOD_WHEN_TRUE = frozenset({"has_carbon", "has_hydrogen", "has_metal", "is_porous", "has_3d_connected_graph"})

HIGH_CHARGE_E = 3.0  # 0.9.6's EQeq threshold, the one MOFDiff used (2.0 and mofchecker-next use 4.0)
H_CONTACT_A = 1.1  # MOFChecker: an H with more than one atom within H's van der Waals radius
MAX_CN = 4  # over-coordinated C and N: more than 4 neighbours
MIN_METAL_CN = 4  # under-coordinated rare-earth and alkali/alkaline-earth metals: fewer than 4
NITRILE_CN_A, TRIPLE_BOND_A = 1.2, 1.25  # 2.0: a C (or N) with one short bond to N (or C/N) is sp
LINEAR_C_DEG, LINEAR_C_METAL_DEG = 165.0, 150.0  # 2.0: a two-coordinate C must be near linear
EXPOSED_OPEN_ANGLE_DEG, EXPOSED_MAX_CN = 150.0, 6  # 2.0: open angle = 360 - cone angle
MIN_PLD_A = 2.4  # MOFChecker's and MOFDiff's porosity criterion (CoRE MOF: PLD >= 2.4 A)
PORE_GRID_A = 0.4

RARE_EARTH = frozenset(e.symbol for e in Element if e.is_rare_earth)  # 2.0: lanthanoids, actinoids, Sc, Y
ALKALI_ALKALINE = frozenset(e.symbol for e in Element if e.is_alkali or e.is_alkaline)
# MOFChecker's metals that should carry no terminal oxo (Andrew Rosen's list, MOFChecker issue 122).
NO_TERMINAL_OXO = frozenset({"Li", "Na", "K", "Rb", "Cs", "Fr", "Be", "Mg", "Ca", "Sr", "Ba", "Ra", "Sc", "Y",
                             "La", "Ac", "Ti", "Zr", "Hf", "Mn", "Fe", "Co", "Ni", "Cu", "Ag", "Zn", "Cd",
                             "Al", "Ga", "In", "Tl"})


@dataclass(frozen=True)
class _Bonds:
    """The bond graph indexed per atom, with each bond's vector to the bonded periodic image."""

    symbols: list[str]
    graph: PeriodicGraph
    degree: np.ndarray
    starts: np.ndarray
    order: np.ndarray
    vectors: np.ndarray

    def edges(self, i: int) -> np.ndarray:
        return self.order[self.starts[i]:self.starts[i + 1]]

    def neighbours(self, i: int) -> list[str]:
        return [self.symbols[j] for j in self.graph.dst[self.edges(i)]]

    def atoms(self, elements) -> list[int]:
        return [i for i, s in enumerate(self.symbols) if s in elements]


def _bonds(structure: Structure, graph: PeriodicGraph) -> _Bonds:
    order = np.argsort(graph.src, kind="stable")
    starts = np.searchsorted(graph.src[order], np.arange(graph.n_atoms + 1))
    cart = structure.cart_coords
    vectors = cart[graph.dst] + graph.image @ structure.lattice.matrix - cart[graph.src]
    return _Bonds([s.specie.symbol for s in structure], graph, graph.degree(), starts, order, vectors)


def _short_contacts(structure: Structure, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs closer than ``cutoff``, coincident distinct atoms included (for contacts beyond the bond rule)."""
    src, dst, image, dist = structure.get_neighbor_list(cutoff, exclude_self=False)
    distinct = (src != dst) | np.any(image != 0, axis=1)
    return src[distinct], dst[distinct], dist[distinct]


def has_atomic_overlaps(graph: PeriodicGraph, symbols: list[str]) -> bool:
    """MOFChecker: a pair closer than the smaller of the two covalent radii (min(r_i, r_j), molSimplify's
    rule). Radii: Cordero via ASE (MOFChecker's table is Cordero too, but with Zr at 1.50 A, not 1.75). Every
    such pair is in the bond graph (its limit, 1.25 (r_i + r_j), is longer), atoms at one place included."""
    radii = np.array([covalent_radius(s) for s in symbols])
    return bool(np.any(graph.distance < np.minimum(radii[graph.src], radii[graph.dst])))


def has_overcoordinated_h(structure: Structure, symbols: list[str]) -> bool:
    """MOFChecker: an H with more than one atom within 1.1 A (H's van der Waals radius), metals included."""
    src, _, _ = _short_contacts(structure, H_CONTACT_A)
    h = np.array([s == "H" for s in symbols])
    return bool(np.any(np.bincount(src[h[src]], minlength=len(symbols)) > 1))


def has_overcoordinated(b: _Bonds, element: str, excused: frozenset[str] = frozenset()) -> bool:
    """MOFChecker 2.0: a C or N with more than 4 neighbours, unless one is a metal (C: or a B, 2.0's
    boron exemption; 0.9.6 has none), since metal contacts are not valences."""
    for i in b.atoms({element}):
        if b.degree[i] > MAX_CN and not any(is_metal(s) or s in excused for s in b.neighbours(i)):
            return True
    return False


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    cos = float(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def has_undercoordinated_c(b: _Bonds) -> bool:
    """MOFChecker 2.0: a one-coordinate C (unless bonded to N within 1.2 A: cyanide, nitrile), or a
    two-coordinate C bent below 165 deg (150 with a metal neighbour): both likely miss an H. 0.9.6 flags
    every one-coordinate C and bends beyond 10 deg from linear; neither looks at three-coordinate C."""
    for i in b.atoms({"C"}):
        e = b.edges(i)
        if len(e) == 1:
            if not (b.symbols[b.graph.dst[e[0]]] == "N" and b.graph.distance[e[0]] <= NITRILE_CN_A):
                return True
        elif len(e) == 2:
            limit = LINEAR_C_METAL_DEG if any(is_metal(s) for s in b.neighbours(i)) else LINEAR_C_DEG
            if _angle(b.vectors[e[0]], b.vectors[e[1]]) < limit:
                return True
    return False


def has_undercoordinated_n(b: _Bonds) -> bool:
    """MOFChecker 2.0: an N with exactly one non-metal neighbour, unless that is a C or N within 1.25 A
    (nitrile, isothiocyanate, azide). 0.9.6's dihedral and NH2-on-metal heuristics for two- and
    three-coordinate N are not reproduced."""
    for i in b.atoms({"N"}):
        bonds = [e for e in b.edges(i) if not is_metal(b.symbols[b.graph.dst[e]])]
        if len(bonds) != 1:
            continue
        partner, d = b.symbols[b.graph.dst[bonds[0]]], b.graph.distance[bonds[0]]
        if not (partner in ("C", "N") and d < TRIPLE_BOND_A):
            return True
    return False


def has_undercoordinated_metal(b: _Bonds, elements: frozenset[str]) -> bool:
    """MOFChecker: a rare-earth (2.0's set, with Sc and Y) or alkali/alkaline-earth metal with fewer than
    4 neighbours."""
    return any(b.degree[i] < MIN_METAL_CN for i in b.atoms(elements))


def has_suspicious_terminal_oxo(b: _Bonds) -> bool:
    """MOFChecker: an O bonded to nothing but one metal of NO_TERMINAL_OXO (likely a water or hydroxide
    that lost its H)."""
    for i in b.atoms(NO_TERMINAL_OXO):
        for j in b.graph.dst[b.edges(i)]:
            if b.symbols[j] == "O" and b.degree[j] == 1:
                return True
    return False


@lru_cache(maxsize=4)
def _directions(n: int) -> np.ndarray:
    """Near-uniform unit vectors (Fibonacci sphere)."""
    k = np.arange(n) + 0.5
    z, phi = 1 - 2 * k / n, math.pi * (1 + 5 ** 0.5) * k
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _clearance(axes: np.ndarray, units: np.ndarray, half_width: np.ndarray) -> np.ndarray:
    """Per axis: the smallest angle (rad) between it and any ligand's sphere."""
    return (np.arccos(np.clip(axes @ units.T, -1.0, 1.0)) - half_width).min(axis=1)


def open_angle(vectors: np.ndarray, radii: np.ndarray) -> float:
    """360 deg minus the cone angle: the apex angle of the widest cone from the metal that no ligand's van
    der Waals sphere enters (Tolman-style cone; MOFChecker computes it with libconeangle): max over axes v
    of min over ligands of (angle(v, ligand) - its half-width). A 1000-direction scan (~6 deg apart),
    then a pattern search around the best axis, shrinking 3x a round, to ~0.1 deg."""
    if len(vectors) == 0:
        return 360.0
    d = np.linalg.norm(vectors, axis=1)
    units, half_width = vectors / d[:, None], np.arcsin(np.minimum(1.0, radii / d))
    axes = _directions(1000)
    best = axes[np.argmax(_clearance(axes, units, half_width))]
    for step in 0.12 / 3.0 ** np.arange(6):
        trial = np.vstack([best, best + step * _directions(24)])
        trial /= np.linalg.norm(trial, axis=1)[:, None]
        best = trial[np.argmax(_clearance(trial, units, half_width))]
    clearance = _clearance(best[None], units, half_width)[0]
    return float(max(0.0, 2 * math.degrees(clearance)))


def vdw_radius(symbol: str) -> float:
    """Bondi's van der Waals radius (ASE's table), 2.0 A where Bondi has none: the CCDC convention that
    Zeo++'s default radii follow (most transition metals get 2.0 A)."""
    radius = vdw_radii[atomic_numbers[symbol]]
    return float(radius) if np.isfinite(radius) else 2.0


def has_geometrically_exposed_metal(b: _Bonds) -> bool:
    """MOFChecker 2.0 (``tight``, its default: every metal): a metal with fewer than 6 neighbours whose
    open angle exceeds 150 deg, i.e. ligands all crowd one side. Ligand radii: ``vdw_radius`` (MOFChecker:
    element_coder's van der Waals radii; the same for C, N, O and halogens). MOFChecker's fallback of
    180 deg when libconeangle fails on coplanar ligands is not copied: the angle is computed for any
    arrangement."""
    for i in range(len(b.symbols)):
        if is_metal(b.symbols[i]) and b.degree[i] < EXPOSED_MAX_CN:
            e = b.edges(i)
            radii = np.array([vdw_radius(s) for s in b.neighbours(i)])
            if open_angle(b.vectors[e], radii) > EXPOSED_OPEN_ANGLE_DEG:
                return True
    return False


def has_high_charges(charges: np.ndarray | None, n_atoms: int, name: str = "structure") -> bool | None:
    """MOFChecker: any |q| > 3 e (EQeq charges, computed by MOFChecker itself; here the caller's)."""
    if charges is None:
        return None
    q = np.asarray(charges, dtype=float)
    if q.shape != (n_atoms,):
        raise ValueError(f"{name}: {q.shape[0] if q.ndim else 0} charges for {n_atoms} atoms")
    return bool(np.any(np.abs(q) > HIGH_CHARGE_E))


def _blocked_grid(structure: Structure, radii: np.ndarray, n: np.ndarray, max_entries: int = 2_000_000) -> np.ndarray:
    """Grid points (fractional i/n) within ``radii`` of an atom centre, marked per atom on a local stencil (a
    box of grid offsets around each atom); atoms go in chunks of at most ``max_entries`` atom-offset pairs."""
    lattice = structure.lattice.matrix
    planes = 1.0 / np.linalg.norm(structure.lattice.reciprocal_lattice_crystallographic.matrix, axis=1)
    frac = structure.frac_coords % 1.0
    blocked = np.zeros(n, dtype=bool)
    atoms = np.argsort(radii)
    reach = np.ceil(radii.max() * n / planes).astype(int) + 1
    offsets = np.stack(np.meshgrid(*(np.arange(-k, k + 1) for k in reach), indexing="ij"), -1).reshape(-1, 3)
    chunk = max(1, max_entries // len(offsets))
    for start in range(0, len(atoms), chunk):
        a = atoms[start:start + chunk]
        idx = np.floor(frac[a] * n).astype(int)[:, None, :] + offsets[None]
        cart = (idx / n - frac[a][:, None, :]) @ lattice
        inside = np.einsum("akx,akx->ak", cart, cart) < radii[a, None] ** 2
        hit = idx[inside] % n
        blocked[hit[:, 0], hit[:, 1], hit[:, 2]] = True
    return blocked


def is_porous(structure: Structure, min_pld: float = MIN_PLD_A, spacing: float = PORE_GRID_A) -> bool:
    """Cheap stand-in for MOFChecker's Zeo++ test (pore-limiting diameter >= 2.4 A): can a sphere of that
    diameter travel through the cell? Grid points (``spacing`` apart) farther than r_vdW + d / 2 from every
    atom are free; free points are grouped into face-connected regions (scipy), and the project's
    periodic-graph rank (``PeriodicGraph.components``), run on the regions joined across cell faces, says
    whether one is periodic: a channel. A grid path needs a channel about one step wider than the
    sphere, so the sphere is taken spacing / 2 narrower: d = min_pld - spacing / 2. Measured against
    Zeo++ (the project's ``compute_geometry``, CCDC radii) on 197 CoRE 2019 CIFs: 192 agree; the 5 others
    have PLD 2.40-2.59 A and read non-porous here; none reads porous wrongly."""
    # An oblique cell needs a stencil box far larger than the sphere it holds (a generated MOF's cell took 8 GB
    # and more); the Niggli-reduced cell, the same crystal, keeps it near the sphere's size.
    structure = structure.get_reduced_structure()
    n = np.maximum(2, np.ceil(np.array(structure.lattice.abc) / spacing)).astype(int)
    radii = np.array([vdw_radius(s.specie.symbol) for s in structure]) + (min_pld - spacing / 2) / 2
    labels, count = ndimage.label(~_blocked_grid(structure, radii, n))
    return _has_channel(labels, count)


def _has_channel(labels: np.ndarray, count: int) -> bool:
    """Whether a labelled free region, continued through the periodic cell faces, is infinite."""
    src, dst, image = [], [], []
    for axis in range(3):
        # Region a in the last layer touches region b in the first layer of the next cell along ``axis``.
        last, first = np.take(labels, -1, axis=axis).ravel(), np.take(labels, 0, axis=axis).ravel()
        pairs = np.unique(np.stack([last, first], 1)[(last > 0) & (first > 0)], axis=0) - 1
        shift = np.tile(np.eye(3, dtype=np.int64)[axis], (len(pairs), 1))
        src += [pairs[:, 0], pairs[:, 1]]
        dst += [pairs[:, 1], pairs[:, 0]]
        image += [shift, -shift]
    src_a, dst_a = np.concatenate(src).astype(np.int64), np.concatenate(dst).astype(np.int64)
    if count == 0 or len(src_a) == 0:
        return False
    zeros = np.zeros(len(src_a))
    regions = PeriodicGraph(count, src_a, dst_a, np.concatenate(image), zeros, zeros)
    return any(dim > 0 for _, dim in regions.components())


def mofchecker_report(structure: Structure, charges: np.ndarray | None = None, name: str = "structure",
                      porous: bool | None = None) -> dict[str, bool | None]:
    """Every check of MOFCHECKER_CHECKS, in that order (None: not run, i.e. has_high_charges without
    charges). ``porous``: Zeo++'s answer to PLD >= 2.4 A where the caller has it (MOFChecker's own test,
    ``porous_from``); otherwise the grid stand-in ``is_porous`` runs."""
    symbols = [site.specie.symbol for site in structure]
    graph = bond_graph(structure)
    b = _bonds(structure, graph)
    dims = [dim for _, dim in graph.components()]
    present = set(symbols)
    report = {
        "has_carbon": "C" in present,
        "has_hydrogen": "H" in present,
        "has_metal": any(is_metal(s) for s in present),
        "has_atomic_overlaps": has_atomic_overlaps(graph, symbols),
        "has_overcoordinated_c": has_overcoordinated(b, "C", frozenset({"B"})),
        "has_overcoordinated_n": has_overcoordinated(b, "N"),
        "has_overcoordinated_h": has_overcoordinated_h(structure, symbols),
        "has_undercoordinated_c": has_undercoordinated_c(b),
        "has_undercoordinated_n": has_undercoordinated_n(b),
        "has_undercoordinated_rare_earth": has_undercoordinated_metal(b, RARE_EARTH),
        "has_undercoordinated_alkali_alkaline": has_undercoordinated_metal(b, ALKALI_ALKALINE),
        # 0.9.6 (MOFDiff): any finite component, lone atoms included (2.0 splits off has_stray_atom).
        "has_lone_molecule": 0 in dims,
        "has_suspicious_terminal_oxo": has_suspicious_terminal_oxo(b),
        "has_geometrically_exposed_metal": has_geometrically_exposed_metal(b),
        "has_high_charges": has_high_charges(charges, len(structure), name),
        "is_porous": is_porous(structure) if porous is None else bool(porous),
        # Larsen dimensionality as MOFChecker reads it: the highest of any component.
        "has_3d_connected_graph": max(dims, default=0) == 3,
    }
    return {check: report[check] for check in MOFCHECKER_CHECKS}


def porous_from(report) -> bool | None:
    """MOFChecker's is_porous from a project ValidityReport whose pore checks ran (Zeo++: PLD >= 2.4 A, the
    same threshold); None when Zeo++ did not run."""
    return next((c.passed for c in report.checks if c.name == "pore_limiting_diameter"), None)


def mofchecker_failures(report: dict[str, bool | None], checks: tuple[str, ...] = MOFDIFF_VALIDITY) -> list[str]:
    """The checks of ``checks`` not at their good value (a check missing from ``report`` fails; None is
    skipped, as MOFDiff skips a descriptor that is not a Boolean)."""
    return [c for c in checks if c not in report
            or (report[c] is not None and bool(report[c]) != (c in GOOD_WHEN_TRUE))]


def mofchecker_valid(report: dict[str, bool | None], checks: tuple[str, ...] = MOFDIFF_VALIDITY) -> bool:
    """Valid the way MOFDiff counts it: every check in ``checks`` at its good value."""
    return not mofchecker_failures(report, checks)


def agreement(rows: list[tuple[bool, bool]]) -> dict[str, int | float]:
    """Counts of (project valid, MOFChecker valid) pairs and the fraction on which the two agree."""
    pairs = [(bool(p), bool(m)) for p, m in rows]
    both = sum(p and m for p, m in pairs)
    neither = sum(not p and not m for p, m in pairs)
    return {"n": len(pairs), "both_valid": both, "neither_valid": neither,
            "only_project_valid": sum(p and not m for p, m in pairs),
            "only_mofchecker_valid": sum(m and not p for p, m in pairs),
            "agreement": (both + neither) / len(pairs) if pairs else float("nan")}


def mofchecker_summary(rows: list[dict]) -> dict | None:
    """Over dataset log rows (``status`` and a ``mofchecker`` report): MOFChecker's valid count and fraction,
    each check's pass rate, and the agreement with the project's verdict (``status == "valid"``)."""
    checked = [r for r in rows if r.get("mofchecker")]
    if not checked:
        return None
    valid = [mofchecker_valid(r["mofchecker"]) for r in checked]
    passed = {c: [r["mofchecker"][c] == (c in GOOD_WHEN_TRUE) for r in checked if r["mofchecker"].get(c) is not None]
              for c in MOFDIFF_VALIDITY}
    return {"n": len(checked), "valid": sum(valid), "valid_fraction": round(sum(valid) / len(checked), 3),
            "pass_rate": {c: round(sum(v) / len(v), 3) for c, v in passed.items() if v},
            "agreement_with_project": agreement([(r["status"] == "valid", v) for r, v in zip(checked, valid)])}
