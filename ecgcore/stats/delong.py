"""DeLong's variance of the AUROC and test of two correlated AUROCs.

The fast algorithm of Sun & Xu (2014) obtains DeLong's structural components
from three midrank computations, O(n log n) per score vector, instead of the
O(n_pos * n_neg) pairwise comparison of the original paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri
from scipy.stats import norm, rankdata

from ._checks import EvaluationError, as_binary, as_float, check_same_length, require_both_classes

__all__ = ["delong_components", "delong_auc_ci", "delong_test", "DeLongTest"]


def delong_components(y_true, scores):
    """AUROCs and DeLong structural components of one or more score vectors.

    Parameters
    ----------
    y_true : array_like of shape (n,)
        Binary labels.
    scores : array_like of shape (n,) or (k, n)
        One score vector per row, all on the same cases.

    Returns
    -------
    auc : ndarray of shape (k,)
    v10 : ndarray of shape (k, n_pos)
        For each positive, the fraction of negatives it outscores (ties 1/2).
    v01 : ndarray of shape (k, n_neg)
        For each negative, the fraction of positives that outscore it.

    References
    ----------
    .. [1] DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or
       more correlated receiver operating characteristic curves: a nonparametric
       approach. Biometrics 1988;44:837-845.
    .. [2] Sun X, Xu W. Fast implementation of DeLong's algorithm for comparing the
       areas under correlated receiver operating characteristic curves. IEEE Signal
       Process Lett 2014;21:1389-1393.
    """
    y = as_binary(y_true)
    s = np.asarray(scores, dtype=np.float64)
    s = s[None, :] if s.ndim == 1 else s
    if s.ndim != 2 or s.shape[1] != y.size:
        raise EvaluationError(f"scores must have shape (n,) or (k, n) with n={y.size}, "
                              f"got {np.shape(scores)}")
    if not np.all(np.isfinite(s)):
        raise EvaluationError("scores contain NaN/inf")
    require_both_classes(y, "DeLong's AUROC variance")
    x, z = s[:, y], s[:, ~y]           # positives, negatives
    m, n = x.shape[1], z.shape[1]
    tx = rankdata(x, axis=1)           # midranks within positives
    tz = rankdata(z, axis=1)           # midranks within negatives
    t = rankdata(np.concatenate([x, z], axis=1), axis=1)   # midranks over all
    v10 = (t[:, :m] - tx) / n          # negatives below each positive (ties 1/2)
    v01 = 1.0 - (t[:, m:] - tz) / m    # positives above each negative
    auc = v10.mean(axis=1)
    return auc, v10, v01


def _cov(v10, v01):
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((v10.shape[0],) * 2)
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((v01.shape[0],) * 2)
    return s10 / m + s01 / n


def delong_auc_ci(y_true, y_score, level: float = 0.95, transform: str = "logit"):
    """AUROC with DeLong's standard error and a confidence interval.

    Parameters
    ----------
    y_true, y_score : array_like of shape (n,)
    level : float
    transform : {"logit", "none"}
        ``"logit"`` builds the interval on logit(AUC) so it stays in (0, 1)
        (Pepe 2003); ``"none"`` is the plain Wald interval, clipped to [0, 1].

    Returns
    -------
    dict
        ``auc, se, ci_low, ci_high, level, n_pos, n_neg``.
    """
    y = as_binary(y_true)
    p = as_float(y_score, "y_score")
    check_same_length(y_true=y, y_score=p)
    auc, v10, v01 = delong_components(y, p)
    a = float(auc[0])
    var = float(_cov(v10, v01)[0, 0])
    se = np.sqrt(max(var, 0.0))
    z = ndtri(0.5 + level / 2)
    if transform == "logit" and 0 < a < 1:
        c = np.log(a / (1 - a))
        h = z * se / (a * (1 - a))
        lo, hi = 1 / (1 + np.exp(-(c - h))), 1 / (1 + np.exp(-(c + h)))
    elif transform in ("logit", "none"):
        lo, hi = max(0.0, a - z * se), min(1.0, a + z * se)
    else:
        raise EvaluationError(f"unknown transform {transform!r}; use 'logit' or 'none'")
    return {"auc": a, "se": float(se), "ci_low": float(lo), "ci_high": float(hi),
            "level": level, "n_pos": int(v10.shape[1]), "n_neg": int(v01.shape[1])}


@dataclass
class DeLongTest:
    """Result of :func:`delong_test`: AUROCs, their difference, z and two-sided p."""
    auc1: float
    auc2: float
    diff: float
    se_diff: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    cov: np.ndarray

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["cov"] = self.cov.tolist()
        return d


def delong_test(y_true, score1, score2, level: float = 0.95) -> DeLongTest:
    """DeLong's test of two correlated (paired) AUROCs on the same cases.

    Parameters
    ----------
    y_true : array_like of shape (n,)
    score1, score2 : array_like of shape (n,)
        Two models' scores for the same cases.
    level : float
        Level of the interval of ``auc1 - auc2``.

    Returns
    -------
    DeLongTest
        ``p_value`` is two-sided. When the difference and its variance are both
        zero (e.g. identical or monotonically equivalent scores) p is 1.

    References
    ----------
    .. [1] DeLong ER, DeLong DM, Clarke-Pearson DL. Biometrics 1988;44:837-845.
    .. [2] Sun X, Xu W. IEEE Signal Process Lett 2014;21:1389-1393.
    """
    y = as_binary(y_true)
    a = as_float(score1, "score1")
    b = as_float(score2, "score2")
    check_same_length(y_true=y, score1=a, score2=b)
    auc, v10, v01 = delong_components(y, np.vstack([a, b]))
    S = _cov(v10, v01)
    diff = float(auc[0] - auc[1])
    var = float(S[0, 0] + S[1, 1] - 2 * S[0, 1])
    # the difference is a linear function of the components, so zero variance means
    # every component difference is constant; identical rankings give exactly 0/0
    scale = max(abs(S[0, 0]), abs(S[1, 1]), 1e-300)
    if var <= 1e-12 * scale or var <= 0:
        se = 0.0
        z = 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
        pval = 1.0 if diff == 0 else 0.0
    else:
        se = float(np.sqrt(var))
        z = diff / se
        pval = float(2 * norm.sf(abs(z)))
    zq = ndtri(0.5 + level / 2)
    return DeLongTest(float(auc[0]), float(auc[1]), diff, se, float(z), min(pval, 1.0),
                      float(diff - zq * se), float(diff + zq * se), S)
