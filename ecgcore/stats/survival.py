"""Risk stratification: Kaplan-Meier cumulative incidence and the log-rank test.

Cumulative incidence here is ``1 - S(t)`` from the Kaplan-Meier estimator,
i.e. one event type with censoring. (The CCTA analysis reported crude
proportions as "Kaplan-Meier", facts/ecgfounder_ccta.md §3.6; this is the real
estimator.) With competing risks (e.g. death before MI) ``1 - S`` overstates
incidence; an Aalen-Johansen estimator would be needed and is not provided.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtri
from scipy.stats import chi2

from ._checks import EvaluationError, as_float, check_same_length

__all__ = ["kaplan_meier", "KaplanMeier", "logrank_test", "LogRankTest", "risk_cut_points",
           "risk_groups", "incidence_by_group", "number_at_risk"]


def _te(time, event):
    t = as_float(time, "time")
    e = np.asarray(event)
    if e.dtype != bool:
        ef = as_float(e, "event")
        if not np.all(np.isin(ef, (0.0, 1.0))):
            raise EvaluationError("event must be 0/1 (1 = event, 0 = censored)")
        e = ef == 1.0
    check_same_length(time=t, event=e)
    if t.min() < 0:
        raise EvaluationError("times must be non-negative")
    return t, e


@dataclass
class KaplanMeier:
    """Kaplan-Meier estimate at each distinct observed time.

    Attributes
    ----------
    time : ndarray
        Distinct observed times (events and censorings), increasing.
    n_at_risk, n_events, n_censored : ndarray
    survival : ndarray
        S(t) just after each time.
    var_log : ndarray
        Greenwood's sum ``sum d / (n (n - d))`` (variance of log S).
    ci_low, ci_high : ndarray
        Pointwise CI of S(t) on the log(-log) scale (Kalbfleisch & Prentice);
        NaN where S is 0 or 1.
    level : float
    """
    time: np.ndarray
    n_at_risk: np.ndarray
    n_events: np.ndarray
    n_censored: np.ndarray
    survival: np.ndarray
    var_log: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    level: float = 0.95
    n: int = field(default=0)

    @property
    def cumulative_incidence(self) -> np.ndarray:
        """``1 - S(t)``."""
        return 1.0 - self.survival

    @property
    def incidence_ci(self):
        """(low, high) of ``1 - S(t)``."""
        return 1.0 - self.ci_high, 1.0 - self.ci_low

    @property
    def std_error(self) -> np.ndarray:
        """Greenwood standard error of S(t)."""
        return self.survival * np.sqrt(self.var_log)

    def at(self, t) -> np.ndarray:
        """S evaluated at times ``t`` (right-continuous step function; 1 before the first time)."""
        idx = np.searchsorted(self.time, np.asarray(t, float), side="right") - 1
        return np.where(idx >= 0, self.survival[np.clip(idx, 0, None)], 1.0)

    def incidence_at(self, t) -> dict:
        """Cumulative incidence and its CI at times ``t``."""
        idx = np.searchsorted(self.time, np.asarray(t, float), side="right") - 1
        ok = idx >= 0
        i = np.clip(idx, 0, None)
        lo, hi = self.incidence_ci
        return {"time": np.asarray(t, float), "incidence": np.where(ok, 1 - self.survival[i], 0.0),
                "ci_low": np.where(ok, lo[i], 0.0), "ci_high": np.where(ok, hi[i], 0.0)}


def kaplan_meier(time, event, level: float = 0.95) -> KaplanMeier:
    """Kaplan-Meier survival with Greenwood variance and log(-log) CIs.

    Parameters
    ----------
    time : array_like of shape (n,)
        Follow-up time (any unit, >= 0).
    event : array_like of shape (n,)
        1 (or True) for an event at ``time``, 0 for censoring at ``time``.
        Censorings tied with events are counted at risk at that time.
    level : float

    Returns
    -------
    KaplanMeier

    References
    ----------
    .. [1] Kaplan EL, Meier P. Nonparametric estimation from incomplete
       observations. J Am Stat Assoc 1958;53:457-481.
    .. [2] Greenwood M. The natural duration of cancer. Rep Public Health Med Subj
       1926;33:1-26.
    .. [3] Kalbfleisch JD, Prentice RL. The Statistical Analysis of Failure Time
       Data, 2nd ed. Wiley, 2002 (log(-log) intervals).
    """
    t, e = _te(time, event)
    ut, inv = np.unique(t, return_inverse=True)
    inv = inv.reshape(-1)
    d = np.bincount(inv, weights=e.astype(float), minlength=ut.size)
    c = np.bincount(inv, minlength=ut.size) - d
    n_risk = t.size - np.r_[0, np.cumsum(d + c)[:-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.cumprod(1.0 - d / n_risk)
        term = np.where(d > 0, d / (n_risk * (n_risk - d)), 0.0)   # inf when S drops to 0
        vlog = np.cumsum(term)
        z = ndtri(0.5 + level / 2)
        ls = np.log(s)
        ok = (s > 0) & (s < 1) & np.isfinite(vlog)
        half = np.where(ok, z * np.sqrt(vlog) / np.where(ok, ls, -1.0), np.nan)
        llog = np.log(-np.where(ok, ls, -1.0))
        # half < 0 (log S < 0): adding it lowers log(-log S), which raises S
        lo = np.where(ok, np.exp(-np.exp(llog - half)), np.nan)
        hi = np.where(ok, np.exp(-np.exp(llog + half)), np.nan)
    lo = np.where(s == 1, 1.0, lo)
    hi = np.where(s == 1, 1.0, hi)
    return KaplanMeier(ut, n_risk.astype(np.int64), d.astype(np.int64), c.astype(np.int64),
                       s, vlog, lo, hi, level, int(t.size))


def number_at_risk(time, times) -> np.ndarray:
    """Number still under observation (``time >= t``) at each of ``times``."""
    t = np.sort(as_float(time, "time"))
    return t.size - np.searchsorted(t, np.asarray(times, float), side="left")


@dataclass
class LogRankTest:
    """Result of :func:`logrank_test`."""
    statistic: float
    df: int
    p_value: float
    groups: list
    observed: np.ndarray
    expected: np.ndarray

    def as_dict(self) -> dict:
        return {"statistic": self.statistic, "df": self.df, "p_value": self.p_value,
                "groups": [str(g) for g in self.groups], "observed": self.observed.tolist(),
                "expected": self.expected.tolist()}


def logrank_test(time, event, group) -> LogRankTest:
    """Log-rank test of equal survival across k groups.

    Parameters
    ----------
    time, event : array_like of shape (n,)
    group : array_like of shape (n,)
        Group label of each subject (k >= 2 distinct values).

    Returns
    -------
    LogRankTest
        Chi-square statistic on k - 1 degrees of freedom and its p-value, with
        observed and expected event counts per group.

    Notes
    -----
    Uses the hypergeometric variance with the tie correction
    ``d (n - d) / (n - 1)`` (Mantel 1966), as most software does.

    References
    ----------
    .. [1] Mantel N. Evaluation of survival data and two new rank order statistics
       arising in its consideration. Cancer Chemother Rep 1966;50:163-170.
    .. [2] Peto R, Peto J. Asymptotically efficient rank invariant test procedures.
       J R Stat Soc A 1972;135:185-207.
    """
    t, e = _te(time, event)
    g = np.asarray(group)
    if g.ndim != 1 or g.size != t.size:
        raise EvaluationError(f"group must be 1-D with one label per subject ({t.size})")
    labels, gi = np.unique(g, return_inverse=True)
    gi = gi.reshape(-1)
    k = labels.size
    if k < 2:
        raise EvaluationError("the log-rank test needs at least 2 groups")
    et = np.unique(t[e])                       # distinct event times
    if et.size == 0:
        raise EvaluationError("the log-rank test needs at least one event")
    j = np.searchsorted(et, t)                 # event-time index of each subject's time
    # n_kj: subjects of group k with time >= et[j]; d_kj: events of group k at et[j]
    nk = np.empty((k, et.size))
    dk = np.zeros((k, et.size))
    for a in range(k):                         # k is small; the work inside is vectorised
        ta = np.sort(t[gi == a])
        nk[a] = ta.size - np.searchsorted(ta, et, side="left")
        sel = (gi == a) & e
        dk[a] = np.bincount(j[sel], minlength=et.size)
    n = nk.sum(0)
    d = dk.sum(0)
    E = (nk * (d / n)).sum(1)
    O = dk.sum(1)
    # hypergeometric covariance summed over event times: w_j [diag(f_j) - f_j f_j^T]
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(n > 1, d * (n - d) / np.where(n > 1, n - 1, 1), 0.0)
    frac = nk / n
    V = np.diag((frac * w).sum(1)) - (frac * w) @ frac.T
    diff = (O - E)[:-1]
    Vr = V[:-1, :-1]
    try:
        stat = float(diff @ np.linalg.solve(Vr, diff))
    except np.linalg.LinAlgError:
        stat = float(diff @ np.linalg.pinv(Vr) @ diff)
    df = k - 1
    return LogRankTest(stat, df, float(chi2.sf(stat, df)), labels.tolist(), O, E)


def risk_cut_points(p_val, n_groups: int = 3) -> np.ndarray:
    """Cut points at the quantiles of **validation** predictions (tertiles by default).

    Apply them to test predictions with :func:`risk_groups`.
    """
    p = as_float(p_val, "p_val")
    if n_groups < 2:
        raise EvaluationError("n_groups must be >= 2")
    if p.size == 0:
        raise EvaluationError("no validation prediction to cut into risk groups")
    cuts = np.quantile(p, np.linspace(0, 1, n_groups + 1)[1:-1])
    if np.unique(cuts).size < cuts.size:
        raise EvaluationError(f"validation predictions have too many ties for {n_groups} groups")
    return cuts


def risk_groups(p, cuts) -> np.ndarray:
    """Group index 0..len(cuts) of each prediction; group i is ``cuts[i-1] <= p < cuts[i]``."""
    c = np.asarray(cuts, float).reshape(-1)
    if c.size and np.any(np.diff(c) <= 0):
        raise EvaluationError("cut points must be strictly increasing")
    return np.searchsorted(c, as_float(p, "p"), side="right")


def incidence_by_group(time, event, p, cuts, horizons=None, level: float = 0.95) -> dict:
    """Kaplan-Meier cumulative incidence per predicted-risk group and a log-rank test.

    Parameters
    ----------
    time, event : array_like of shape (n,)
    p : array_like of shape (n,)
        Predicted risk of the (test) subjects.
    cuts : array_like
        Cut points chosen beforehand (e.g. :func:`risk_cut_points` on validation
        predictions, or clinical thresholds).
    horizons : array_like, optional
        Times at which incidence is tabulated.

    Returns
    -------
    dict
        ``groups`` (list of dicts with ``label, n, events, km`` and, with
        ``horizons``, ``incidence_at``), ``logrank`` (:class:`LogRankTest` or
        None when fewer than two non-empty groups), ``cuts``.
    """
    t, e = _te(time, event)
    g = risk_groups(p, cuts)
    check_same_length(time=t, p=g)
    c = np.asarray(cuts, float).reshape(-1)
    edges = np.r_[-np.inf, c, np.inf]
    out = []
    for i in range(c.size + 1):
        m = g == i
        row = {"group": i, "label": _range_label(edges[i], edges[i + 1]), "n": int(m.sum()),
               "events": int(e[m].sum())}
        if m.any():
            km = kaplan_meier(t[m], e[m], level=level)
            row["km"] = km
            if horizons is not None:
                row["incidence_at"] = km.incidence_at(horizons)
        out.append(row)
    present = np.unique(g)
    lr = logrank_test(t, e, g) if present.size >= 2 and e.any() else None
    return {"groups": out, "logrank": lr, "cuts": c}


def _range_label(lo, hi):
    f = (lambda v: f"{v:.3g}")
    if np.isinf(lo):
        return f"< {f(hi)}"
    if np.isinf(hi):
        return f">= {f(lo)}"
    return f"[{f(lo)}, {f(hi)})"
