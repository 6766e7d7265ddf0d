"""Regression metrics and agreement: MAE, RMSE, R², Pearson, Spearman, Bland-Altman.

Argument order follows scikit-learn: ``(y_true, y_pred)``. Errors are
``y_pred - y_true``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _st

from ._checks import EvaluationError, as_float, check_same_length

__all__ = ["mae", "rmse", "mean_error", "r2", "pearson", "spearman", "bland_altman",
           "regression_metrics", "pearson_r", "spearman_rho"]


def _batched(batched_fn):
    def deco(fn):
        fn.batched = batched_fn
        return fn
    return deco


def _tp(y_true, y_pred):
    t = as_float(y_true, "y_true")
    p = as_float(y_pred, "y_pred")
    check_same_length(y_true=t, y_pred=p)
    return t, p


def _wmean(W, x):
    return (W @ x) / W.sum(1)


@_batched(lambda t, p, W: _wmean(W, np.abs(np.asarray(p, float) - np.asarray(t, float))))
def mae(y_true, y_pred) -> float:
    """Mean absolute error, in the units of the target."""
    t, p = _tp(y_true, y_pred)
    return float(np.mean(np.abs(p - t)))


@_batched(lambda t, p, W: np.sqrt(_wmean(W, (np.asarray(p, float) - np.asarray(t, float)) ** 2)))
def rmse(y_true, y_pred) -> float:
    """Root mean squared error, in the units of the target."""
    t, p = _tp(y_true, y_pred)
    return float(np.sqrt(np.mean((p - t) ** 2)))


@_batched(lambda t, p, W: _wmean(W, np.asarray(p, float) - np.asarray(t, float)))
def mean_error(y_true, y_pred) -> float:
    """Mean signed error (bias) ``mean(y_pred - y_true)``."""
    t, p = _tp(y_true, y_pred)
    return float(np.mean(p - t))


def _r2_b(t, p, W):
    t = np.asarray(t, float)
    p = np.asarray(p, float)
    sw = W.sum(1)
    mt = (W @ t) / sw
    ss_res = W @ ((p - t) ** 2)
    ss_tot = W @ (t ** 2) - sw * mt ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 1e-300, 1 - ss_res / ss_tot, np.nan)


@_batched(_r2_b)
def r2(y_true, y_pred) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (scikit-learn's ``r2_score``).

    It can be negative (worse than predicting the mean); it is not the square
    of Pearson's r unless the predictions are recalibrated. NaN for a constant
    ``y_true``.
    """
    t, p = _tp(y_true, y_pred)
    ss_tot = np.sum((t - t.mean()) ** 2)
    if ss_tot == 0:
        return float("nan")
    return float(1 - np.sum((p - t) ** 2) / ss_tot)


def _pearson_b(t, p, W):
    t = np.asarray(t, float)
    p = np.asarray(p, float)
    # centre once so the weighted moments do not cancel catastrophically
    t = t - t.mean()
    p = p - p.mean()
    sw = W.sum(1)
    mt, mp = (W @ t) / sw, (W @ p) / sw
    ctp = (W @ (t * p)) / sw - mt * mp
    ctt = (W @ (t * t)) / sw - mt ** 2
    cpp = (W @ (p * p)) / sw - mp ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.sqrt(ctt * cpp)
        return np.where(den > 0, ctp / np.where(den > 0, den, 1), np.nan)


def pearson(y_true, y_pred) -> tuple:
    """Pearson correlation and its two-sided p-value (``scipy.stats.pearsonr``).

    Returns
    -------
    (r, p_value) : tuple of float
    """
    t, p = _tp(y_true, y_pred)
    if t.size < 3 or np.ptp(t) == 0 or np.ptp(p) == 0:
        return float("nan"), float("nan")
    res = _st.pearsonr(t, p)
    return float(res.statistic), float(res.pvalue)


def spearman(y_true, y_pred) -> tuple:
    """Spearman rank correlation (midranks for ties) and its p-value (``scipy.stats.spearmanr``)."""
    t, p = _tp(y_true, y_pred)
    if t.size < 3 or np.ptp(t) == 0 or np.ptp(p) == 0:
        return float("nan"), float("nan")
    res = _st.spearmanr(t, p)
    return float(res.statistic), float(res.pvalue)


@_batched(_pearson_b)
def pearson_r(y_true, y_pred) -> float:
    """Pearson's r alone (for :func:`ecgcore.stats.bootstrap_ci`)."""
    return pearson(y_true, y_pred)[0]


def spearman_rho(y_true, y_pred) -> float:
    """Spearman's rho alone (for :func:`ecgcore.stats.bootstrap_ci`)."""
    return spearman(y_true, y_pred)[0]


def bland_altman(y_true, y_pred, level: float = 0.95, ci_level: float = 0.95) -> dict:
    """Bland-Altman agreement: bias and limits of agreement with their CIs.

    Differences are ``y_pred - y_true``; means are ``(y_pred + y_true) / 2``.

    Parameters
    ----------
    y_true, y_pred : array_like of shape (n,)
    level : float
        Coverage of the limits of agreement (0.95 gives bias ± 1.96 SD).
    ci_level : float
        Confidence level of the intervals around the bias and each limit.

    Returns
    -------
    dict
        ``bias, sd, loa_low, loa_high`` and intervals ``bias_ci``,
        ``loa_low_ci``, ``loa_high_ci`` (each ``[low, high]``), ``n``, plus the
        arrays ``mean`` and ``diff`` for plotting.

    Notes
    -----
    The CIs use the approximate standard errors of Bland & Altman (1986):
    ``SE(bias) = s / sqrt(n)`` and ``SE(limit) = s * sqrt(3 / n)``, with
    Student t quantiles on n - 1 degrees of freedom. Repeated measurements of
    one patient are treated as independent; use :func:`bootstrap_ci` with
    ``groups`` for patient-level intervals.

    References
    ----------
    .. [1] Bland JM, Altman DG. Statistical methods for assessing agreement between
       two methods of clinical measurement. Lancet 1986;1:307-310.
    """
    t, p = _tp(y_true, y_pred)
    n = t.size
    if n < 2:
        raise EvaluationError("Bland-Altman needs at least 2 pairs")
    d = p - t
    bias = float(d.mean())
    sd = float(d.std(ddof=1))
    z = float(_st.norm.ppf(0.5 + level / 2))
    tq = float(_st.t.ppf(0.5 + ci_level / 2, n - 1))
    lo, hi = bias - z * sd, bias + z * sd
    se_b = sd / np.sqrt(n)
    se_l = sd * np.sqrt(3.0 / n)
    return {"n": n, "bias": bias, "sd": sd, "loa_low": lo, "loa_high": hi,
            "bias_ci": [bias - tq * se_b, bias + tq * se_b],
            "loa_low_ci": [lo - tq * se_l, lo + tq * se_l],
            "loa_high_ci": [hi - tq * se_l, hi + tq * se_l],
            "mean": (p + t) / 2, "diff": d}


def regression_metrics(y_true, y_pred) -> dict:
    """All point metrics at once: ``n, mae, rmse, mean_error, r2, pearson_r,
    pearson_p, spearman_rho, spearman_p``."""
    t, p = _tp(y_true, y_pred)
    r, rp = pearson(t, p)
    s, sp = spearman(t, p)
    return {"n": int(t.size), "mae": mae(t, p), "rmse": rmse(t, p), "mean_error": mean_error(t, p),
            "r2": r2(t, p), "pearson_r": r, "pearson_p": rp, "spearman_rho": s, "spearman_p": sp}
