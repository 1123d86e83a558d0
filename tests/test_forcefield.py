import pytest

from discovery.oracle.adsorption.forcefield import CO2, N2, ForceFieldError, framework_lj, uff

# sigma (A), epsilon/k (K) as tabulated for the field's screening protocol
REFERENCE_UFF = {"H": (2.57113, 22.1417), "C": (3.43085, 52.8381), "N": (3.26069, 34.7222),
                 "O": (3.11815, 30.1932), "F": (2.99698, 25.1610), "S": (3.59478, 137.882),
                 "Cl": (3.51638, 114.231), "Mg": (2.69141, 55.8574), "Al": (4.00815, 254.126),
                 "Cr": (2.69319, 7.5483), "Mn": (2.63795, 6.5419), "Fe": (2.59430, 6.5419),
                 "Co": (2.55866, 7.0451), "Ni": (2.52481, 7.5483), "Cu": (3.11369, 2.5161),
                 "Zn": (2.46155, 62.3992), "Zr": (2.78317, 34.7222), "V": (2.80099, 8.0515)}


@pytest.mark.parametrize("element", sorted(REFERENCE_UFF))
def test_uff_matches_reference_values(element):
    sigma, epsilon = REFERENCE_UFF[element]
    lj = framework_lj(element)
    assert lj.sigma == pytest.approx(sigma, rel=1e-4)
    assert lj.epsilon == pytest.approx(epsilon, rel=1e-3)


def test_uff_covers_the_periodic_table():
    assert len(uff()) > 90


def test_unknown_element_is_named():
    with pytest.raises(ForceFieldError, match="Xx"):
        framework_lj("Xx")


def test_trappe_guests_are_neutral_and_linear():
    for guest in (CO2, N2):
        assert sum(s.charge for s in guest.sites) == pytest.approx(0.0, abs=1e-12)
        assert sum(s.z for s in guest.sites) == pytest.approx(0.0)
    assert [s.z for s in CO2.sites] == [-1.16, 0.0, 1.16]
