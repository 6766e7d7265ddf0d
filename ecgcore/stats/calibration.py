"""Calibration of predicted probabilities: curve, slope/intercept, ECE."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from ._checks import EvaluationError, as_binary, as_float, check_same_length, require_both_classes

__all__ = ["calibration_curve", "calibration_slope_intercept", "expected_calibration_error"]


def _yp(y_true, y_prob):
    y = as_binary(y_true)
    p = as_float(y_prob, "y_prob")
    check_same_length(y_true=y, y_prob=p)
    if p.min() < 0 or p.max() > 1:
        raise EvaluationError("calibration needs probabilities in [0, 1]")
    return y, p


def _bins(p, n_bins, strategy):
    if n_bins < 1:
        raise EvaluationError(f"n_bins must be >= 1, got {n_bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
        if edges.size < 2:            # constant predictions: one bin
            edges = np.array([p[0], p[0]])
    else:
        raise EvaluationError(f"unknown binning strategy {strategy!r}; use 'uniform' or 'quantile'")
    # right-closed last bin so the maximum falls in it
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(edges.size - 2, 0))
    return edges, idx


def calibration_curve(y_true, y_prob, n_bins: int = 10, strategy: str = "quantile") -> dict:
    """Observed event fraction against mean predicted probability per bin.

    Parameters
    ----------
    y_true : array_like of shape (n,)
    y_prob : array_like of shape (n,)
        Probabilities in [0, 1].
    n_bins : int
    strategy : {"quantile", "uniform"}
        Equal-count bins (quantiles of ``y_prob``; ties may merge bins) or
        equal-width bins on [0, 1].

    Returns
    -------
    dict of ndarray
        ``mean_predicted``, ``observed``, ``count`` (empty bins are dropped) and
        ``edges``.
    """
    y, p = _yp(y_true, y_prob)
    edges, idx = _bins(p, int(n_bins), strategy)
    k = max(edges.size - 1, 1)
    cnt = np.bincount(idx, minlength=k)
    sp = np.bincount(idx, weights=p, minlength=k)
    sy = np.bincount(idx, weights=y.astype(float), minlength=k)
    keep = cnt > 0
    return {"mean_predicted": sp[keep] / cnt[keep], "observed": sy[keep] / cnt[keep],
            "count": cnt[keep], "edges": edges}


def expected_calibration_error(y_true, y_prob, n_bins: int = 10, strategy: str = "uniform") -> float:
    """Expected calibration error: the count-weighted mean |observed - predicted|.

    References
    ----------
    .. [1] Naeini MP, Cooper GF, Hauskrecht M. Obtaining well calibrated probabilities
       using Bayesian binning. AAAI 2015:2901-2907.
    """
    c = calibration_curve(y_true, y_prob, n_bins=n_bins, strategy=strategy)
    return float(np.sum(c["count"] * np.abs(c["observed"] - c["mean_predicted"])) / c["count"].sum())


def _logistic_fit(x, y, offset, fit_slope: bool, max_iter: int = 100):
    """Newton-Raphson maximum likelihood of y ~ a + b*x + offset; returns (a, b)."""
    X = np.column_stack([np.ones_like(x), x]) if fit_slope else np.ones((x.size, 1))
    beta = np.zeros(X.shape[1])
    for _ in range(max_iter):
        mu = expit(X @ beta + offset)
        w = mu * (1 - mu)
        grad = X.T @ (y - mu)
        H = (X * w[:, None]).T @ X
        try:
            step = np.linalg.solve(H, grad)
        except np.linalg.LinAlgError:
            raise EvaluationError("calibration fit is singular (constant predictions?)") from None
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    if not np.all(np.isfinite(beta)):
        raise EvaluationError("calibration fit diverged (perfect separation?)")
    return (beta[0], beta[1]) if fit_slope else (beta[0], 1.0)


def calibration_slope_intercept(y_true, y_prob, eps: float = 1e-12) -> dict:
    """Calibration slope and intercept by logistic recalibration.

    The slope is ``b`` of ``logit P(y=1) = a + b * logit(p)`` (1 is ideal; < 1
    means predictions are too extreme). The intercept reported is
    calibration-in-the-large: ``a`` of ``logit P(y=1) = a + logit(p)`` with the
    slope fixed at 1 (0 is ideal; > 0 means risks are underestimated).

    Parameters
    ----------
    y_true, y_prob : array_like of shape (n,)
    eps : float
        Probabilities are clipped to [eps, 1 - eps] before the logit.

    Returns
    -------
    dict
        ``slope``, ``intercept`` (calibration-in-the-large), and
        ``intercept_joint`` (``a`` of the two-parameter fit).

    References
    ----------
    .. [1] Cox DR. Two further applications of a model for binary regression.
       Biometrika 1958;45:562-565.
    .. [2] Van Calster B et al. Calibration: the Achilles heel of predictive
       analytics. BMC Med 2019;17:230.
    """
    y, p = _yp(y_true, y_prob)
    require_both_classes(y, "calibration slope")
    q = np.clip(p, eps, 1 - eps)
    lp = np.log(q / (1 - q))
    yf = y.astype(float)
    a_joint, slope = _logistic_fit(lp, yf, np.zeros_like(lp), fit_slope=True)
    citl, _ = _logistic_fit(lp, yf, lp, fit_slope=False)
    return {"slope": float(slope), "intercept": float(citl), "intercept_joint": float(a_joint)}
