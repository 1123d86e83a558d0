import numpy as np

from discovery.structures.descriptors import PROBE_KEYS, grid_energies, probe_descriptors


def test_probe_descriptors_of_irmof1(irmof1):
    d = probe_descriptors(irmof1.structure).to_dict()
    assert set(PROBE_KEYS) <= set(d)
    assert -6.5 < d["log10_kh_probe"] < -4.0  # IRMOF-1's Widom K_H(CO2) without charges is ~1e-5 mol/kg/Pa
    fractions = [d[k] for k in PROBE_KEYS[2:]]
    assert fractions == sorted(fractions) and 0 < fractions[-1] < 1  # cumulative, some strong sites
    assert d["min_energy_K"] < -1000


def test_probe_descriptors_are_intensive(irmof1):
    # a supercell is the same material: same K_H, same energy distribution (the grid is as fine)
    one = probe_descriptors(irmof1.structure, max_points=10**6)
    two = probe_descriptors(irmof1.structure * (2, 1, 1), max_points=10**6)
    assert abs(one.log10_kh_probe - two.log10_kh_probe) < 0.05
    assert np.allclose(one.fractions_below, two.fractions_below, atol=0.01)


def test_energies_are_repulsive_on_atoms(irmof1):
    u = grid_energies(irmof1.structure, spacing=1.5)
    assert u.max() > 1e4 and u.min() < 0
