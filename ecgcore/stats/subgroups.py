"""Metrics per subgroup with patient-level bootstrap CIs, as tidy rows."""

from __future__ import annotations

import numpy as np

from ._checks import EvaluationError
from .bootstrap import bootstrap_ci

__all__ = ["subgroup_table", "to_frame"]


def subgroup_table(metrics: dict, *arrays, subgroup, groups=None, n_boot: int = 1000, seed=0,
                   level: float = 0.95, include_all: bool = True, min_rows: int = 2,
                   subgroup_name: str = "subgroup") -> list:
    """Each metric in each subgroup, with a bootstrap CI.

    Parameters
    ----------
    metrics : dict of str -> callable
        Name to ``fn(*arrays) -> float`` (e.g. ``{"auroc": stats.auroc}`` or a
        ``functools.partial(stats.sensitivity, threshold=t)`` with ``t`` chosen
        on validation data).
    *arrays : array_like
        Row-aligned data passed to each metric (e.g. ``y_true, y_score``).
    subgroup : array_like of shape (n,)
        Subgroup label per row (e.g. sex, age band, "normal ECG").
    groups : array_like of shape (n,), optional
        Patient id per row for the cluster bootstrap.
    n_boot, seed, level :
        As in :func:`bootstrap_ci`; each cell uses the same seed.
    include_all : bool
        Add rows for the whole set (subgroup ``"all"``).
    min_rows : int
        Subgroups with fewer rows get NaN values instead of an error.

    Returns
    -------
    list of dict
        Rows ``{subgroup_name: label, "metric", "value", "ci_low", "ci_high",
        "n", "n_valid_boot"}``; see :func:`to_frame`.
    """
    sub = np.asarray(subgroup)
    arrs = [np.asarray(a) for a in arrays]
    if any(len(a) != len(sub) for a in arrs):
        raise EvaluationError("subgroup_table: subgroup and data arrays differ in length")
    gid = None if groups is None else np.asarray(groups)
    levels = [("all", np.ones(len(sub), bool))] if include_all else []
    levels += [(v.item() if hasattr(v, "item") else v, sub == v) for v in np.unique(sub)]
    rows = []
    for label, m in levels:
        n = int(m.sum())
        for name, fn in metrics.items():
            row = {subgroup_name: label, "metric": name, "value": np.nan, "ci_low": np.nan,
                   "ci_high": np.nan, "n": n, "n_valid_boot": 0}
            if n >= min_rows:
                try:
                    r = bootstrap_ci(fn, *(a[m] for a in arrs),
                                     groups=None if gid is None else gid[m],
                                     n_boot=n_boot, seed=seed, level=level)
                    row.update(value=r.estimate, ci_low=r.ci_low, ci_high=r.ci_high,
                               n_valid_boot=r.n_valid)
                except EvaluationError:     # e.g. one class in this subgroup
                    pass
            rows.append(row)
    return rows


def to_frame(rows):
    """Rows as a ``pandas.DataFrame`` (pandas is imported only here)."""
    import pandas as pd
    return pd.DataFrame(list(rows))
