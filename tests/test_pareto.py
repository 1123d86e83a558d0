import numpy as np
import torch
from botorch.utils.multi_objective.pareto import is_non_dominated

from discovery.campaign.pareto import pareto_mask
from discovery.campaign.planner import _pareto_order


def brute_force(v: np.ndarray) -> np.ndarray:
    """Non-dominated rows by the definition, pair by pair (rows with a NaN: never)."""
    ok = ~np.isnan(v).any(axis=1)
    return np.array([ok[i] and not any(ok[j] and (v[j] >= v[i]).all() and (v[j] > v[i]).any()
                                       for j in range(len(v))) for i in range(len(v))])


def test_mask_matches_the_definition_with_ties_and_nans():
    rng = np.random.default_rng(7)
    for m in (1, 2, 3):
        v = rng.integers(0, 5, size=(120, m)).astype(float)  # few levels: many ties and duplicates
        v[rng.random(120) < 0.05, 0] = np.nan
        assert (pareto_mask(v) == brute_force(v)).all()


def test_deduplicated_mask_is_botorchs_is_non_dominated():
    rng = np.random.default_rng(3)
    for n in (50, 1500):  # botorch switches to a loop above 1000 rows
        k = rng.integers(0, 8, size=n)  # points on the line x + y = 7 or one step below it: many equal front points
        v = (np.stack([k, 7 - k], axis=-1) - rng.integers(0, 2, size=(n, 2))).astype(float)
        expected = is_non_dominated(torch.from_numpy(v)).numpy()
        assert (pareto_mask(v, deduplicate=True) == expected).all()
        assert pareto_mask(v).sum() > expected.sum()  # the duplicates it drops are on the front


def test_planner_order_ranks_fronts():
    v = torch.tensor([[1.0, 1.0], [3.0, 0.0], [0.0, 3.0], [2.0, 2.0], [2.0, 2.0], [0.0, 0.0]])
    # front 1: [3, 0], the first [2, 2], [0, 3]; front 2: [1, 1] and the duplicate [2, 2]; then [0, 0]
    assert _pareto_order(v, np.ones(6, bool)).tolist() == [1, 3, 2, 4, 0, 5]
    assert _pareto_order(v, np.array([1, 0, 0, 0, 0, 1], bool)).tolist() == [0, 5]
