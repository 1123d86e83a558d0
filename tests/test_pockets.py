from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from discovery.oracle.geometry import pockets
from discovery.errors import DiscoveryError, GeometryError
from discovery.oracle.adsorption.forcefield import CO2
from discovery.structures.mof import MOF
from discovery.oracle.geometry.pockets import Pocket, PocketError, inaccessible_pockets, raspa_blocking

pytestmark = pytest.mark.filterwarnings("ignore:OpenCL library not found:RuntimeWarning")

STRUCTURES = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "structures"


def reference(name: str) -> MOF:
    path = STRUCTURES / f"{name}.cif"
    if not path.is_file():
        pytest.skip(f"reference structure {name} not present (expected in ../shared/reference/structures)")
    return MOF.from_cif(path)


def channel_and_pocket() -> Structure:
    """10 x 10 x 20 A, carbon grids (2.5 A, too tight for CO2) at z = 0 and z = 10: the lower slab is a 2D
    channel; the upper slab also has walls at x = 0 and y = 0, so it is a closed 10 A box (a pocket)."""
    g = np.arange(0.0, 10.0, 2.5)
    cart = [(x, y, z) for z in (0.0, 10.0) for x in g for y in g]
    cart += [(0.0, y, z) for z in (12.5, 15.0, 17.5) for y in g]
    cart += [(x, 0.0, z) for z in (12.5, 15.0, 17.5) for x in g[1:]]
    return Structure(Lattice.orthorhombic(10, 10, 20), ["C"] * len(cart), cart, coords_are_cartesian=True)


def rosenbluth_weight(mof: MOF, blocking: list, cycles: int, seed: int) -> float:
    """CO2 Widom <W> (proportional to K_H) in the unit cell itself (replicated by raspalib), no charges;
    ``blocking`` as raspa_blocking gives it, passed to raspalib unchanged."""
    from discovery.oracle.adsorption import raspa

    rl = raspa._raspalib()
    elements = sorted({site.specie.symbol for site in mof.structure})
    ff, types = raspa._force_field(rl, elements, [CO2], raspa.CUTOFF_A)
    lat = mof.structure.lattice
    box = rl.SimulationBox(*lat.abc, *np.radians(lat.angles))
    atoms = [rl.Atom(list(map(float, s.frac_coords)), 0.0, 1.0, 0, elements.index(s.specie.symbol), 0, 0, 0)
             for s in mof.structure]
    framework = rl.Framework(ff, mof.id, box, 1, atoms, list(raspa.replication(lat)))
    component = rl.Component(ff, CO2.name, CO2.critical_temperature, CO2.critical_pressure, CO2.acentric_factor,
                             raspa._guest_atoms(rl, CO2, types),
                             particle_probabilities=rl.MCMoveProbabilities(widom_probability=1.0),
                             blocking_pockets=blocking)
    assert [tuple(p) for p in component.blocking_pockets] == [tuple(p) for p in blocking]
    system = rl.System(ff, None, False, 298.0, None, 0.0, framework, [component], [], [0], 5)
    mc = rl.MonteCarlo(cycles, 0, 0, 10 * cycles + 1, 10 * cycles + 1, 1000, 100, [system], seed, 5, False)
    mc.run()
    return mc.systems[0].components[0].average_rosenbluth_weights.result()[0]


def test_oracle_box_blocks_every_image_of_a_pocket():
    """The oracle simulates a supercell as raspalib's unit cell: each pocket must appear once per copy,
    in box fractions, and block as much as the unit-cell sphere does in raspalib's own replicas."""
    from discovery.oracle.adsorption import raspa

    mof = MOF(id="one_carbon", structure=Structure(Lattice.cubic(10.0), ["C"], [[0, 0, 0]]))
    box = raspa.simulation_box(mof, "none", pockets=[((0.5, 0.5, 0.5), 4.0)])
    assert box.copies == 22 and len(box.blocking) == 22  # smallest valid box: 22 unit cells, not 27
    unit = rosenbluth_weight(mof, raspa_blocking([Pocket((0.5, 0.5, 0.5), 4.0)]), cycles=300, seed=1)
    open_ = rosenbluth_weight(mof, [], cycles=300, seed=1)
    blocked = raspa.widom_henry(mof, charges="none", cycles=300, seed=1, box=box).rosenbluth_weight
    assert blocked / raspa.widom_henry(mof, charges="none", cycles=300, seed=1).rosenbluth_weight == pytest.approx(
        unit / open_, abs=0.03)


def test_open_frameworks_have_no_pockets(irmof1):
    assert inaccessible_pockets(irmof1.structure, name=irmof1.id) == []
    assert inaccessible_pockets(reference("IRMOF-1_DDEC").structure) == []


def test_zif8_cages_become_pockets_for_a_probe_wider_than_its_windows():
    zif8 = reference("ZIF-8_DDEC")  # sodalite cages at (0, 0, 0) and (1/2, 1/2, 1/2), 3.4 A windows
    assert inaccessible_pockets(zif8.structure, samples=5000) == []  # CO2 (1.65 A) passes the windows
    wide = inaccessible_pockets(zif8.structure, probe_radius=1.9, samples=5000, name=zif8.id)
    assert wide == inaccessible_pockets(zif8.structure, probe_radius=1.9, samples=5000)  # reproducible
    assert len(wide) == 2
    lattice = zif8.structure.lattice
    centres = np.array([p.centre_frac for p in wide])
    d = lattice.get_all_distances([[0, 0, 0], [0.5, 0.5, 0.5]], centres)
    radii = np.array([p.radius_A for p in wide])
    assert (d < radii).any(axis=1).all()  # each cage centre lies inside a blocking sphere
    assert all(isinstance(p, Pocket) and 0.0 <= min(p.centre_frac) and max(p.centre_frac) <= 1.0 for p in wide)


def test_pocket_is_blocked_and_channel_is_not():
    st = channel_and_pocket()
    found = inaccessible_pockets(st, name="slabs")
    assert found
    for p in found:
        z = p.centre_frac[2] * 20.0
        assert 10.0 < z < 20.0  # in the closed upper slab
        # CO2 centres in the channel lie at 3.35 A < z < 6.65 A (+ 20 A in the next cell): never inside
        assert z - p.radius_A > 6.65 and z + p.radius_A < 23.35
    d = st.lattice.get_all_distances([[0.5, 0.5, 0.75]], [p.centre_frac for p in found])[0]
    assert (d < [p.radius_A for p in found]).any()  # the middle of the closed box is covered


def test_raspa_blocking_format():
    assert raspa_blocking([]) == []
    out = raspa_blocking([Pocket((0.25, 0.5, np.float64(0.75)), 3)])
    assert out == [(0.25, 0.5, 0.75, 3.0)] and all(type(x) is float for x in out[0])


def test_raspalib_blocks_fractional_unit_cell_spheres_in_every_replica():
    """One UFF carbon in a 10 A cell (3 x 3 x 3 replicas). The expected ratios are direct numpy averages of
    exp(-U/kT) over 400k random CO2 poses, rejecting poses with any atom inside the sphere; each sphere
    in every unit cell, centre a fraction of the unit cell. Other readings would give: C atom only 0.708,
    one sphere per 30 A box ~0.98, centre as a fraction of the box 0.573 for the second sphere."""
    mof = MOF(id="one_carbon", structure=Structure(Lattice.cubic(10.0), ["C"], [[0, 0, 0]]))
    w0 = rosenbluth_weight(mof, [], cycles=500, seed=1)
    centred = rosenbluth_weight(mof, raspa_blocking([Pocket((0.5, 0.5, 0.5), 4.0)]), cycles=500, seed=1)
    off = rosenbluth_weight(mof, raspa_blocking([Pocket((1 / 6, 1 / 6, 1 / 6), 4.0)]), cycles=500, seed=1)
    assert centred / w0 == pytest.approx(0.573, abs=0.02)
    assert off / w0 == pytest.approx(0.667, abs=0.02)


def test_blocking_the_zeo_pocket_lowers_the_henry_coefficient():
    mof = MOF(id="slabs", structure=channel_and_pocket())
    blocking = raspa_blocking(inaccessible_pockets(mof.structure, name=mof.id))
    open_ = rosenbluth_weight(mof, [], cycles=100, seed=3)
    blocked = rosenbluth_weight(mof, blocking, cycles=100, seed=3)
    assert 0.0 < blocked < 0.5 * open_  # the closed carbon box is where CO2 binds best


def test_failures_name_the_structure(monkeypatch):
    st = channel_and_pocket()
    with pytest.raises(ValueError):
        inaccessible_pockets(st, probe_radius=0.0)
    with pytest.raises(PocketError, match="slabs: .*within"):
        inaccessible_pockets(st, name="slabs", timeout_s=1e-3)
    monkeypatch.setattr(pockets, "_CHILD", "import os; os._exit(3)")  # as when Zeo++ calls exit(3)
    with pytest.raises(PocketError, match=r"slabs: .*exit code 3"):
        inaccessible_pockets(st, name="slabs")
    monkeypatch.setattr(pockets, "_CHILD", "import discovery.oracle.geometry.pockets as m; m._CALC_AV = 'no_such_symbol'; m._child()")
    with pytest.raises(PocketError, match="slabs: .*no_such_symbol") as err:
        inaccessible_pockets(st, name="slabs")
    assert isinstance(err.value, GeometryError) and isinstance(err.value, DiscoveryError)


def test_parse_block_reads_the_trailing_sphere_list():
    progress = "Opening File: x.cif\nIdentified 1 channels and 2 pockets.\n382 nodes assigned to pores. \n"
    assert pockets._parse_block(progress + "0\n") == []
    assert pockets._parse_block(progress + "2\n0.1 0.2 0.3 4.5\n0.5 0.5 0.5 1\n") == [[0.1, 0.2, 0.3, 4.5],
                                                                                     [0.5, 0.5, 0.5, 1.0]]
    with pytest.raises(RuntimeError):
        pockets._parse_block(progress)


def test_pocket_images_fill_the_box_once_per_copy():
    from discovery.oracle.geometry.pockets import pocket_images

    matrix = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]])  # a skewed supercell of 2 unit cells
    pockets = [Pocket((0.25, 0.5, 0.75), 3.0), ((-1e-12, 0.0, 0.999), 1.5)]  # Pockets or (centre, radius) pairs
    images = np.array(pocket_images(pockets, matrix))
    assert images.shape == (2 * 2, 4) and sorted(images[:, 3]) == [1.5, 1.5, 3.0, 3.0]
    assert np.all(images[:, :3] >= -1e-9) and np.all(images[:, :3] < 1)
    for centre, radius in ((p.centre_frac, p.radius_A) if isinstance(p, Pocket) else p for p in pockets):
        mine = images[images[:, 3] == radius, :3]
        unit = mine @ matrix - np.array(centre)  # box -> unit-cell fractions: the centre plus a lattice vector
        assert np.allclose(unit, np.rint(unit), atol=1e-9)
        apart = mine[0] - mine[1]
        assert not np.allclose(apart, np.rint(apart))  # two different images, not one twice
    assert pocket_images([], matrix) == ()
