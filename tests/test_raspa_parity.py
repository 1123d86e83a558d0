"""RASPA3's own energy function (``raspa.MoleculeEnergies``) against the project's direct sums, and the grid
check run against it: the reference that separates the two engines' energies from their sampling."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from discovery.oracle.adsorption.exact import DirectSums, direct_energies, grid_check
from discovery.oracle.adsorption.forcefield import CO2, N2
from discovery.oracle.adsorption.grid import Framework, GridSettings, energy_grids
from discovery.oracle.adsorption.raspa import MoleculeEnergies
from discovery.oracle.box import build_box
from discovery.structures.mof import MOF


@pytest.fixture(scope="module")
def charged_box():
    """A small charged triclinic framework (narrower than twice the cutoff: the box is a supercell)."""
    lattice = Lattice([[9.0, 0.0, 0.0], [2.5, 10.0, 0.0], [1.5, -2.0, 11.0]])
    frac = [[0.1, 0.2, 0.3], [0.55, 0.5, 0.45], [0.8, 0.15, 0.7], [0.3, 0.8, 0.9]]
    charges = np.array([1.2, -0.7, 0.4, -0.9])
    mof = MOF("triclinic", Structure(lattice, ["Zn", "O", "C", "O"], frac), charges=charges)
    return build_box(mof, charges, 12.8, ())


def _configurations(fw: Framework, guest, n: int, seed: int) -> np.ndarray:
    """n random placements of the rigid guest outside the atoms (site positions, Cartesian)."""
    rng = np.random.default_rng(seed)
    sums, out = DirectSums(fw), []
    while len(out) < n:
        centre = rng.random(3) @ fw.lattice
        axis = rng.normal(size=3)
        sites = centre + np.array([s.z for s in guest.sites])[:, None] * axis / np.linalg.norm(axis)
        lj = sum(sums.lj(s, sites[k:k + 1])[0] for k, s in enumerate(guest.sites) if s.lj is not None)
        if lj < 0:
            out.append(sites)
    return np.array(out)


@pytest.mark.parametrize("guest", [CO2, N2], ids=["CO2", "N2"])
def test_raspa_energies_equal_direct_sums_in_a_charged_triclinic_box(charged_box, guest):
    fw = Framework.from_box(charged_box)
    sites = _configurations(fw, guest, 8, seed=3)
    raspa = MoleculeEnergies(charged_box, guest)(sites)
    direct = direct_energies(DirectSums(fw), guest)(sites)
    # Lennard-Jones is the same sum; Ewald differs only by each code's precision (1e-6 / 1e-7)
    assert np.all(np.abs(raspa - direct) <= 0.5 + 1e-3 * np.abs(direct)), (raspa, direct)
    assert np.ptp(direct) > 50.0  # the placements differ: the comparison is not of one number
    uncharged = MoleculeEnergies(build_box(MOF("u", charged_box.structure.copy()), np.zeros(len(charged_box.structure)),
                                           12.8, ()), guest)(sites)
    assert np.all(np.abs(uncharged - raspa) > 1.0)  # the charges are in RASPA3's energies


def test_grid_check_against_raspa_energies(charged_box):
    fw = Framework.from_box(charged_box)
    grids = energy_grids(fw, CO2.sites, GridSettings(spacing_A=0.1))
    found = grid_check(grids, CO2, insertions=20_000, picks=200, overlaps=50,
                       energies=MoleculeEnergies(charged_box, CO2), reference="raspa3")
    assert found.reference == "raspa3" and found.summed <= 250
    assert abs(found.ratio - 1.0) < 0.02 and found.ratio_ci95 < 0.02


def test_against_needs_the_grid_check(capsys):
    from agents.cli.main import main

    assert main(["benchmark", "oracle", "--against", "raspa", "--compare-engines", "--cifs", "x"]) == 2
    assert "--against chooses the reference of --grid-check" in capsys.readouterr().err


def test_grid_check_reports_a_structure_the_oracle_refuses_and_goes_on():
    from discovery.oracle.engine_benchmark import check_grids

    lattice = Lattice([[9.0, 0.0, 0.0], [2.5, 10.0, 0.0], [1.5, -2.0, 11.0]])
    species, frac = ["Zn", "O", "C", "O"], [[0.1, 0.2, 0.3], [0.55, 0.5, 0.45], [0.8, 0.15, 0.7], [0.3, 0.8, 0.9]]
    good = MOF("good", Structure(lattice, species, frac))
    bad = MOF("bad", Structure(lattice, species, [*frac[:3], [0.805, 0.15, 0.7]]))  # two atoms 0.05 A apart
    out = check_grids({"good": good, "bad": bad}, [("none", "none")], insertions=5_000, progress=False)
    assert [(r["structure"], r["guest"]) for r in out["rows"]] == [("good", "CO2"), ("good", "N2")]
    assert [f["structure"] for f in out["failed"]] == ["bad"] and "overlap" in out["failed"][0]["error"]
