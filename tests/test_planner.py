import numpy as np
import pytest
import torch
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.objective import GenericMCObjective

from discovery.errors import DiscoveryError
from discovery.campaign.planner import Planner, PlannerConfig
from surrogates.adsorption.botorch_model import TableEnsembleModel, fit_gp


def table(n=30, s=8, seed=0, wide=0.3, base=0.05):
    """A fake ensemble table (``s x n x 2``): candidate i has mean objective i / n and a spread that grows
    with i % 3, so the best-mean and the most uncertain candidates differ."""
    rng = np.random.default_rng(seed)
    mean = np.stack([np.arange(n) / n, -np.arange(n) / (2 * n)], axis=-1)
    spread = base + wide * (np.arange(n) % 3 == 0)
    values = mean + spread[None, :, None] * rng.standard_normal((s, n, 2))
    return TableEnsembleModel(torch.from_numpy(values)), torch.arange(n, dtype=torch.float64).unsqueeze(-1)


def test_posterior_shapes_work_with_qlognei_and_qlognehvi():
    model, X = table()
    post = model.posterior(X[:5].unsqueeze(0).expand(3, 5, 1))
    assert post.mean.shape == (3, 5, 2) and post.values.shape == (3, 8, 5, 2)
    nei = qLogNoisyExpectedImprovement(model, X_baseline=X[:4], objective=GenericMCObjective(lambda Y, X: Y[..., 0]))
    assert nei(X[4:10].unsqueeze(-2)).shape == (6,)
    nehvi = qLogNoisyExpectedHypervolumeImprovement(model, ref_point=[-1.0, -1.0], X_baseline=X[:4],
                                                    cache_root=False)
    values = nehvi(X[4:10].view(3, 2, 1))  # q = 2 joint batches
    assert values.shape == (3,) and torch.isfinite(values).all()


def test_strategies_pick_distinct_feasible_rows():
    model, X = table()
    for strategy in ("botorch", "greedy", "random"):
        picked = Planner(PlannerConfig(strategy=strategy)).select(model, X[5:], X[:5], q=6).rows
        assert len(set(picked)) == 6 and all(0 <= r < 25 for r in picked)
    greedy = Planner(PlannerConfig(strategy="greedy")).select(model, X, X[:5], q=3).rows
    assert greedy == model.posterior(X).mean[:, 0].argsort(descending=True)[:3].tolist()  # best means


def test_pending_points_change_the_batch():
    model, X = table()
    planner = Planner(PlannerConfig())
    alone = planner.select(model, X[5:], X[:5], q=2).rows
    pending = X[5:][alone[:1]]
    with_pending = planner.select(model, X[5:], X[:5], q=2, pending=pending).rows
    assert with_pending != alone and alone[0] not in with_pending  # nothing gained by measuring it twice


def test_constraints_exclude_infeasible_candidates():
    model, X = table()
    feasible = np.ones(25, bool)
    feasible[20:] = False  # e.g. pores too narrow for CO2: the best-predicted rows
    for strategy in ("botorch", "greedy", "random"):
        rows = Planner(PlannerConfig(strategy=strategy)).select(model, X[5:], X[:5], q=5, feasible=feasible).rows
        assert all(feasible[r] for r in rows)
    # an outcome constraint the good candidates violate: the second output (-i / 60) must stay above -0.2
    model, X = table(wide=0.0, base=0.002)
    picked = Planner(PlannerConfig(minimum=(("log10_kh_n2", -0.2),))).select(model, X[5:], X[:5], q=1).rows
    free = Planner(PlannerConfig()).select(model, X[5:], X[:5], q=1).rows
    assert picked[0] + 5 in (11, 12) and free[0] + 5 == 29  # the best feasible, not the best


def test_several_objectives_and_costs():
    model, X = table()
    config = PlannerConfig(objectives=("log10_kh_co2", "log10_selectivity"))
    rows = Planner(config).select(model, X[5:], X[:5], q=3).rows
    assert len(set(rows)) == 3
    costs = np.full(25, 100.0)
    costs[3] = 1.0  # a candidate whose next level is a cheap screen
    assert Planner(PlannerConfig()).select(model, X[5:], X[:5], q=1, costs=costs).rows == [3]


def test_gp_alternative_is_a_botorch_model_too():
    rng = np.random.default_rng(1)
    Xf = torch.from_numpy(rng.uniform(size=(40, 3)))
    Y = torch.stack([Xf.sum(-1), -Xf[:, 0]], -1) + 0.05 * torch.from_numpy(rng.standard_normal((40, 2)))
    gp = fit_gp(Xf[:20], Y[:20])
    rows = Planner(PlannerConfig()).select(gp, Xf[20:], Xf[:20], q=3).rows
    assert len(set(rows)) == 3


def test_bad_planner_config_is_named():
    with pytest.raises(DiscoveryError, match="strategy 'bayes'"):
        PlannerConfig(strategy="bayes")
    with pytest.raises(DiscoveryError, match="'log10_flue_co2'"):
        PlannerConfig(objectives=("log10_flue_co2",))


def test_large_batches_pick_from_one_joint_sample_as_qlognei_would():
    """Above ``joint_above`` the batch comes from one joint sample of the posterior: the same picks, in the
    same order, as re-running qLogNEI for each pick on this ensemble, pending points and outcome constraints
    still respected; and every row at most once, however large the batch."""
    model, X = table(seed=0)
    sequential = Planner(PlannerConfig(joint_above=100)).select(model, X[5:], X[:5], q=5)
    joint = Planner(PlannerConfig(joint_above=0)).select(model, X[5:], X[:5], q=5)
    assert joint.rows == sequential.rows
    assert np.allclose(joint.scores[:3], sequential.scores[:3], atol=0.1)  # a log improvement, as qLogNEI's
    pending = X[5:][joint.rows[:1]]
    assert joint.rows[0] not in Planner(PlannerConfig(joint_above=0)).select(model, X[5:], X[:5], q=2,
                                                                           pending=pending).rows
    model, X = table(wide=0.0, base=0.002)
    picked = Planner(PlannerConfig(joint_above=0, minimum=(("log10_kh_n2", -0.2),))).select(model, X[5:], X[:5], q=1)
    assert picked.rows[0] + 5 in (11, 12)  # the best feasible, as in the sequential path
    model, X = table(n=60)
    rows = Planner(PlannerConfig()).select(model, X[10:], X[:10], q=40).rows
    assert len(rows) == 40 == len(set(rows))
