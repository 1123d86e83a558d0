"""The grid Widom engine: grid energies against independent brute-force sums, Ewald against a Madelung
constant, and K_H against an exact integral."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.special import erfc

from discovery.oracle.adsorption.estimators import replay
from discovery.oracle.adsorption.exact import DirectSums, grid_check
from discovery.oracle.adsorption.forcefield import CO2, N2, Guest, LennardJones, Site, framework_lj
from discovery.oracle.adsorption.grid import (
    COULOMB_K_A,
    Framework,
    GridSettings,
    energy_grids,
    ewald_alpha,
    grid_shape,
    reciprocal_potential,
)
from discovery.oracle.adsorption.widom import WidomSettings, interpolate, widom

CUTOFF = 12.8


def _triclinic() -> Framework:
    lattice = np.array([[9.0, 0.0, 0.0], [2.5, 10.0, 0.0], [1.5, -2.0, 11.0]])  # narrower than 2 x cutoff
    frac = np.array([[0.1, 0.2, 0.3], [0.55, 0.5, 0.45], [0.8, 0.15, 0.7], [0.3, 0.8, 0.9]])
    return Framework(lattice, frac, ("Zn", "O", "C", "O"), np.array([1.2, -0.7, 0.4, -0.9]), mass_amu=125.0)


def _brute_lj(fw: Framework, site: Site, point: np.ndarray) -> float:
    """Sum over every image within the cutoff, shifted, straight from the definition."""
    total = 0.0
    for el, f in zip(fw.elements, fw.frac):
        p = framework_lj(el)
        eps, sig = math.sqrt(site.lj.epsilon * p.epsilon), 0.5 * (site.lj.sigma + p.sigma)
        u = lambda r: 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6)  # noqa: E731
        for n in np.ndindex(7, 7, 7):
            r = np.linalg.norm(point - (f + np.array(n) - 3) @ fw.lattice)
            if r < CUTOFF:
                total += u(r) - u(CUTOFF)
    return total


def _brute_potential(fw: Framework, point: np.ndarray, alpha: float = 0.42) -> float:
    """Ewald with another splitting parameter than the engine's (the potential does not depend on it)."""
    rc = math.sqrt(-math.log(1e-10)) / alpha
    real = sum(q * erfc(alpha * r) / r for q, f in zip(fw.charges, fw.frac) for n in np.ndindex(9, 9, 9)
               if (r := np.linalg.norm(point - (f + np.array(n) - 4) @ fw.lattice)) < rc)
    recip, vol = 0.0, abs(np.linalg.det(fw.lattice))
    b = 2 * np.pi * np.linalg.inv(fw.lattice).T
    for h in np.ndindex(25, 25, 25):
        k = (np.array(h) - 12) @ b
        k2 = k @ k
        if k2 == 0 or k2 > (2 * alpha * math.sqrt(-math.log(1e-10))) ** 2:
            continue
        s = sum(q * math.cos(k @ (point - f @ fw.lattice)) for q, f in zip(fw.charges, fw.frac))
        recip += math.exp(-k2 / (4 * alpha ** 2)) / k2 * s
    return (real + 4 * math.pi / vol * recip) * COULOMB_K_A


@pytest.mark.parametrize("spacing", [0.5, 0.2])
def test_grid_nodes_equal_direct_sums_in_a_triclinic_cell(spacing, tolerance_K=0.2):
    """The near part is an exact sum at every node; the far part a Fourier series cut at |k| = 2 pi, whose
    terms left out were measured at most 0.08 K here (the grids of the direct far sum, before: 0.13 K)."""
    fw = _triclinic()
    grids = energy_grids(fw, CO2.sites, GridSettings(spacing_A=spacing, dtype="float64"))
    rng = np.random.default_rng(1)
    checked = 0
    for idx in rng.integers(0, grids.shape, size=(40, 3)):
        point = (idx / np.array(grids.shape)) @ fw.lattice
        ref = _brute_lj(fw, CO2.sites[1], point)
        if ref > 1e4:  # inside an atom: stored capped, overlap anyway
            continue
        checked += 1
        assert float(grids.lj["C_co2"][tuple(idx)]) == pytest.approx(ref, abs=tolerance_K)
    assert checked >= 20
    for idx in rng.integers(0, grids.shape, size=(4, 3)):
        point = (idx / np.array(grids.shape)) @ fw.lattice
        # 1e-6 precision in each Ewald part: a few 1e-6 of the potential's scale (q e / A ~ 1e5 K/e)
        assert float(grids.potential[tuple(idx)]) == pytest.approx(_brute_potential(fw, point), abs=2.0)


def test_grid_nodes_are_at_most_the_spacing_apart_and_fft_friendly():
    lattice = np.array([[58.6, 0.0, 0.0], [0.0, 57.0, 0.0], [3.0, 0.0, 58.4]])  # 293, 285, 292 nodes at 0.2 A
    shape = grid_shape(lattice, 0.2)
    for n, v in zip(shape, lattice):
        assert np.linalg.norm(v) / n <= 0.2
        assert n <= 1.05 * np.linalg.norm(v) / 0.2 + 1
        m = n
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        assert m == 1, f"{n} nodes has a prime factor above 7"


def test_reciprocal_potential_gives_the_madelung_constant_of_rock_salt():
    a = 5.64
    frac = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5], [.5, .5, .5]])
    fw = Framework(np.eye(3) * a, frac, ("Na",) * 4 + ("Cl",) * 4, np.array([1.0] * 4 + [-1.0] * 4))
    alpha = ewald_alpha(a, 1e-12)
    phi_rec = float(reciprocal_potential(fw, (32, 32, 32), alpha, 1e-12)[0, 0, 0]) / COULOMB_K_A
    real = sum(q * erfc(alpha * r) / r for q, f in zip(fw.charges, frac) for n in np.ndindex(5, 5, 5)
               if 0 < (r := np.linalg.norm((f + np.array(n) - 2) * a)) < 3 * a)
    at_na = real + phi_rec - 2 * alpha / math.sqrt(math.pi)  # the ion's own Gaussian removed
    assert at_na * (a / 2) == pytest.approx(-1.747565, abs=1e-5)


def test_interpolation_is_exact_at_nodes_and_third_order_between():
    grid = torch.sin(2 * math.pi * torch.arange(40, dtype=torch.float64) / 40)[:, None, None].expand(40, 4, 4).clone()
    nodes = torch.tensor([[3 / 40, 0.0, 0.0], [17 / 40, 0.25, 0.5]], dtype=torch.float64)
    for method in ("linear", "cubic"):
        assert torch.allclose(interpolate(grid, nodes, method)[0], grid[[3, 17], [0, 1], [0, 2]])
    x = torch.rand((500, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = torch.sin(2 * math.pi * x[:, 0])
    cubic = (interpolate(grid, x, "cubic")[0] - exact).abs().max()
    linear = (interpolate(grid, x, "linear")[0] - exact).abs().max()
    assert cubic < 1e-3 < linear


def test_direct_sums_equal_brute_force_at_random_points():
    fw = _triclinic()
    sums = DirectSums(fw)
    points = np.random.default_rng(3).random((3, 3)) @ fw.lattice
    for site in (CO2.sites[0], CO2.sites[1]):
        assert sums.lj(site, points) == pytest.approx([_brute_lj(fw, site, p) for p in points], rel=1e-6, abs=1e-6)
    assert sums.potential(points) == pytest.approx([_brute_potential(fw, p) for p in points], rel=1e-6)


def test_grid_check_passes_a_fine_grid_and_catches_a_coarse_one():
    """The same insertions with interpolated and directly summed energies: within 1 % on a fine grid; off
    by far more on a grid too coarse for this small cell's strong charges (+-1.2 e on 4 atoms)."""
    fw = _triclinic()
    fine = grid_check(energy_grids(fw, CO2.sites, GridSettings(spacing_A=0.1)), CO2, insertions=20_000)
    assert fine.ratio == pytest.approx(1.0, abs=0.01) and fine.ratio_ci95 < 0.01 and fine.summed < fine.insertions
    coarse = grid_check(energy_grids(fw, CO2.sites, GridSettings(spacing_A=0.5, near_A=8.0)), CO2,
                        insertions=20_000)
    assert abs(coarse.ratio - 1.0) > 0.1


def test_henry_coefficient_of_one_attractive_atom_matches_the_exact_integral():
    """One framework atom in a cell wider than twice the (here short) cutoff and a strongly bound one-site
    guest: <W> = 1 + (4 pi / V) int_0^rc (exp(-u_shifted / T) - 1) r^2 dr exactly."""
    L, T, rc = 11.0, 150.0, 5.0
    fw = Framework(np.eye(3) * L, np.array([[0.5, 0.5, 0.5]]), ("C",), np.zeros(1), mass_amu=12.011)
    guest = Guest("X", (Site("X", "Ar", 0.0, LennardJones(3.4, 3000.0), 0.0),), 150.0, 4.8e6, 0.0)
    c = framework_lj("C")
    eps, sig = math.sqrt(3000.0 * c.epsilon), 0.5 * (3.4 + c.sigma)
    lj = lambda r: 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6)  # noqa: E731
    integral, _ = integrate.quad(lambda r: (math.exp(min(-(lj(r) - lj(rc)) / T, 700)) - 1) * r * r, 1.0, rc,
                                 limit=400)
    w_exact = 1 + 4 * math.pi * (integral - 1.0 / 3.0) / L ** 3  # (r < 1 A: exp(-u) = 0, so -r^3/3)
    grids = energy_grids(fw, guest.sites, GridSettings(spacing_A=0.1, cutoff_A=rc))
    result = widom(grids, guest, WidomSettings(target=0.01, block=20_000, max_insertions=2_000_000,
                                               temperature=T, seed=3))
    rho = 12.011e-3 / (6.02214076e23 * L ** 3 * 1e-30)
    w = result.kh * 8.314462618 * T * rho
    assert w_exact > 1.25  # the well matters (an empty cell gives 1): the test could fail
    assert w - 1 == pytest.approx(w_exact - 1, rel=0.05)  # the excess over an empty cell, within 5 %
    assert result.converged and result.kh_ci95 / result.kh <= 0.01


def test_a_dumbbell_guest_matches_the_exact_integral_and_orientation_trials_need_fewer_insertions():
    """A rigid two-site guest (sites at +-z) around one framework atom: <W> - 1 = (4 pi / V) int r^2 dr
    (1/2) int dcos (exp(-U(r, cos) / T) - 1), U the two sites' shifted LJ. Ranking trial axes must keep the
    estimate unbiased and, where orientation matters, reach the target with fewer insertions."""
    L, T, rc, z = 11.0, 150.0, 5.0, 1.2
    fw = Framework(np.eye(3) * L, np.array([[0.5, 0.5, 0.5]]), ("C",), np.zeros(1), mass_amu=12.011)
    guest = Guest("XX", tuple(Site("X", "Ar", s * z, LennardJones(3.4, 2500.0), 0.0) for s in (-1, 1)),
                  150.0, 4.8e6, 0.0)
    c = framework_lj("C")
    eps, sig = math.sqrt(2500.0 * c.epsilon), 0.5 * (3.4 + c.sigma)
    lj = lambda r: 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6)  # noqa: E731
    shifted = lambda r: lj(r) - lj(rc) if r < rc else 0.0  # noqa: E731

    def excess(cos, r):
        d = [math.sqrt(max(r * r + z * z + s * 2 * r * z * cos, 1e-12)) for s in (-1, 1)]
        return 0.5 * r * r * (math.exp(min(-sum(shifted(x) for x in d) / T, 700)) - 1)

    integral, _ = integrate.dblquad(excess, 0.0, rc + z, -1.0, 1.0, epsabs=1e-6, epsrel=1e-7)
    w_exact = 1 + 4 * math.pi * integral / L ** 3
    grids = energy_grids(fw, guest.sites, GridSettings(spacing_A=0.1, cutoff_A=rc))
    to_w = 8.314462618 * T * 12.011e-3 / (6.02214076e23 * L ** 3 * 1e-30)
    runs = {k: widom(grids, guest, WidomSettings(target=0.004, max_insertions=2_000_000, temperature=T, seed=3,
                                                 orientation_trials=k)) for k in (1, 8)}
    assert w_exact > 1.5
    for run in runs.values():
        assert run.converged and run.kh * to_w - 1 == pytest.approx(w_exact - 1, rel=0.03)
    assert runs[8].insertions < 0.5 * runs[1].insertions


def test_same_seed_same_result_and_blocked_pockets_lower_k_h():
    fw = _triclinic()
    grids = energy_grids(fw, CO2.sites, GridSettings(spacing_A=0.4))
    settings = WidomSettings(target=0.5, block=1000, max_insertions=5000, seed=7)
    a, b = widom(grids, CO2, settings), widom(grids, CO2, settings)
    assert a.kh == b.kh and a.insertions == 5000
    blocked = Framework(fw.lattice, fw.frac, fw.elements, fw.charges, np.array([[0.5, 0.5, 0.5, 4.0]]), fw.mass_amu)
    grids.framework = blocked
    assert widom(grids, CO2, settings).kh < a.kh


def test_raspa3s_cbmc_estimator_agrees_without_charges_and_falls_short_on_a_charged_framework():
    """RASPA3's CBMC Widom (first site scored alone) replayed on grids: without charges it agrees with the
    engine and spreads W less than plain insertion; N2's first site scored as a lone charge in a strongly
    charged cell makes W heavy-tailed, and runs of RASPA3's length fall well short of K_H."""
    fw = _triclinic()
    neutral = Framework(fw.lattice, fw.frac, fw.elements, np.zeros(len(fw.frac)), mass_amu=fw.mass_amu)
    plain = replay(energy_grids(neutral, N2.sites, GridSettings(spacing_A=0.3)), N2, insertions=100_000, seed=1)
    assert plain.kh_cbmc == pytest.approx(plain.kh_engine, rel=0.03)
    assert plain.spread_cbmc < plain.spread_uniform
    assert abs(plain.runs["1000"]["median_deviation"]) < 0.02 and plain.runs["1000"]["runs"] == 5
    charged = replay(energy_grids(fw, N2.sites, GridSettings(spacing_A=0.3)), N2, insertions=100_000, seed=1)
    assert charged.kh_uniform == pytest.approx(charged.kh_engine, rel=0.05)
    assert charged.spread_cbmc > 3 * charged.spread_uniform
    assert charged.runs["1000"]["median_deviation"] < -0.2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_grids_agree_with_cpu():
    fw = _triclinic()
    cpu = energy_grids(fw, CO2.sites, GridSettings(spacing_A=0.4))
    gpu = energy_grids(fw, CO2.sites, GridSettings(spacing_A=0.4, device="cuda"))
    assert torch.allclose(cpu.lj["O_co2"], gpu.lj["O_co2"].cpu(), rtol=1e-4, atol=1e-2)
    assert widom(gpu, CO2, WidomSettings(block=1000, max_insertions=5000)).kh > 0


def test_the_oracle_runs_the_henry_level_on_grids_and_agrees_with_raspa(irmof1):
    from discovery.oracle.core import Oracle, OracleSettings

    grid = Oracle(OracleSettings(charges="none", engine="grid", grid_spacing=0.25)).evaluate(irmof1, ("henry",))
    raspa = Oracle(OracleSettings(charges="none", first_cycles=300, max_cycles=300, qst_cycles=0)).evaluate(
        irmof1, ("henry",))
    record = grid.to_dict()
    henry = record["henry"]
    assert henry["engine"] == "grid" and record["settings"]["engine"] == "grid"
    assert henry["sampling"] == {"interpolation": "cubic", "block": 5000, "orientation_trials": 8,
                                 "max_insertions": 2_000_000}  # how the insertions were made travels with them
    assert henry["co2"]["converged"] and henry["co2"]["ci95"] / henry["co2"]["kh_mol_kg_pa"] <= 0.05
    assert 5.0 < henry["co2"]["qst_kj_mol"] < 40.0
    for guest in ("co2", "n2"):
        ref = raspa.properties["henry"][guest]["kh_mol_kg_pa"]
        assert henry[guest]["kh_mol_kg_pa"] == pytest.approx(ref, rel=0.12)


def test_engine_comparison_refuses_an_unknown_charge_model_or_structure(irmof1, tmp_path, capsys):
    from agents.cli.main import main

    (tmp_path / "structures").mkdir()
    irmof1.to_cif(tmp_path / "structures" / "IRMOF-1_DDEC.cif")
    (tmp_path / "co2_298K.csv").write_text("name,charges,kh_co2_mol_kg_pa,kh_n2_mol_kg_pa\nIRMOF-1,none,1e-5,2e-6\n")
    bench = ["benchmark", "oracle", "--reference", str(tmp_path), "--compare-engines"]
    assert main([*bench, "--charges", "ddec"]) == 2
    assert "unknown charge model(s) ['ddec']" in capsys.readouterr().err
    assert main([*bench, "--names", "MOF-5"]) == 2
    assert "not in the reference set: ['MOF-5']; it has ['IRMOF-1']" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["benchmark", "oracle", "--compare-engines", "--cifs", str(tmp_path / "empty")]) == 2
    assert "no CIF files in" in capsys.readouterr().err
    assert main(["benchmark", "oracle", "--no-md"]) == 2
    assert "needs --reference DIR" in capsys.readouterr().err
    assert main([*bench, "--target", "1.5"]) == 2
    assert "--target must be in (0, 1), got 1.5" in capsys.readouterr().err


def test_grid_check_command_prints_both_guests_per_charge_model(irmof1, tmp_path, capsys):
    import json

    from agents.cli.main import main

    irmof1.to_cif(tmp_path / "IRMOF-1.cif")
    assert main(["benchmark", "oracle", "--grid-check", "--cifs", str(tmp_path), "--charges", "none",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["structure"], r["charges"], r["guest"]) for r in out["rows"]] == [
        ("IRMOF-1", "none", "CO2"), ("IRMOF-1", "none", "N2")]
    for row in out["rows"]:
        assert abs(row["ratio"] - 1.0) < 0.03 and row["ratio_ci95"] < 0.01 and row["summed"] < row["insertions"]
    assert out["max_abs_deviation"] == pytest.approx(max(abs(r["ratio"] - 1.0) for r in out["rows"]), abs=1e-5)


def test_engine_checks_are_one_at_a_time(tmp_path, capsys):
    from agents.cli.main import main

    assert main(["benchmark", "oracle", "--grid-check", "--estimator-check", "--cifs", str(tmp_path)]) != 0
    assert "choose one of --grid-check, --estimator-check" in capsys.readouterr().err


def test_engine_comparison_summarises_apart_where_raspa_met_its_target():
    from discovery.oracle.engine_benchmark import _summary

    def row(name, co2, n2, converged):
        return {"structure": name, "diff_co2": co2, "diff_n2": n2, "raspa_converged_co2": converged,
                "raspa_converged_n2": True, "grid_cpu_s": 1.0, "raspa_cpu_s": 10.0, "speedup_vs_raspa": 10.0}

    out = _summary([row("a", 0.02, -0.01, True), row("b", 0.40, 0.03, False)])
    assert out["max_abs_diff"] == 0.40 and out["compared"] == 2
    assert out["where_raspa_converged"] == {"compared": 1, "max_abs_diff": 0.02, "mean_abs_diff": 0.015}
