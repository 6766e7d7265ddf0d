"""Binary classification metrics: AUROC, AUPRC, curves, metrics at a threshold.

Thresholds are chosen on validation data and applied to test data. The API
makes the usual mistake (picking a Youden threshold on the set it is scored
on, facts/lvh.md §9.11, facts/ecgfounder_ccta.md §1.7) hard to make by
accident: :func:`choose_threshold` returns a :class:`Threshold` that remembers
a fingerprint of the data it was chosen on, and :func:`binary_metrics` refuses
to score those same data unless asked for a labelled *oracle* number.

Conventions
-----------
* ``y_true`` is binary (0/1 or bool), ``y_score`` any score where larger means
  more likely positive (probability, logit, risk).
* A case is called positive when ``y_score >= threshold``.

Every metric here has a weighted, batched twin (``fn.batched``) that
:func:`ecgcore.stats.bootstrap_ci` uses to evaluate thousands of bootstrap
resamples as one matrix operation; the twins give the same numbers as calling
the metric on the resampled rows.
"""

from __future__ import annotations

import hashlib

import numpy as np
from scipy.stats import rankdata

from ._checks import (EvaluationError, as_binary, as_scores, check_same_length,
                      require_both_classes)

__all__ = ["auroc", "auprc", "average_precision", "roc_curve", "pr_curve", "brier_score",
           "binary_metrics", "choose_threshold", "Threshold", "confusion_counts",
           "sensitivity", "specificity", "ppv", "npv", "f1_score", "threshold_sweep",
           "THRESHOLD_RULES"]

THRESHOLD_RULES = ("youden", "sensitivity", "specificity", "f1")


def _batched(batched_fn):
    """Attach the weighted batched twin used by the bootstrap."""
    def deco(fn):
        fn.batched = batched_fn
        return fn
    return deco


def _yp(y_true, y_score):
    y = as_binary(y_true)
    p = as_scores(y_score)
    check_same_length(y_true=y, y_score=p)
    return y, p


# --------------------------------------------------------------------------- AUROC
def _tie_groups(p: np.ndarray, descending: bool):
    """Sort order and start index of each run of equal scores."""
    order = np.argsort(-p if descending else p, kind="stable")
    ps = p[order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    return order, starts


def _auroc_batched(y, p, W):
    """AUROC for each row of weights ``W`` (B, n): the weighted Mann-Whitney U."""
    y = as_binary(y)
    order, starts = _tie_groups(np.asarray(p, float), descending=False)
    Ws = W[:, order]
    yo = y[order]
    wp = np.add.reduceat(Ws * yo, starts, axis=1)        # positive weight per tie group
    wn = np.add.reduceat(Ws * ~yo, starts, axis=1)       # negative weight per tie group
    below = np.cumsum(wn, axis=1) - wn                   # negatives strictly below
    u = np.sum(wp * (below + 0.5 * wn), axis=1)          # ties count one half (Mann-Whitney)
    den = wp.sum(1) * wn.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, u / np.where(den > 0, den, 1), np.nan)


@_batched(_auroc_batched)
def auroc(y_true, y_score) -> float:
    """Area under the ROC curve, with ties counted as one half.

    Equals the Mann-Whitney U statistic divided by ``n_pos * n_neg``, i.e. the
    probability that a random positive scores above a random negative, plus
    half the probability of a tie. Computed from midranks in O(n log n).

    Parameters
    ----------
    y_true : array_like of shape (n,)
        Binary labels.
    y_score : array_like of shape (n,)
        Scores; larger means more likely positive.

    Returns
    -------
    float
        AUROC in [0, 1].

    Raises
    ------
    EvaluationError
        If only one class is present or the inputs are malformed.

    References
    ----------
    .. [1] Hanley JA, McNeil BJ. The meaning and use of the area under a receiver
       operating characteristic (ROC) curve. Radiology 1982;143:29-36.
    .. [2] Mann HB, Whitney DR. On a test of whether one of two random variables is
       stochastically larger than the other. Ann Math Stat 1947;18:50-60.
    """
    y, p = _yp(y_true, y_score)
    require_both_classes(y, "AUROC")
    n1 = int(y.sum())
    n0 = y.size - n1
    r = rankdata(p, method="average")
    return float((r[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


# --------------------------------------------------------------------------- curves
def _cum_counts(y, p, w=None):
    """Cumulative TP and FP counts at each distinct threshold, scores descending."""
    order, starts = _tie_groups(p, descending=True)
    w = np.ones(y.size) if w is None else w
    tp = np.cumsum(np.add.reduceat(w[order] * y[order], starts))
    fp = np.cumsum(np.add.reduceat(w[order] * ~y[order], starts))
    return tp, fp, p[order][starts]


def roc_curve(y_true, y_score):
    """ROC curve at every distinct score.

    Returns
    -------
    fpr, tpr : ndarray
        False and true positive rates, starting at (0, 0) and ending at (1, 1).
    thresholds : ndarray
        Decreasing; ``thresholds[i]`` gives ``(fpr[i], tpr[i])`` with the rule
        ``y_score >= threshold``. The first is ``+inf`` (nothing positive).

    Notes
    -----
    All distinct scores are kept (scikit-learn's ``drop_intermediate=False``).
    """
    y, p = _yp(y_true, y_score)
    require_both_classes(y, "the ROC curve")
    tp, fp, thr = _cum_counts(y, p)
    tpr = np.r_[0.0, tp / tp[-1]]
    fpr = np.r_[0.0, fp / fp[-1]]
    return fpr, tpr, np.r_[np.inf, thr]


def pr_curve(y_true, y_score):
    """Precision-recall curve at every distinct score.

    Returns
    -------
    precision, recall : ndarray
        In order of *decreasing* threshold; the first point is (precision 1,
        recall 0) by convention (as scikit-learn), not an observed point.
    thresholds : ndarray
        Decreasing, one fewer than the points (``+inf`` is not listed).
    """
    y, p = _yp(y_true, y_score)
    if not y.any():
        raise EvaluationError("the PR curve is undefined without positives")
    tp, fp, thr = _cum_counts(y, p)
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return np.r_[1.0, precision], np.r_[0.0, recall], thr


def _ap_batched(y, p, W):
    y = as_binary(y)
    order, starts = _tie_groups(np.asarray(p, float), descending=True)
    Ws = W[:, order]
    yo = y[order]
    wp = np.add.reduceat(Ws * yo, starts, axis=1)
    wn = np.add.reduceat(Ws * ~yo, starts, axis=1)
    tp = np.cumsum(wp, 1)
    fp = np.cumsum(wn, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        P = tp[:, -1]
        return np.where(P > 0, np.sum(wp * prec, 1) / np.where(P > 0, P, 1), np.nan)


@_batched(_ap_batched)
def average_precision(y_true, y_score) -> float:
    """Average precision (AUPRC) as scikit-learn defines it.

    ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct thresholds in
    decreasing order: a step-function integral with no interpolation, which is
    what ``sklearn.metrics.average_precision_score`` computes.

    Parameters
    ----------
    y_true, y_score : array_like of shape (n,)

    Returns
    -------
    float

    References
    ----------
    .. [1] Zhu M. Recall, precision and average precision. University of Waterloo,
       2004.
    .. [2] Saito T, Rehmsmeier M. The precision-recall plot is more informative than
       the ROC plot when evaluating binary classifiers on imbalanced datasets.
       PLoS One 2015;10:e0118432.
    """
    y, p = _yp(y_true, y_score)
    if not y.any():
        raise EvaluationError("average precision is undefined without positives")
    tp, fp, _ = _cum_counts(y, p)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * (tp / (tp + fp))))


auprc = average_precision


def _brier_batched(y, p, W):
    e = (np.asarray(p, float) - as_binary(y)) ** 2
    return (W @ e) / W.sum(1)


@_batched(_brier_batched)
def brier_score(y_true, y_prob) -> float:
    """Brier score: the mean squared difference between probability and outcome.

    Parameters
    ----------
    y_true : array_like of shape (n,)
        Binary labels.
    y_prob : array_like of shape (n,)
        Predicted probabilities in [0, 1].

    References
    ----------
    .. [1] Brier GW. Verification of forecasts expressed in terms of probability.
       Mon Weather Rev 1950;78:1-3.
    """
    y, p = _yp(y_true, y_prob)
    if p.min() < 0 or p.max() > 1:
        raise EvaluationError("Brier score needs probabilities in [0, 1]")
    return float(np.mean((p - y) ** 2))


# --------------------------------------------------------------------------- thresholds
class Threshold(float):
    """A decision threshold that remembers how and on what it was chosen.

    It behaves as a float. ``rule``, ``target`` and ``n`` describe the choice;
    ``fingerprint`` identifies the validation data so that
    :func:`binary_metrics` can refuse to report it on those same data as if it
    were a test result.
    """

    def __new__(cls, value, rule="given", target=None, n=0, fingerprint=None):
        self = super().__new__(cls, value)
        self.rule = rule
        self.target = target
        self.n = n
        self.fingerprint = fingerprint
        return self

    def __reduce__(self):
        return (Threshold, (float(self), self.rule, self.target, self.n, self.fingerprint))

    def __repr__(self):
        return f"Threshold({float(self)!r}, rule={self.rule!r}, target={self.target!r}, n={self.n})"


def _fingerprint(y, p) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(y, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(p, dtype=np.float64).tobytes())
    return h.hexdigest()


def threshold_sweep(y_true, y_score):
    """Sensitivity, specificity, PPV and F1 at every distinct score (as threshold).

    Returns
    -------
    dict of ndarray
        ``threshold`` (decreasing, first ``+inf``), ``sensitivity``,
        ``specificity``, ``ppv`` (NaN where nothing is called positive), ``f1``.
    """
    y, p = _yp(y_true, y_score)
    tp, fp, thr = _cum_counts(y, p)
    tp = np.r_[0.0, tp]
    fp = np.r_[0.0, fp]
    P, N = tp[-1], fp[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = tp / P if P else np.full(tp.shape, np.nan)
        spec = 1 - fp / N if N else np.full(tp.shape, np.nan)
        ppv_ = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        f1 = np.where(P + tp + fp > 0, 2 * tp / (P + tp + fp), np.nan)
    return {"threshold": np.r_[np.inf, thr], "sensitivity": sens, "specificity": spec,
            "ppv": ppv_, "f1": f1}


def choose_threshold(y_val, p_val, rule: str = "youden", target: float | None = None) -> Threshold:
    """Choose a decision threshold on **validation** data.

    Apply the result to test data with :func:`binary_metrics`; do not choose
    it on the data it is reported on (that makes sensitivity and specificity
    optimistic).

    Parameters
    ----------
    y_val, p_val : array_like of shape (n,)
        Validation labels and scores.
    rule : {"youden", "sensitivity", "specificity", "f1"}
        * ``"youden"``: maximise ``sensitivity + specificity - 1`` (argmax of
          ``tpr - fpr``; the highest such threshold on ties, as the first
          maximum of scikit-learn's ROC).
        * ``"sensitivity"``: the highest threshold whose sensitivity is at
          least ``target`` (the most specific one).
        * ``"specificity"``: the lowest threshold whose specificity is at
          least ``target`` (the most sensitive one).
        * ``"f1"``: maximise F1 (highest threshold on ties).
    target : float, optional
        Required for the ``"sensitivity"`` and ``"specificity"`` rules, in (0, 1].

    Returns
    -------
    Threshold
        A float; a case is positive when ``score >= threshold``. It is one of
        the observed validation scores (the convention of the ROC curve).

    References
    ----------
    .. [1] Youden WJ. Index for rating diagnostic tests. Cancer 1950;3:32-35.
    """
    y, p = _yp(y_val, p_val)
    require_both_classes(y, "threshold selection")
    if rule not in THRESHOLD_RULES:
        raise EvaluationError(f"unknown threshold rule {rule!r}; use one of {THRESHOLD_RULES}")
    if rule in ("sensitivity", "specificity"):
        if target is None or not (0 < float(target) <= 1):
            raise EvaluationError(f"rule {rule!r} needs a target in (0, 1], got {target!r}")
    s = threshold_sweep(y, p)
    thr = s["threshold"]
    if rule == "youden":
        j = s["sensitivity"] - (1 - s["specificity"])
        i = int(np.argmax(j[1:])) + 1          # never +inf: it calls nothing positive
    elif rule == "f1":
        i = int(np.nanargmax(s["f1"][1:])) + 1
    elif rule == "sensitivity":
        i = int(np.flatnonzero(s["sensitivity"] >= float(target) - 1e-12)[0])
    else:
        ok = np.flatnonzero(s["specificity"] >= float(target) - 1e-12)
        i = int(ok[-1])
    value = thr[i]
    if not np.isfinite(value):
        raise EvaluationError(f"no finite threshold reaches {rule}={target}")
    return Threshold(value, rule=rule, target=target, n=int(y.size), fingerprint=_fingerprint(y, p))


# --------------------------------------------------------------------------- at a threshold
def confusion_counts(y_true, y_score, threshold: float):
    """``(tp, fp, tn, fn)`` with a case called positive when ``y_score >= threshold``."""
    y, p = _yp(y_true, y_score)
    pred = p >= float(threshold)
    tp = int(np.count_nonzero(pred & y))
    fp = int(np.count_nonzero(pred & ~y))
    fn = int(np.count_nonzero(~pred & y))
    tn = int(y.size - tp - fp - fn)
    return tp, fp, tn, fn


def _ratio(a, b):
    return float(a / b) if b else float("nan")


def binary_metrics(y_true, y_score, threshold: float, *, oracle: bool = False) -> dict:
    """Sensitivity, specificity, PPV, NPV, F1 and counts at a fixed threshold.

    Parameters
    ----------
    y_true, y_score : array_like of shape (n,)
        Test labels and scores.
    threshold : float or Threshold
        Chosen beforehand, ideally with :func:`choose_threshold` on validation
        data. Positive when ``y_score >= threshold``.
    oracle : bool
        Set to True to score a :class:`Threshold` on the very data it was chosen
        on; the result is then labelled ``"oracle": True``. Without it, that
        case raises :class:`EvaluationError`.

    Returns
    -------
    dict
        ``threshold, n, n_pos, tp, fp, tn, fn, sensitivity, specificity, ppv,
        npv, f1, accuracy, balanced_accuracy, oracle``. Undefined ratios are NaN.
    """
    y, p = _yp(y_true, y_score)
    if not np.isfinite(float(threshold)):
        raise EvaluationError(f"threshold must be finite, got {threshold!r}")
    same = isinstance(threshold, Threshold) and threshold.fingerprint is not None \
        and threshold.fingerprint == _fingerprint(y, p)
    if same and not oracle:
        raise EvaluationError(
            "this threshold was chosen on these same data; choose it on validation data and "
            "apply it to test data, or pass oracle=True to report a labelled oracle value")
    tp, fp, tn, fn = confusion_counts(y, p, threshold)
    sens = _ratio(tp, tp + fn)
    spec = _ratio(tn, tn + fp)
    return {
        "threshold": float(threshold), "n": int(y.size), "n_pos": tp + fn,
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "sensitivity": sens, "specificity": spec,
        "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(tp + tn, y.size),
        "balanced_accuracy": 0.5 * (sens + spec),
        "oracle": bool(oracle or same),
    }


def _counts_batched(y, p, W, threshold):
    y = as_binary(y)
    pred = np.asarray(p, float) >= float(threshold)
    tp = W @ (pred & y).astype(float)
    fp = W @ (pred & ~y).astype(float)
    fn = W @ (~pred & y).astype(float)
    tn = W @ (~pred & ~y).astype(float)
    return tp, fp, tn, fn


def _div(a, b):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def _sens_b(y, p, W, threshold):
    tp, fp, tn, fn = _counts_batched(y, p, W, threshold)
    return _div(tp, tp + fn)


def _spec_b(y, p, W, threshold):
    tp, fp, tn, fn = _counts_batched(y, p, W, threshold)
    return _div(tn, tn + fp)


def _ppv_b(y, p, W, threshold):
    tp, fp, tn, fn = _counts_batched(y, p, W, threshold)
    return _div(tp, tp + fp)


def _npv_b(y, p, W, threshold):
    tp, fp, tn, fn = _counts_batched(y, p, W, threshold)
    return _div(tn, tn + fn)


def _f1_b(y, p, W, threshold):
    tp, fp, tn, fn = _counts_batched(y, p, W, threshold)
    return _div(2 * tp, 2 * tp + fp + fn)


@_batched(_sens_b)
def sensitivity(y_true, y_score, threshold: float) -> float:
    """Sensitivity (recall, TPR) at ``y_score >= threshold``; NaN without positives."""
    tp, fp, tn, fn = confusion_counts(y_true, y_score, threshold)
    return _ratio(tp, tp + fn)


@_batched(_spec_b)
def specificity(y_true, y_score, threshold: float) -> float:
    """Specificity (TNR) at ``y_score >= threshold``; NaN without negatives."""
    tp, fp, tn, fn = confusion_counts(y_true, y_score, threshold)
    return _ratio(tn, tn + fp)


@_batched(_ppv_b)
def ppv(y_true, y_score, threshold: float) -> float:
    """Positive predictive value (precision) at ``y_score >= threshold``."""
    tp, fp, tn, fn = confusion_counts(y_true, y_score, threshold)
    return _ratio(tp, tp + fp)


@_batched(_npv_b)
def npv(y_true, y_score, threshold: float) -> float:
    """Negative predictive value at ``y_score >= threshold``."""
    tp, fp, tn, fn = confusion_counts(y_true, y_score, threshold)
    return _ratio(tn, tn + fn)


@_batched(_f1_b)
def f1_score(y_true, y_score, threshold: float) -> float:
    """F1 score (harmonic mean of PPV and sensitivity) at ``y_score >= threshold``."""
    tp, fp, tn, fn = confusion_counts(y_true, y_score, threshold)
    return _ratio(2 * tp, 2 * tp + fp + fn)
