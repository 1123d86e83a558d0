"""Coarse-grained dynamics model: periodic neighbours, likelihood, equivariance, training, rollout."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from scipy.stats import multivariate_normal

from surrogates.transport.dynamics import (CGDynamics, Frame, TransportConfig, build_edges, collate, gaussian_nll,
                                  periodic_pairs)
from surrogates.transport.train import rollout, rollout_diffusivity, train_transport, trajectory_frames

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
    run = rollout(model, frames[-1], n_steps=2000, dt_ps=dt_ps, seed=1)  # long: the MSD's noise is ~5 %
    fit = rollout_diffusivity(run, start_fraction=0.05, end_fraction=0.1)
    true_d = step_sd ** 2 / (2 * dt_ps) * 1e-20 / 1e-12  # A^2/ps -> m^2/s
    assert fit.d_m2_s == pytest.approx(true_d, rel=0.15)
    assert math.isinf(run.min_framework_distance)  # no framework: nothing to collide with


def test_saved_model_reloads_with_the_same_predictions(tmp_path):
    from surrogates.transport.dynamics import load_model, save_model

    model = CGDynamics(TransportConfig(hidden=16)).eval()
    batch = collate([build_edges(_frame(np.random.default_rng(5)), model.config)])
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(model(batch)[0], again(batch)[0])
    assert again.config.hidden == 16


def test_prediction_starts_as_the_md_oracle_does_and_reports_its_uncertainty(irmof1, tmp_path):
    from surrogates.transport.dynamics import load_model, save_model
    from surrogates.transport.predict import predict_transport, start_frame
    from surrogates.transport.train import closest_approach

    torch.manual_seed(0)
    save_model(CGDynamics(TransportConfig(hidden=16)), tmp_path / "m", {"dt_ps": 5.0, "heldout_mae_log10_d": 0.25})
    model = load_model(tmp_path / "m")
    frame = start_frame(model, irmof1, n_guests=4, seed=0)
    # the MD oracle's box (widths >= 25.6 A) and insertion: CO2 centres at least 2.5 A from every atom
    assert len(frame.framework) == 8 * len(irmof1.structure) and frame.guests.shape == (4, 3)
    assert closest_approach(frame.guests, frame.framework, frame.cell) >= 2.5
    pred = predict_transport(model, irmof1, n_guests=4, simulated_ps=400.0, burn_in_ps=20.0)
    assert pred.simulated_ps == 400.0 and pred.long_step_ps == 5.0 and pred.cpu_s > 0
    assert pred.stable == (pred.min_framework_distance_A >= 1.8)
    assert pred.log10_std >= 0.25  # never below the model's held-out error
    with pytest.raises(Exception, match="long step"):
        save_model(model, tmp_path / "bare")
        predict_transport(load_model(tmp_path / "bare"), irmof1)


def _write_trajectory(folder, name, rng, step_sd):
    x = np.cumsum(rng.normal(0, step_sd, (120, 6, 3)), axis=0)
    np.savez(folder / f"{name}_co2_md_seed0.npz", com_positions_A=x, times_ps=np.arange(120) * 0.1,
             cell_A=np.eye(3) * 30.0, framework_positions_A=np.array([[15.0, 15.0, 15.0]]),
             framework_elements=np.array(["Zn"]), framework_id=np.array(name), guest=np.array("CO2"),
             unit_cell_A=np.eye(3) * 30.0, sample_every_steps=np.array(25), settings_json=np.array("{}"))
    d = step_sd ** 2 / (2 * 0.1) * 1e-8  # A^2/ps -> m^2/s
    return {"structure": name, "cpu_s": {"diffusivity": 300.0},
            "diffusivity": {"co2_m2_s": d, "converged": True, "trajectory": f"x/{name}_co2_md_seed0.npz"}}


def test_transport_benchmark_on_synthetic_trajectories(tmp_path):
    import json

    from discovery.oracle.transport.table import folder_runs
    from surrogates.transport.bench import benchmark_transport

    rng = np.random.default_rng(7)
    rows = [_write_trajectory(tmp_path, f"mof{k}", rng, 0.3 + 0.1 * k) for k in range(5)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r.md_cpu_s for r in folder_runs(tmp_path)] == [300.0] * 5
    out = benchmark_transport(tmp_path, n_test=2, step_ps=0.2, epochs=2, every_ps=0.4, model_out=tmp_path / "model",
                              config=TransportConfig(hidden=16))
    assert out["n_test_mofs"] == 2 and out["n_train_mofs"] == 3 and out["long_step_ps"] == pytest.approx(0.2)
    assert out["long_step_md_steps"] == 50
    assert out["speedup"] > 0 and 0.0 <= out["stable_fraction"] <= 1.0
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["dt_ps"] == pytest.approx(0.2) and meta["heldout_mae_log10_d"] == out["mae_log10_d"]
    with pytest.raises(Exception, match="too few"):
        benchmark_transport(tmp_path, n_test=4)


def test_rollouts_never_cross_the_framework_contact_radii():
    """Restricted to the accessible volume: no bead ends inside, or passes through, a framework atom's contact
    radius, even for an untrained model whose steps are as long as the gaps between atoms."""
    from surrogates.transport.train import _blocked, contact_radii

    cell = np.eye(3) * 12.0
    grid = np.array(list(itertools.product([0.0, 6.0], repeat=3)))  # a simple-cubic 'framework', 6 A apart
    start = Frame(np.array([[3.0, 3.0, 3.0], [9.0, 3.0, 9.0]]), np.zeros((2, 3, 3)), cell, grid, np.full(8, 6))
    wall = Frame(np.array([[3.0, 0.0, 0.0]]), np.zeros((1, 3, 3)), cell, grid, np.full(8, 6))
    assert _blocked(wall.guests, np.array([[6.0, 0.0, 0.0]]), wall, np.full(8, 1.5)).all()  # through an atom
    assert not _blocked(wall.guests, np.array([[1.0, 0.0, 0.0]]), wall, np.full(8, 1.5)).any()
    torch.manual_seed(1)
    model = CGDynamics(TransportConfig(hidden=16, min_sigma=2.0)).eval()
    run = rollout(model, build_edges(start, model.config), n_steps=60, dt_ps=1.0, seed=0, radii={6: 2.5})
    assert run.min_framework_distance >= 2.5 and 0 < run.rejected_fraction < 1
    free = rollout(model, build_edges(start, model.config), n_steps=60, dt_ps=1.0, seed=0)
    assert free.min_framework_distance < 2.5  # the same model unrestricted does go there
    frames = trajectory_frames(run.positions, cell, grid, np.full(8, 6), 1, model.config)
    assert contact_radii(frames)[6] >= 2.5


def test_transport_scores_become_ensemble_members():
    from surrogates.transport.scorer import TransportScorer

    scorer = TransportScorer.__new__(TransportScorer)  # scores set directly: no model needed for this part
    scorer.scores = {"a": (-8.0, 0.3), "b": (-7.0, 0.1)}
    draws = scorer.members(["a", "b", "a"], 5, seed=3)
    assert draws.shape == (5, 3)
    assert np.allclose(draws.mean(0), [-8.0, -7.0, -8.0]) and np.allclose(draws.std(0), [0.3, 0.1, 0.3])
    assert not np.array_equal(draws[:, 0], draws[:, 2])  # shuffled per candidate
    with pytest.raises(Exception, match="no transport score"):
        scorer.predict(["c"])


def test_train_and_predict_transport_commands(tmp_path, irmof1, capsys):
    import json

    from agents.cli.main import main

    rng = np.random.default_rng(8)
    data = tmp_path / "traj"
    data.mkdir()
    rows = [_write_trajectory(data, f"mof{k}", rng, 0.3 + 0.1 * k) for k in range(5)]
    (data / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["train", "transport", "--data", str(data), "--out", str(tmp_path / "m"), "--n-heldout", "2",
                 "--step-ps", "0.2", "--epochs", "1", "--every-ps", "0.4", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["n_train_mofs"] == 3 and trained["model"] == str(tmp_path / "m")
    cif = tmp_path / "irmof1.cif"
    cif.write_text(irmof1.to_cif())
    broken = tmp_path / "broken.cif"
    broken.write_text("data_x\n_cell_length_a 10\n")
    code = main(["predict-transport", str(cif), str(broken), "--model", str(tmp_path / "m"), "--ps", "20",
                 "--guests", "3", "--json"])
    first, second = json.loads(capsys.readouterr().out)
    assert code == 1  # one structure could not be read; the other is still scored
    assert first["structure"] == "irmof1" and first["long_step_ps"] == pytest.approx(0.2) and first["d_m2_s"] > 0
    assert "error" in second and second["file"] == str(broken)


def test_training_data_from_several_folders(tmp_path):
    """A campaign's trajectory folder (no results file) adds training data; only MD-scored runs are held out."""
    import json

    from discovery.oracle.transport.table import runs_of
    from surrogates.transport.bench import benchmark_transport

    rng = np.random.default_rng(9)
    data, campaign = tmp_path / "data", tmp_path / "campaign"
    data.mkdir(), campaign.mkdir()
    rows = [_write_trajectory(data, f"mof{k}", rng, 0.3 + 0.1 * k) for k in range(3)]
    (data / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name in ("mof0", "new1", "new2"):  # mof0 is in both: the first folder's run is kept
        _write_trajectory(campaign, name, rng, 0.5)
    runs = runs_of([data, campaign])
    assert [r.id for r in runs] == ["mof0", "mof1", "mof2", "new1", "new2"]
    assert [r.md_d_m2_s is None for r in runs] == [False, False, False, True, True]
    out = benchmark_transport([data, campaign], n_test=2, step_ps=0.2, epochs=1, every_ps=0.4,
                              config=TransportConfig(hidden=16))
    assert out["n_train_mofs"] == 3 and {r["id"] for r in out["per_mof"]} <= {"mof0", "mof1", "mof2"}
    with pytest.raises(Exception, match="0 with an MD result"):
        benchmark_transport([campaign], n_test=1)
    with pytest.raises(Exception, match="no such folder"):
        runs_of([tmp_path / "missing"])


def test_trajectory_table_keeps_what_the_model_learns_from(tmp_path):
    """The compact table: positions within half its quantum of the MD's (no accumulated drift), framework
    atoms within 1e-3 A, the MD result kept, and a benchmark runs from it as from the folder."""
    import json

    from discovery.oracle.transport.md import load_trajectory
    from discovery.oracle.transport.table import QUANTUM_A, export_table, load_table, runs_of, table_version
    from surrogates.transport.bench import benchmark_transport

    rng = np.random.default_rng(10)
    data = tmp_path / "traj"
    data.mkdir()
    rows = [_write_trajectory(data, f"mof{k}", rng, 0.3 + 0.1 * k) for k in range(5)]
    (data / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))  # mof4: no result yet
    summary = export_table(data, tmp_path / "t.npz", frame_ps=0.2, progress=False)
    assert summary["runs"] == 4 and summary["version"] == table_version(tmp_path / "t.npz")
    runs = load_table(tmp_path / "t.npz")
    assert [r.id for r in runs] == ["mof0", "mof1", "mof2", "mof3"]
    original = load_trajectory(data / "mof3_co2_md_seed0.npz")
    packed = runs[3].trajectory()
    assert packed["com_positions_A"].shape == (60, 6, 3) and packed["times_ps"][1] == pytest.approx(0.2)
    assert np.abs(packed["com_positions_A"] - original["com_positions_A"][::2]).max() <= QUANTUM_A / 2 + 1e-9
    assert np.abs(packed["framework_positions_A"] - original["framework_positions_A"]).max() < 1e-3
    assert packed["sample_every_steps"] == 50 and list(packed["framework_elements"]) == ["Zn"]
    assert runs[3].md_d_m2_s == rows[3]["diffusivity"]["co2_m2_s"] and runs[3].md_cpu_s == 300.0
    extra = tmp_path / "campaign"  # a campaign's folder: trajectories, no results file
    extra.mkdir()
    for name in ("mof0", "new"):
        _write_trajectory(extra, name, rng, 0.5)
    assert [r.id for r in runs_of([tmp_path / "t.npz", extra])] == ["mof0", "mof1", "mof2", "mof3", "new"]
    with pytest.raises(Exception, match="whole number"):
        benchmark_transport(tmp_path / "t.npz", n_test=2, step_ps=0.3, epochs=1, every_ps=0.4)
    out = benchmark_transport(tmp_path / "t.npz", n_test=2, step_ps=0.2, epochs=1, every_ps=0.4,
                              config=TransportConfig(hidden=16), model_out=tmp_path / "m")
    assert out["n_train_mofs"] == 2 and out["long_step_md_steps"] == 50
    assert json.loads((tmp_path / "m" / "model.json").read_text())["data"] == [f"t.npz@{summary['version']}"]
    from discovery.models import read_fingerprint
    from surrogates.transport.bench import fingerprint
    from surrogates.transport.dynamics import load_model

    recorded = read_fingerprint(tmp_path / "m")
    assert recorded["ids"] == ["mof0", "mof1", "mof2"]
    assert fingerprint(load_model(tmp_path / "m"), runs[:3], 0.2) == recorded  # what the shipped-model test checks
    with pytest.raises(Exception, match="not a trajectory table"):
        (tmp_path / "bad.npz").write_text("not numpy")
        load_table(tmp_path / "bad.npz")
