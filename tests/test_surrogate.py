import gzip
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from discovery.errors import DiscoveryError
from discovery.structures.mof import Bead, CGView
from surrogates.adsorption.data import load_pool, read_table
from surrogates.adsorption.ensemble import DeepEnsemble, EnsembleConfig
from surrogates.adsorption.gnn import CrystalGNN, NetConfig
from surrogates.adsorption.graphs import GraphError, bb_graph, bb_index, cg_graph, neighbor_edges

PROBE = {"log10_kh_probe": -5.2, "min_energy_K": -2600.0, "frac_below_4000K": 0.0, "frac_below_3000K": 0.0,
         "frac_below_2500K": 0.01, "frac_below_2000K": 0.03, "frac_below_1500K": 0.08, "frac_below_1000K": 0.2}
GEOMETRY = {"lcd": 12.0, "pld": 8.0, "asa_m2_g": 3000.0, "density_g_cm3": 0.6, "void_fraction": 0.8, **PROBE}


def test_periodic_neighbours_in_a_triclinic_cell():
    # one point in a cell: all its neighbours are its own images; in a sheared cell the nearest
    # images lie along the short lattice vectors, whatever the tilt
    a = np.array([[10.0, 0, 0], [5.0, 9.0, 0], [2.0, 3.0, 11.0]])
    edges, dist = neighbor_edges(a, np.zeros((1, 3)), cutoff=12.0, max_neighbors=50)
    images = [i * a[0] + j * a[1] + k * a[2] for i in range(-3, 4) for j in range(-3, 4) for k in range(-3, 4)]
    expected = sorted(d for d in np.linalg.norm(images, axis=1) if 1e-8 < d < 12.0)
    assert np.allclose(sorted(dist), expected)
    assert (edges == 0).all()
    edges, dist = neighbor_edges(a, np.zeros((1, 3)), cutoff=12.0, max_neighbors=4)
    assert np.allclose(sorted(dist), expected[:4])  # the 4 nearest are kept


def test_cg_graph_of_a_built_mof(irmof1):
    g = cg_graph(irmof1.cg, GEOMETRY, irmof1.id)
    assert g.num_nodes == len(irmof1.cg.beads) and g.edge_index.max() < g.num_nodes
    assert g.globals.shape == (1, 13) and set(g.bead_bb.tolist()) == {bb_index()["N16"], bb_index()["E14"]}
    z = bb_graph(bb_index()["N16"]).z.tolist()
    assert z.count(30) == 4 and z.count(0) == 6  # Zn4O(CO2)6: four Zn, six connection points


def test_bad_graph_inputs_are_named(irmof1):
    with pytest.raises(GraphError, match="no coarse-grained view"):
        cg_graph(None, GEOMETRY, "plain.cif")
    with pytest.raises(GraphError, match="non-finite"):
        cg_graph(irmof1.cg, {**GEOMETRY, "lcd": float("nan")}, "x")
    with pytest.raises(GraphError, match="log10_kh_probe"):
        cg_graph(irmof1.cg, {k: v for k, v in GEOMETRY.items() if k != "log10_kh_probe"}, "x")
    bogus = CGView(irmof1.cg.lattice, (Bead("N99999", "node", np.zeros(3)),))
    with pytest.raises(GraphError, match="N99999"):
        cg_graph(bogus, GEOMETRY, "x")


def test_a_bead_far_from_the_others_keeps_no_edge_but_is_read():
    # a large unit in a large cell (real MOFs): no neighbour within the cutoff, so no edge rather than
    # an edge the filters were never shaped for; the bead still counts through its block and the readout
    far = CGView(np.eye(3) * 40.0, (Bead("N16", "node", np.zeros(3)), Bead("E14", "edge", np.full(3, 0.5))))
    g = cg_graph(far, GEOMETRY, "far")
    assert g.num_nodes == 2 and g.edge_index.shape == (2, 0)
    net = CrystalGNN(NetConfig(hidden=16, filters=16, gaussians=8)).eval()
    from torch_geometric.data import Batch

    assert torch.isfinite(net(Batch.from_data_list([g]))).all()


def synthetic_graphs(irmof1, n=40, seed=0):
    """The IRMOF-1 CG graph with varied descriptors; the target is a smooth function of them."""
    rng = np.random.default_rng(seed)
    graphs, y = [], []
    for _ in range(n):
        geo = {"lcd": rng.uniform(5, 20), "pld": rng.uniform(4, 15), "asa_m2_g": rng.uniform(500, 5000),
               "density_g_cm3": rng.uniform(0.3, 1.5), "void_fraction": rng.uniform(0.4, 0.9), **PROBE}
        graphs.append(cg_graph(irmof1.cg, geo, "syn"))
        y.append([-4.0 - 0.1 * geo["lcd"] + geo["density_g_cm3"], -6.0 - 0.05 * geo["lcd"]])
    return graphs, np.array(y)


SMALL = EnsembleConfig(members=2, epochs=8, batch_size=8, net=NetConfig(hidden=16, filters=16, gaussians=8))


def test_a_tiny_training_run_lowers_the_loss(irmof1):
    graphs, y = synthetic_graphs(irmof1)
    model = DeepEnsemble.fit(graphs, y, SMALL)
    for curve in model.info["loss_curves"]:
        assert min(curve) < curve[0]
    pred = model.predict(graphs)
    assert pred.mean.shape == (40, 2) and pred.members.shape == (2, 40, 2) and (pred.std > 0).all()
    assert np.allclose(pred.members.mean(0), pred.mean)


def test_saved_model_reloads_without_pickle(irmof1, tmp_path):
    graphs, y = synthetic_graphs(irmof1, n=20)
    model = DeepEnsemble.fit(graphs, y, SMALL)
    model.save(tmp_path / "m", extra={"data_version": "labels-test"})
    again = DeepEnsemble.load(tmp_path / "m")
    assert np.allclose(again.predict(graphs).members, model.predict(graphs).members, atol=1e-5)
    assert again.meta["data_version"] == "labels-test" and again.config == model.config
    (tmp_path / "m" / "model.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(DiscoveryError, match="unsupported model format"):
        DeepEnsemble.load(tmp_path / "m")


def test_bad_configs_and_targets_are_refused(irmof1):
    with pytest.raises(DiscoveryError, match="at least 2 members"):
        EnsembleConfig(members=1)
    with pytest.raises(DiscoveryError, match="epoch"):
        EnsembleConfig.from_dict({"epoch": 3})
    graphs, y = synthetic_graphs(irmof1, n=12)
    y[3, 0] = np.nan
    with pytest.raises(DiscoveryError, match="non-finite"):
        DeepEnsemble.fit(graphs, y, SMALL)


def test_pooling_keeps_the_strongest_bead_and_old_models_load_with_the_mean(irmof1, tmp_path):
    with pytest.raises(DiscoveryError, match="pooling"):
        NetConfig(pooling="sum")
    g = cg_graph(irmof1.cg, GEOMETRY, "x")
    from torch_geometric.data import Batch

    torch.manual_seed(0)
    net = CrystalGNN(NetConfig(hidden=8, filters=8, gaussians=4)).eval()
    with torch.no_grad():
        h = net.embed(Batch.from_data_list([g]))
    assert h.shape == (1, 3 * 8)  # mean, max, descriptors
    # a user's config that sets other net fields keeps the default pooling
    assert EnsembleConfig.from_dict({"net": {"hidden": 32}}).net.pooling == "mean+max"
    # a saved model without the key was trained before the option, with the mean: it loads as it was trained
    graphs, y = synthetic_graphs(irmof1, n=12)
    model = DeepEnsemble.fit(graphs, y, replace(SMALL, net=replace(SMALL.net, pooling="mean")))
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    del meta["config"]["net"]["pooling"]
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    again = DeepEnsemble.load(tmp_path / "m")
    assert again.config.net.pooling == "mean"
    assert np.allclose(again.predict(graphs).members, model.predict(graphs).members, atol=1e-5)


def test_block_vectors_are_cached_only_in_eval_mode(irmof1):
    net = CrystalGNN(NetConfig(hidden=8, filters=8, gaussians=4)).eval()
    g = cg_graph(irmof1.cg, GEOMETRY, "x")
    from torch_geometric.data import Batch

    with torch.no_grad():
        first = net(Batch.from_data_list([g]))
        assert len(net._bb_cache) == 2
        assert torch.allclose(net(Batch.from_data_list([g])), first)
    net.eval()  # every predict() call says so: the vectors stay
    assert len(net._bb_cache) == 2
    net.load_state_dict(CrystalGNN(NetConfig(hidden=8, filters=8, gaussians=4)).state_dict())
    assert net._bb_cache == {}  # new weights
    with torch.no_grad():
        net(Batch.from_data_list([g]))
    net.train()
    assert net._bb_cache == {}


def test_calibration_covers_heavy_tailed_errors_at_the_nominal_levels():
    """Errors with a Student-t tail (4 degrees of freedom) around a spread ~4x too small: the fitted factor's
    central intervals cover close to their levels on fresh draws, closer than with a Gaussian
    maximum-likelihood factor (the root mean square of z), which the tail widens."""
    from scipy.stats import norm
    from surrogates.adsorption.ensemble import _calibration_scale

    rng = np.random.default_rng(0)
    std = rng.uniform(0.05, 0.2, size=(4000, 2))
    y = 3.0 * std * rng.standard_t(4, size=std.shape)
    fit, test = slice(0, 2000), slice(2000, None)
    levels = np.array([0.5, 0.68, 0.9])

    def miscalibration(c):
        z = np.abs(y[test]) / (c * std[test])
        return np.abs(np.array([np.mean(z <= norm.ppf(0.5 + level / 2)) for level in levels]) - levels)

    fitted = miscalibration(_calibration_scale(y[fit], np.zeros_like(y[fit]), std[fit]))
    gaussian = miscalibration(np.sqrt(((y[fit] / std[fit]) ** 2).mean(0)))
    assert fitted.max() < 0.06
    assert fitted.sum() < 0.6 * gaussian.sum()


def test_pool_table_skips_unlabelled_mofs(irmof1, tmp_path):
    header = {"format": 1, "labels_sha256": "ab" * 32, "n": 2}
    rows = [{"id": "a", "cg": irmof1.cg.to_dict(), "descriptors": GEOMETRY,
             "labels": {"log10_kh_co2": -4.5, "log10_kh_n2": -5.9}},
            {"id": "b", "cg": irmof1.cg.to_dict(), "descriptors": GEOMETRY, "labels": {},
             "failures": {"henry": {"reason": "timeout"}}}]
    path = tmp_path / "pool.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in [header, *rows])
    pool = load_pool(path)
    assert pool.ids == ["a"] and pool.y.tolist() == [[-4.5, -5.9]] and "timeout" in pool.skipped["b"]
    assert pool.data_version == "labels-abababababab"
    assert read_table(path)[0]["n"] == 2
    with pytest.raises(DiscoveryError, match="unknown targets"):
        load_pool(path, targets=("log10_kh_h2o",))


def test_pools_merge_by_name_or_path(irmof1, tmp_path, capsys):
    from agents.cli.main import main
    from discovery.pool import POOLS, pool_tables, resolve_table

    assert pool_tables("core") == [POOLS["core"]] and pool_tables("design, core") == [POOLS["design"], POOLS["core"]]
    assert resolve_table("core") == POOLS["core"] and resolve_table(None) == POOLS["design"]  # proposer.table
    assert resolve_table("mine.jsonl.gz").name == "mine.jsonl.gz"
    with pytest.raises(DiscoveryError, match="unknown pool 'hypo'"):
        pool_tables("hypo")
    with pytest.MonkeyPatch.context() as mp:  # a named pool whose table a checkout lacks
        mp.setitem(POOLS, "design-eqeq", tmp_path / "pool_henry_eqeq_v1.jsonl.gz")
        with pytest.raises(DiscoveryError, match="pool design-eqeq: its table pool_henry_eqeq_v1.jsonl.gz is not"):
            pool_tables("design,design-eqeq")
    paths = []
    for name, ids in (("a", ["x", "y"]), ("b", ["z"])):
        rows = [{"id": i, "cg": irmof1.cg.to_dict(), "descriptors": GEOMETRY,
                 "labels": {"log10_kh_co2": -4.0, "log10_kh_n2": -5.0}} for i in ids]
        paths.append(tmp_path / f"{name}.jsonl.gz")
        with gzip.open(paths[-1], "wt") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in [{"format": 1, "labels_sha256": name * 64, "n": 1}, *rows])
    pool = load_pool(paths)
    assert pool.ids == ["x", "y", "z"] and pool.y.shape == (3, 2)
    assert pool.data_version == "labels-" + "a" * 12 + "+labels-" + "b" * 12
    with pytest.raises(DiscoveryError, match="share MOF ids"):
        load_pool([paths[0], paths[0]])
    assert main(["benchmark", "surrogate", "--pool", "design", "--data", str(paths[0])]) == 2
    assert "not both" in capsys.readouterr().err


def test_train_and_predict_from_the_command_line(irmof1, tmp_path, capsys):
    from agents.cli.main import main

    rng = np.random.default_rng(0)
    rows = [{"id": f"m{i}", "cg": irmof1.cg.to_dict(), "labels": {"log10_kh_co2": -5 + 0.1 * i, "log10_kh_n2": -6.0},
             "descriptors": {**GEOMETRY, "lcd": float(rng.uniform(5, 20))}} for i in range(16)]
    table = tmp_path / "pool.jsonl.gz"
    with gzip.open(table, "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in [{"format": 1, "labels_sha256": "cd" * 32, "n": 16}, *rows])
    model = tmp_path / "model"
    assert main(["train", "surrogate", "--data", str(table), "--out", str(model), "--members", "2",
                 "--epochs", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_labelled"] == 16 and summary["data_version"] == "labels-cdcdcdcdcdcd"
    record, cif = tmp_path / "irmof1.json", tmp_path / "irmof1.cif"
    irmof1.to_json(record)
    irmof1.to_cif(cif)
    broken = tmp_path / "broken.cif"
    broken.write_text("data_x\n")
    assert main(["predict", "--model", str(model), str(record), str(cif), str(broken), "--json"]) == 1
    scored, plain, bad = json.loads(capsys.readouterr().out)
    assert np.isfinite(scored["log10_kh_co2"]["mean"]) and scored["log10_kh_co2"]["std"] > 0
    assert "log10_selectivity" in scored and scored["model"]["data_version"] == "labels-cdcdcdcdcdcd"
    # the plain CIF is cut into units (pormake's N16 and E14 again): the same MOF, the same prediction
    assert plain["log10_kh_co2"]["mean"] == pytest.approx(scored["log10_kh_co2"]["mean"], abs=0.01)
    assert "broken.cif" in bad["file"] and bad["error"]


def test_a_lookup_campaign_evaluates_each_mof_once(irmof1):
    from discovery.campaign.planner import PlannerConfig
    from surrogates.adsorption.benchmarks import calls_to_find, run_campaign
    from surrogates.adsorption.data import LabelledPool

    graphs, y = synthetic_graphs(irmof1, n=30)
    pool = LabelledPool([f"m{i}" for i in range(30)], graphs, y, ("log10_kh_co2", "log10_kh_n2"), "v")
    config = EnsembleConfig(members=2, epochs=3, batch_size=8, net=NetConfig(hidden=8, filters=8, gaussians=4))
    order = run_campaign(pool, "botorch", seed=0, budget=16, q=3, n_init=10, config=config, planner=PlannerConfig())
    assert len(order) == 16 and len(set(order)) == 16
    assert order[:10] == run_campaign(pool, "random", 0, 10, 3, 10, config, PlannerConfig())  # same start
    gp = run_campaign(pool, "botorch", 0, 13, 3, 10, config, PlannerConfig(), surrogate="gp")
    assert len(set(gp)) == 13 and gp[:10] == order[:10]
    assert calls_to_find([5, 1, 7, 2], {1, 2}, 2) == 4 and calls_to_find([5, 1], {1, 2}, 2) is None


def test_the_committed_real_pool_is_self_contained():
    # every row names only blocks it carries (or pormake's), so it is read without the import's directory
    from discovery.library.units import is_pormake
    from discovery.pool import POOLS

    header, rows = read_table(POOLS["core"])
    assert header["n"] == len(rows) and header["structures"] == "CoRE MOF 2019-ASR"
    assert header["oracle_settings"]["engine"] == "grid" and header["charges"] == "none"
    labelled = [r for r in rows if "log10_kh_co2" in r["labels"]]
    assert len(labelled) >= 1500
    for r in rows:
        beads = {b["bb_id"] for b in (r.get("cg") or {}).get("beads", [])}
        assert all(is_pormake(b) or b in (r.get("units") or {}) for b in beads), r["id"]


def test_the_committed_eqeq_pool_relabels_the_design_pool_with_charges():
    # the uncharged table's MOFs (same blocks and descriptors), labelled by the grid engine with EQeq charges;
    # CO2's quadrupole meets the framework's charges, N2's much weaker one barely: charges raise K_H(CO2)
    # across the pool and leave K_H(N2) nearly where it was
    from discovery.pool import POOLS

    header, rows = read_table(POOLS["design-eqeq"])
    assert header["n"] == len(rows) and header["charges"] == "eqeq"
    assert header["oracle_settings"]["engine"] == "grid" and header["oracle_settings"]["charges"] == "eqeq"
    plain = {r["id"]: r for r in read_table(POOLS["design"])[1]}
    labelled = [r for r in rows if "log10_kh_co2" in r["labels"]]
    assert len(labelled) >= 1600 and all(r["id"] in plain for r in rows)
    assert 0 < sum(r.get("converged") is False for r in rows) < 0.02 * len(rows)  # cap-limited labels are marked
    blocks = lambda r: sorted(b["bb_id"] for b in r["cg"]["beads"])  # noqa: E731  (positions: reassembled today)
    assert all(blocks(r) == blocks(plain[r["id"]]) and r["descriptors"] == plain[r["id"]]["descriptors"] for r in rows)
    shift = {t: np.array([r["labels"][t] - plain[r["id"]]["labels"][t] for r in labelled])
             for t in ("log10_kh_co2", "log10_kh_n2")}
    assert np.median(shift["log10_kh_co2"]) > 0.03 and np.mean(shift["log10_kh_co2"] > 0) > 0.8
    assert abs(np.median(shift["log10_kh_n2"])) < np.median(shift["log10_kh_co2"]) / 2
