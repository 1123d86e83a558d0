import numpy as np
import pytest

from discovery.oracle.transport.msd import msd_per_molecule, remove_drift, self_diffusivity

KT_OVER_AMU = 247.896  # k_B * 298 K in amu A^2 / ps^2
CO2_MASS = 44.009


def random_walk(d_a2_ps: float, n_frames: int, n_molecules: int, dt: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = rng.normal(scale=np.sqrt(2.0 * d_a2_ps * dt), size=(n_frames, n_molecules, 3))
    return np.cumsum(steps, axis=0) + rng.random((1, n_molecules, 3)) * 30.0


def test_fft_msd_equals_the_direct_average_over_time_origins():
    x = random_walk(1.0, 150, 3, 0.1, seed=1)
    direct = np.array([[((x[k:, i] - x[: len(x) - k, i]) ** 2).sum(axis=1).mean() for i in range(3)]
                       for k in range(150)])
    assert np.allclose(msd_per_molecule(x), direct, rtol=1e-9, atol=1e-8)
    assert np.allclose(msd_per_molecule(x, 40), direct[:41], rtol=1e-9, atol=1e-8)


def test_random_walk_recovers_its_diffusivity_within_the_error_bar():
    d_true = 1.5  # A^2/ps = 1.5e-8 m^2/s
    x = random_walk(d_true, 4000, 40, 0.1, seed=2)
    fit = self_diffusivity(x, 0.1, remove_com_drift=False, length_scale_A=10.0)
    assert fit.converged, fit.reason
    assert abs(fit.d_m2_s - d_true * 1e-8) <= 1.5 * fit.ci95
    assert abs(fit.d_m2_s / (d_true * 1e-8) - 1) < 0.15
    assert 0.1 * 1e-8 < fit.ci95 < 0.5 * 1e-8
    assert abs(fit.slope - 1) < 0.1
    assert (fit.error_units, fit.n_units) in (("molecules", 40), ("time blocks", 5))  # the wider of the two
    lo, hi = fit.fit_window_ps
    assert hi <= 0.3 * 400 and lo > 0  # never past 30 % of the run, never from t = 0
    assert hi == pytest.approx((2 * 10.0) ** 2 / (6 * d_true), rel=0.15)  # ends where rms = 2 x length scale


def test_ballistic_motion_is_not_diffusive():
    rng = np.random.default_rng(3)
    n, dt = 200, 0.01
    v = rng.normal(scale=np.sqrt(KT_OVER_AMU / CO2_MASS), size=(n, 3))  # Maxwell velocities, A/ps
    t = np.arange(300) * dt
    x = rng.random((n, 3)) * 20.0 + t[:, None, None] * v[None]
    msd = msd_per_molecule(x)
    assert np.allclose(msd, (v**2).sum(axis=1)[None, :] * t[:, None] ** 2, rtol=1e-8, atol=1e-8)
    assert msd[100].mean() == pytest.approx(3 * KT_OVER_AMU / CO2_MASS * t[100] ** 2, rel=0.1)  # 3kT t^2 / m
    fit = self_diffusivity(x, dt)
    assert fit.slope == pytest.approx(2.0, abs=0.02)
    assert not fit.converged and "slope" in fit.reason


def test_drift_is_removed():
    d_true, n = 1.0, 30
    walk = random_walk(d_true, 3000, n, 0.1, seed=4)
    drifting = walk + np.arange(3000)[:, None, None] * 0.1 * np.array([3.0, -2.0, 1.0])  # A/ps, all molecules
    biased = self_diffusivity(drifting, 0.1, remove_com_drift=False)
    assert biased.slope > 1.3 and not biased.converged
    fixed = self_diffusivity(drifting, 0.1, remove_com_drift=True)
    assert fixed.drift_removed and fixed.converged, fixed.reason
    # removing the common motion of n independent walkers also removes 1/n of their MSD
    assert fixed.d_m2_s == pytest.approx(d_true * (1 - 1 / n) * 1e-8, abs=1.5 * fixed.ci95)
    centred = remove_drift(drifting)
    assert np.allclose(centred.mean(axis=1), centred[0].mean(axis=0))


def test_caged_molecules_are_censored():
    rng = np.random.default_rng(5)
    sites = rng.random((1, 20, 3)) * 50.0
    x = sites + rng.normal(scale=1.0, size=(2000, 20, 3))  # rattling in a cage, never leaving it
    fit = self_diffusivity(x, 0.1, remove_com_drift=False, length_scale_A=12.0)
    assert not fit.converged
    assert "slope" in fit.reason and "rms displacement" in fit.reason
    assert fit.apparent_d_m2_s > 0  # an upper bound, not a value


def test_few_molecules_use_time_blocks():
    x = random_walk(2.0, 5000, 3, 0.1, seed=6)
    fit = self_diffusivity(x, 0.1, remove_com_drift=False, window_ps=(5.0, 40.0))
    assert fit.error_units == "time blocks" and fit.n_units == 5
    assert fit.fit_window_ps == (5.0, 40.0)
    assert abs(fit.d_m2_s - 2e-8) < 2 * fit.ci95


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="n_frames"):
        self_diffusivity(np.zeros((10, 3)), 0.1)
    with pytest.raises(ValueError, match="dt_ps"):
        self_diffusivity(np.zeros((20, 3, 3)), 0.0)
    with pytest.raises(ValueError, match="after the run"):
        self_diffusivity(random_walk(1.0, 100, 5, 0.1, seed=7), 0.1, window_ps=(1.0, 50.0))
