"""Non-dominated (Pareto) rows of a table of objectives, all maximised: plain numpy, so that reports and
figures need no model library. The planner ranks candidates with it too."""

from __future__ import annotations

import numpy as np


def pareto_mask(values: np.ndarray, deduplicate: bool = False) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``n x m`` values, all maximised.

    A row is dominated when another is at least as good in every objective and better in one, so equal
    rows (ties, duplicates) are all kept, unless ``deduplicate``: then only the first of identical rows is
    (as BoTorch's ``is_non_dominated`` does by default). A row with a NaN is never optimal and dominates
    nothing. A 1-D input is one objective.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        v = v[:, None]
    mask = ~np.isnan(v).any(axis=1)
    # a row still in the mask removes the rows it dominates; dominance is transitive, so every dominated
    # row is removed by some non-dominated one, and only rows still in the mask cost any work: O(n m) memory
    for i in np.flatnonzero(mask):
        if not mask[i]:
            continue
        mask &= ~((v[i] >= v).all(axis=1) & (v[i] > v).any(axis=1))
        if deduplicate:
            later = (v == v[i]).all(axis=1)
            later[: i + 1] = False
            mask &= ~later
    return mask
