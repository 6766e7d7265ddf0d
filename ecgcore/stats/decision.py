"""Decision-curve analysis: net benefit against the threshold probability (Vickers & Elkin 2006).

A patient is treated (referred, imaged, ...) when the predicted risk is at or
above the threshold probability ``pt``. Choosing ``pt`` states how many false
positives one true positive is worth: the odds ``pt / (1 - pt)``. Then

* net benefit of the model      ``NB(pt) = TP/n - FP/n * pt / (1 - pt)``;
* treat all                     ``NB_all(pt) = prev - (1 - prev) * pt / (1 - pt)``;
* treat none                    ``0``;

with ``n`` all cases and ``prev`` the outcome prevalence (the formulas the CCTA
analysis used, facts/ecgfounder_ccta.md §2.6). A model is useful at ``pt``
where its curve lies above both references. The standardised net benefit
``NB / prev`` (the fraction of the maximum achievable benefit) is also
returned.

Only meaningful for calibrated probabilities: a score that is not a
probability has no threshold probability.
"""

from __future__ import annotations

import numpy as np

from ._checks import EvaluationError, as_binary, as_float, check_same_length

__all__ = ["net_benefit", "treat_all_net_benefit", "decision_curve"]


def _thresholds(thresholds):
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if t.size == 0:
        raise EvaluationError("thresholds: need at least one threshold probability")
    if not np.all((t > 0) & (t < 1)):
        raise EvaluationError(f"thresholds must lie strictly between 0 and 1 (threshold probabilities), "
                              f"got range [{t.min():g}, {t.max():g}]")
    return t


def _yp(y_true, y_prob):
    y = as_binary(y_true)
    p = as_float(y_prob, "y_prob")
    check_same_length(y_true=y, y_prob=p)
    if p.min() < 0 or p.max() > 1:
        raise EvaluationError(f"y_prob must be probabilities in [0, 1] for a decision curve, got range "
                              f"[{p.min():g}, {p.max():g}]")
    return y, p


def net_benefit(y_true, y_prob, thresholds) -> np.ndarray:
    """Net benefit of treating when ``y_prob >= pt``, for each threshold probability ``pt``.

    Parameters
    ----------
    y_true : array_like of 0/1
    y_prob : array_like of float in [0, 1]
        Predicted risk.
    thresholds : float or array_like of float in (0, 1)

    Returns
    -------
    ndarray
        ``TP/n - FP/n * pt/(1 - pt)`` per threshold (in units of true positives per patient).
    """
    y, p = _yp(y_true, y_prob)
    t = _thresholds(thresholds)
    n = y.size
    # counts of cases at or above each threshold, by sorting once (n log n + m log n)
    pos = np.sort(p[y])
    neg = np.sort(p[~y])
    tp = pos.size - np.searchsorted(pos, t, side="left")
    fp = neg.size - np.searchsorted(neg, t, side="left")
    return tp / n - fp / n * (t / (1.0 - t))


def treat_all_net_benefit(prevalence, thresholds) -> np.ndarray:
    """Net benefit of treating everyone: ``prev - (1 - prev) * pt / (1 - pt)``."""
    prev = float(prevalence)
    if not 0.0 <= prev <= 1.0:
        raise EvaluationError(f"prevalence must be in [0, 1], got {prev}")
    t = _thresholds(thresholds)
    return prev - (1.0 - prev) * (t / (1.0 - t))


def decision_curve(y_true, y_prob, thresholds=None) -> dict:
    """Decision curve of one model with the treat-all and treat-none references.

    Parameters
    ----------
    y_true, y_prob : array_like
        Outcome (0/1) and predicted risk in [0, 1].
    thresholds : array_like, optional
        Threshold probabilities; default 0.01, 0.02, ..., 0.99.

    Returns
    -------
    dict
        ``threshold``, ``net_benefit``, ``treat_all``, ``treat_none`` (zeros),
        ``standardized_net_benefit`` (``net_benefit / prevalence``; NaN when
        there are no positives), ``prevalence``, ``n``, and
        ``useful`` (bool per threshold: the model beats both references).
    """
    y, p = _yp(y_true, y_prob)
    t = _thresholds(np.round(np.arange(1, 100) / 100.0, 2) if thresholds is None else thresholds)
    prev = float(y.mean())
    nb = net_benefit(y, p, t)
    ta = treat_all_net_benefit(prev, t)
    snb = nb / prev if prev > 0 else np.full_like(nb, np.nan)
    return {"threshold": t, "net_benefit": nb, "treat_all": ta, "treat_none": np.zeros_like(t),
            "standardized_net_benefit": snb, "prevalence": prev, "n": int(y.size),
            "useful": (nb > ta) & (nb > 0)}
