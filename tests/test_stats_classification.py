"""Classification metrics against scikit-learn (test-only oracle) and hand-computed cases."""

import pickle

import numpy as np
import pytest

from ecgcore import stats
from ecgcore.stats import EvaluationError


def _data(rng, n=400, ties=True):
    y = rng.integers(0, 2, n)
    p = rng.random(n) + 0.4 * y
    return y, (np.round(p, 1) if ties else p)


def test_auroc_hand_computed_with_ties():
    # pairs (pos, neg): 3 vs 1 win, 3 vs 2 win, 2 vs 1 win, 2 vs 2 tie -> (3 + 0.5) / 4
    assert stats.auroc([1, 1, 0, 0], [3, 2, 1, 2]) == pytest.approx(3.5 / 4)
    assert stats.auroc([0, 1], [0.2, 0.9]) == 1.0
    assert stats.auroc([1, 0], [0.2, 0.9]) == 0.0
    assert stats.auroc([1, 0, 1, 0], [0.5] * 4) == 0.5


def test_auroc_equals_mann_whitney(rng):
    from scipy.stats import mannwhitneyu
    y, p = _data(rng)
    u = mannwhitneyu(p[y == 1], p[y == 0]).statistic
    assert stats.auroc(y, p) == pytest.approx(u / (y.sum() * (y.size - y.sum())), rel=1e-12)


@pytest.mark.parametrize("ties", [True, False])
def test_against_sklearn(rng, ties):
    skm = pytest.importorskip("sklearn.metrics")
    y, p = _data(rng, ties=ties)
    q = np.clip(p / p.max(), 0, 1)
    assert stats.auroc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert stats.average_precision(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert stats.brier_score(y, q) == pytest.approx(skm.brier_score_loss(y, q), abs=1e-12)
    fpr, tpr, thr = stats.roc_curve(y, p)
    f2, t2, th2 = skm.roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2)
    np.testing.assert_allclose(tpr, t2)
    np.testing.assert_allclose(thr[1:], th2[1:])
    prec, rec, pthr = stats.pr_curve(y, p)
    p2, r2, pt2 = skm.precision_recall_curve(y, p, drop_intermediate=False)
    # sklearn lists increasing thresholds; ours decrease
    np.testing.assert_allclose(prec[1:], p2[::-1][1:])
    np.testing.assert_allclose(rec[1:], r2[::-1][1:])
    np.testing.assert_allclose(pthr, pt2[::-1])


def test_binary_metrics_hand_and_sklearn(rng):
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.6, 0.3, 0.7, 0.2, 0.1, 0.5, 0.5])
    m = stats.binary_metrics(y, p, 0.5)
    # predicted positive: .9 .6 .7 .5 .5 -> tp 3 (0.9, 0.6, 0.5), fp 2 (0.7, 0.5), fn 1, tn 2
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (3, 2, 2, 1)
    assert m["sensitivity"] == 0.75 and m["specificity"] == 0.5
    assert m["ppv"] == 0.6 and m["npv"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))
    skm = pytest.importorskip("sklearn.metrics")
    y, p = _data(rng)
    m = stats.binary_metrics(y, p, 0.7)
    pred = p >= 0.7
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert m["ppv"] == pytest.approx(skm.precision_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["specificity"] == pytest.approx(skm.recall_score(1 - y, ~pred))


def test_choose_threshold_rules(rng):
    y, p = _data(rng, n=1000, ties=False)
    s = stats.threshold_sweep(y, p)
    t = stats.choose_threshold(y, p, "youden")
    j = s["sensitivity"] - 1 + s["specificity"]
    assert float(t) == s["threshold"][np.argmax(j)]
    skm = pytest.importorskip("sklearn.metrics")
    fpr, tpr, thr = skm.roc_curve(y, p)
    assert float(t) == pytest.approx(thr[np.argmax(tpr - fpr)])
    ts = stats.choose_threshold(y, p, "sensitivity", target=0.9)
    assert stats.sensitivity(y, p, ts) >= 0.9
    # the next higher observed score would miss the target: this is the most specific one
    higher = np.min(p[p > ts])
    assert stats.sensitivity(y, p, higher) < 0.9
    tsp = stats.choose_threshold(y, p, "specificity", target=0.95)
    assert stats.specificity(y, p, tsp) >= 0.95
    lower = np.max(p[p < tsp])
    assert stats.specificity(y, p, lower) < 0.95
    tf = stats.choose_threshold(y, p, "f1")
    assert stats.f1_score(y, p, tf) == pytest.approx(np.nanmax(s["f1"]))


def test_threshold_cannot_be_scored_on_its_own_data(rng):
    y, p = _data(rng)
    yv, pv = _data(rng)
    t = stats.choose_threshold(yv, pv, "youden")
    assert not stats.binary_metrics(y, p, t)["oracle"]           # validation -> test: fine
    with pytest.raises(EvaluationError, match="chosen on these same data"):
        stats.binary_metrics(yv, pv, t)
    assert stats.binary_metrics(yv, pv, t, oracle=True)["oracle"]
    t2 = pickle.loads(pickle.dumps(t))
    assert t2 == t and t2.fingerprint == t.fingerprint and t2.rule == "youden"


def test_batched_twins_match_resampled_rows(rng):
    y, p = _data(rng, n=300)
    q = np.clip(p / p.max(), 0, 1)
    W = rng.integers(0, 3, size=(5, y.size)).astype(float)
    rows = [np.repeat(np.arange(y.size), w.astype(int)) for w in W]
    for fn in (stats.auroc, stats.average_precision):
        np.testing.assert_allclose(fn.batched(y, p, W), [fn(y[r], p[r]) for r in rows], rtol=1e-12)
    np.testing.assert_allclose(stats.brier_score.batched(y, q, W),
                               [stats.brier_score(y[r], q[r]) for r in rows], rtol=1e-12)
    for fn in (stats.sensitivity, stats.specificity, stats.ppv, stats.npv, stats.f1_score):
        np.testing.assert_allclose(fn.batched(y, p, W, threshold=0.8),
                                   [fn(y[r], p[r], 0.8) for r in rows], rtol=1e-12)


def test_bad_input_errors():
    with pytest.raises(EvaluationError, match="one class"):
        stats.auroc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(EvaluationError, match="binary"):
        stats.auroc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(EvaluationError, match="NaN"):
        stats.auroc([0, 1], [0.1, np.nan])
    with pytest.raises(EvaluationError, match="length"):
        stats.auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(EvaluationError, match="target"):
        stats.choose_threshold([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], "sensitivity")
    with pytest.raises(EvaluationError, match="unknown threshold rule"):
        stats.choose_threshold([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], "best")
    with pytest.raises(EvaluationError, match=r"\[0, 1\]"):
        stats.brier_score([0, 1], [0.5, 1.5])
