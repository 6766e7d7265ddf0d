"""Fit logistic risk models on one split, score all rows, evaluate on test rows with ecgcore.stats.

A *study table* is a pandas DataFrame with one row per record: features,
the outcome, a ``split`` column (``train`` / ``val`` / ``test``) and
optionally a patient id. Models are fitted on the rows of ``fit_on``;
decision thresholds are chosen on ``val`` rows; every reported metric is
computed on ``test`` rows (``ecgcore.stats.evaluate_predictions``), with
patient-level bootstrap CIs and DeLong tests for paired comparisons on
exactly the same test cases.
"""

from __future__ import annotations

import numpy as np

from ecgcore.stats import EvaluationError

from .logistic import RiskModel

__all__ = ["fit_and_score", "evaluate_scores"]


def _split(table, split_col):
    if split_col not in table.columns:
        raise EvaluationError(f"table has no split column {split_col!r}")
    return table[split_col].astype(str).str.lower().to_numpy()


def _binary_outcome(table, outcome: str) -> np.ndarray:
    """The outcome column as float 0/1 with NaN where missing; EvaluationError naming the column and
    a few offending values when it holds anything else (text such as 'yes', a split name, a 2)."""
    import pandas as pd
    col = table[outcome]
    y = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    bad = (np.isnan(y) & col.notna().to_numpy()) | (np.isfinite(y) & ~np.isin(y, (0.0, 1.0)))
    if bad.any():
        seen = list(dict.fromkeys(str(v) for v in col[bad]))[:3]
        raise EvaluationError(f"outcome column {outcome!r} must hold 0/1 (empty = unknown); found "
                              f"{', '.join(repr(v) for v in seen)} in {int(bad.sum())} row(s)")
    return y


def fit_and_score(table, outcome: str, features, *, fit_on=("train",), split_col: str = "split",
                  **model_kw):
    """Fit a :class:`RiskModel` on the ``fit_on`` rows; return ``(model, probabilities for all rows)``."""
    if outcome not in table.columns:
        raise EvaluationError(f"table has no outcome column {outcome!r}")
    s = _split(table, split_col)
    rows = np.isin(s, [str(f).lower() for f in fit_on])
    if not rows.any():
        raise EvaluationError(f"no rows with {split_col} in {list(fit_on)} to fit on")
    if "test" in [str(f).lower() for f in fit_on]:
        raise EvaluationError("fit_on must not include the test split (the reported metrics would be "
                              "in-sample)")
    y = _binary_outcome(table, outcome)
    model = RiskModel(features, **model_kw).fit(table.iloc[np.flatnonzero(rows)], y[rows])
    return model, model.predict_proba(table)


def evaluate_scores(table, outcome: str, scores, *, reference: str | None = None,
                    split_col: str = "split", groups: str | None = None, subgroups=(),
                    n_boot: int = 2000, seed: int = 0, out_dir=None, figures: bool = False,
                    threshold_rule: str = "youden", decision_thresholds=None) -> dict:
    """Evaluate score columns against a binary outcome on the **same** test cases.

    Rows whose outcome or any score is missing are dropped first (from
    validation and test alike), so AUROCs and the DeLong tests of every score
    against ``reference`` use identical cases; the number dropped is reported.

    Parameters
    ----------
    scores : dict name -> column, or list of columns
    reference : str, optional
        Name of the score the others are compared with (DeLong, paired).
    decision_thresholds : sequence of float, optional
        Threshold probabilities at which net benefit (and treat-all) is
        reported per score (decision-curve analysis, ``ecgcore.stats.decision``).

    Returns
    -------
    dict
        ``ecgcore.stats.evaluate_predictions`` output (metrics per score,
        ``delong`` entries under each compared score) plus ``n_common_test``
        and ``n_dropped``.
    """
    from ecgcore import stats
    if isinstance(scores, (list, tuple)):
        scores = {c: c for c in scores}
    if reference is not None and reference not in scores:
        raise EvaluationError(f"reference {reference!r} is not one of the scores {list(scores)}")
    cols = [outcome] + list(scores.values())
    for c in cols:
        if c not in table.columns:
            raise EvaluationError(f"table has no column {c!r}")
    s = _split(table, split_col)
    keep = np.isin(s, ("val", "test"))
    for c in cols:
        keep &= np.isfinite(table[c].to_numpy(dtype=np.float64))
    t = table.iloc[np.flatnonzero(keep)]
    data = {split_col: s[keep], outcome: t[outcome].to_numpy(np.float64)}
    for c in scores.values():
        data[c] = t[c].to_numpy(np.float64)
    if groups is not None:
        data[groups] = t[groups].astype(str).to_numpy()
    for sg in subgroups:
        data[sg] = t[sg].astype(str).to_numpy()
    specs = []
    for name, c in scores.items():
        spec = {"name": name, "type": "binary", "y": outcome, "p": c, "threshold_rule": threshold_rule}
        if decision_thresholds:
            spec["decision_thresholds"] = [float(v) for v in decision_thresholds]
        if reference is not None and name != reference:
            spec["compare_to"] = [scores[reference]]
        specs.append(spec)
    res = stats.evaluate_predictions(data, specs, groups=groups, out_dir=out_dir, split=split_col,
                                     subgroups=list(subgroups), n_boot=n_boot, seed=seed, figures=figures)
    res.pop("rows", None)
    res["n_common_test"] = int(np.sum(s[keep] == "test"))
    res["n_dropped"] = {"test": int(np.sum((s == "test") & ~keep)), "val": int(np.sum((s == "val") & ~keep))}
    return res
