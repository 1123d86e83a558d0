"""Coarse-grained dynamics model: periodic neighbours, likelihood, equivariance, training, rollout."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from scipy.stats import multivariate_normal

from surrogates.transport import (CGDynamics, Frame, TransportConfig, build_edges, collate, gaussian_nll,
                                  periodic_pairs)
from surrogates.transport_train import rollout, rollout_diffusivity, train_transport, trajectory_frames

TRICLINIC = np.array([[9.0, 0.0, 0.0], [3.5, 8.0, 0.0], [2.0, 1.5, 7.0]])


def test_periodic_pairs_match_brute_force_in_a_triclinic_cell():
    rng = np.random.default_rng(0)
    centres, points = rng.random((4, 3)) @ TRICLINIC, rng.random((6, 3)) @ TRICLINIC + 30.0  # points unwrapped
    i, j, vec = periodic_pairs(centres, points, TRICLINIC, 6.0)
    found = sorted((a, b, round(float(np.linalg.norm(v)), 6)) for a, b, v in zip(i, j, vec))
    expected = []
    for a, c in enumerate(centres):
        for b, p in enumerate(points):
            for n in itertools.product(range(-6, 7), repeat=3):
                d = np.linalg.norm(p + np.array(n) @ TRICLINIC - c)
                if d < 6.0:
                    expected.append((a, b, round(float(d), 6)))
    assert found == sorted(expected) and len(found) > 0


def test_gaussian_nll_is_the_isotropic_normal_log_density():
    mu, sigma, y = torch.tensor([[0.1, -0.2, 0.3]]), torch.tensor([0.7]), torch.tensor([[0.5, 0.0, -0.1]])
    expected = -multivariate_normal(mu[0].numpy(), 0.49 * np.eye(3)).logpdf(y[0].numpy())
    assert float(gaussian_nll(mu, sigma, y)) == pytest.approx(expected, rel=1e-6)


def _frame(rng, n=5, m=12, cell=TRICLINIC, history=3):
    return Frame(rng.random((n, 3)) @ cell, rng.normal(0, 0.5, (n, history, 3)), cell, rng.random((m, 3)) @ cell,
                 rng.integers(1, 31, m), target=rng.normal(0, 0.5, (n, 3)))


def test_model_is_rotation_equivariant():
    torch.manual_seed(0)
    model = CGDynamics(TransportConfig()).double().eval()
    f = build_edges(_frame(np.random.default_rng(1)), model.config)
    R = Rotation.random(random_state=2).as_matrix()
    g = build_edges(Frame(f.guests @ R.T, f.history @ R.T, f.cell @ R.T, f.framework @ R.T, f.numbers), model.config)
    mu, sigma = model(collate([f], torch.float64))
    mu_r, sigma_r = model(collate([g], torch.float64))
    assert torch.allclose(mu_r, mu @ torch.from_numpy(R).T, atol=1e-9)
    assert torch.allclose(sigma_r, sigma, atol=1e-9)
    assert mu.abs().max() > 1e-6  # not trivially zero


def test_one_batch_training_step_lowers_the_loss():
    rng = np.random.default_rng(3)
    model = CGDynamics(TransportConfig())
    batch = collate([build_edges(_frame(rng), model.config) for _ in range(4)])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = gaussian_nll(*model(batch), batch["target"]).item()
    for _ in range(5):
        opt.zero_grad()
        gaussian_nll(*model(batch), batch["target"]).backward()
        opt.step()
    assert gaussian_nll(*model(batch), batch["target"]).item() < before


def test_rollout_of_a_model_trained_on_a_random_walk_recovers_its_diffusivity():
    """Beads in an empty box doing a Gaussian random walk: D = sigma^2 / (2 dt) per dimension."""
    rng = np.random.default_rng(4)
    dt_ps, step_sd, stride = 1.0, 0.6, 1
    walk = np.cumsum(rng.normal(0, step_sd, (300, 24, 3)), axis=0)
    cell = np.eye(3) * 40.0
    config = TransportConfig(hidden=32, input_noise=0.0)
    frames = trajectory_frames(walk, cell, np.zeros((0, 3)), np.zeros(0, int), stride, config, every=2)
    model, info = train_transport(frames, config, epochs=8, seed=0)
    assert info["val_nll"][-1] < info["val_nll"][0]
    run = rollout(model, frames[-1], n_steps=500, dt_ps=dt_ps, seed=1)
    fit = rollout_diffusivity(run, start_fraction=0.05, end_fraction=0.3)
    true_d = step_sd ** 2 / (2 * dt_ps) * 1e-20 / 1e-12  # A^2/ps -> m^2/s
    assert fit.d_m2_s == pytest.approx(true_d, rel=0.15)
    assert math.isinf(run.min_framework_distance)  # no framework: nothing to collide with


def test_saved_model_reloads_with_the_same_predictions(tmp_path):
    from surrogates.transport import load_model, save_model

    model = CGDynamics(TransportConfig(hidden=16)).eval()
    batch = collate([build_edges(_frame(np.random.default_rng(5)), model.config)])
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(model(batch)[0], again(batch)[0])
    assert again.config.hidden == 16


def test_guests_are_inserted_away_from_the_framework_and_predicted():
    from surrogates.transport_predict import insert_guests, predict_transport
    from surrogates.transport_train import closest_approach

    rng = np.random.default_rng(6)
    cell = TRICLINIC * 2.0
    framework = rng.random((20, 3)) @ cell
    guests = insert_guests(framework, cell, 6, rng)
    assert guests.shape == (6, 3) and closest_approach(guests, framework, cell) >= 3.0
    with pytest.raises(Exception, match="could place only"):
        insert_guests(rng.random((400, 3)) @ TRICLINIC, TRICLINIC, 6, rng)
    model = CGDynamics(TransportConfig(hidden=16)).eval()
    pred = predict_transport(model, framework, ["C"] * 20, cell, dt_ps=1.0, n_guests=4, simulated_ps=60, burn_in=5)
    assert pred.simulated_ps == 60 and pred.cpu_s > 0 and pred.stable == (pred.min_framework_distance_A >= 1.8)


def _write_trajectory(folder, name, rng, step_sd):
    x = np.cumsum(rng.normal(0, step_sd, (120, 6, 3)), axis=0)
    np.savez(folder / f"{name}_co2_md_seed0.npz", com_positions_A=x, times_ps=np.arange(120) * 0.1,
             cell_A=np.eye(3) * 30.0, framework_positions_A=np.array([[15.0, 15.0, 15.0]]),
             framework_elements=np.array(["Zn"]), framework_id=np.array(name), guest=np.array("CO2"),
             settings_json=np.array("{}"))
    d = step_sd ** 2 / (2 * 0.1) * 1e-8  # A^2/ps -> m^2/s
    return {"structure": name, "cpu_s": {"diffusivity": 300.0},
            "diffusivity": {"co2_m2_s": d, "converged": True, "trajectory": f"x/{name}_co2_md_seed0.npz"}}


def test_transport_benchmark_on_synthetic_trajectories(tmp_path):
    import json

    from surrogates.transport_bench import benchmark_transport, md_runs

    rng = np.random.default_rng(7)
    rows = [_write_trajectory(tmp_path, f"mof{k}", rng, 0.3 + 0.1 * k) for k in range(5)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r["md_cpu_s"] for r in md_runs(tmp_path)] == [300.0] * 5
    out = benchmark_transport(tmp_path, n_test=2, stride=2, epochs=2, every=4, model_out=tmp_path / "model",
                              config=TransportConfig(hidden=16))
    assert out["n_test_mofs"] == 2 and out["n_train_mofs"] == 3 and out["long_step_ps"] == pytest.approx(0.2)
    assert out["speedup"] > 0 and 0.0 <= out["stable_fraction"] <= 1.0
    assert (tmp_path / "model" / "weights.pt").exists()
    with pytest.raises(Exception, match="too few"):
        benchmark_transport(tmp_path, n_test=4)
