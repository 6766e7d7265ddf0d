"""Regression, agreement and calibration metrics against scipy / scikit-learn / hand values."""

import numpy as np
import pytest
from scipy import stats as st
from scipy.optimize import minimize
from scipy.special import expit

from ecgcore import stats
from ecgcore.stats import EvaluationError


def test_regression_metrics_hand_and_scipy(rng):
    t = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.5, 2.0, 2.0, 5.0])
    assert stats.mae(t, p) == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert stats.rmse(t, p) == pytest.approx(np.sqrt((0.25 + 0 + 1 + 1) / 4))
    assert stats.r2(t, p) == pytest.approx(1 - 2.25 / 5.0)
    assert stats.mean_error(t, p) == pytest.approx(0.125)
    t = rng.normal(100, 15, 500)
    p = 0.6 * t + rng.normal(0, 10, 500) + 40
    r, pr = stats.pearson(t, p)
    ref = st.pearsonr(t, p)
    assert (r, pr) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    tr = np.round(t, -1)                       # ties
    rho, ps = stats.spearman(tr, p)
    ref = st.spearmanr(tr, p)
    assert (rho, ps) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    skm = pytest.importorskip("sklearn.metrics")
    assert stats.r2(t, p) == pytest.approx(skm.r2_score(t, p))
    assert stats.mae(t, p) == pytest.approx(skm.mean_absolute_error(t, p))


def test_regression_batched_twins(rng):
    t = rng.normal(size=200)
    p = t + rng.normal(size=200)
    W = rng.integers(0, 3, size=(4, 200)).astype(float)
    rows = [np.repeat(np.arange(200), w.astype(int)) for w in W]
    for fn in (stats.mae, stats.rmse, stats.mean_error, stats.r2, stats.pearson_r):
        np.testing.assert_allclose(fn.batched(t, p, W), [fn(t[r], p[r]) for r in rows],
                                   rtol=1e-9, err_msg=fn.__name__)


def test_bland_altman(rng):
    t = rng.normal(50, 10, 400)
    p = t + 2.0 + rng.normal(0, 3, 400)
    ba = stats.bland_altman(t, p)
    d = p - t
    assert ba["bias"] == pytest.approx(d.mean())
    assert ba["loa_high"] == pytest.approx(d.mean() + 1.96 * d.std(ddof=1), rel=1e-3)
    assert ba["bias_ci"][0] < 2.0 < ba["bias_ci"][1]
    # population limits 2 +/- 1.96*3 lie inside their intervals
    assert ba["loa_low_ci"][0] < 2 - 1.96 * 3 < ba["loa_low_ci"][1]
    assert ba["loa_high_ci"][0] < 2 + 1.96 * 3 < ba["loa_high_ci"][1]
    tq = st.t.ppf(0.975, 399)
    assert ba["loa_high_ci"][1] - ba["loa_high"] == pytest.approx(tq * d.std(ddof=1) * np.sqrt(3 / 400))


def test_calibration_slope_intercept_maximum_likelihood(rng):
    n = 3000
    lp = rng.normal(0, 1.5, n)
    y = rng.random(n) < expit(0.3 + 0.6 * lp)      # true slope 0.6, too-extreme predictions
    p = expit(lp)
    c = stats.calibration_slope_intercept(y, p)

    def nll(b):
        eta = b[0] + b[1] * lp
        return np.sum(np.logaddexp(0, eta)) - np.sum(y * eta)
    ref = minimize(nll, [0, 1], method="BFGS").x
    assert c["slope"] == pytest.approx(ref[1], abs=1e-4)
    assert c["intercept_joint"] == pytest.approx(ref[0], abs=1e-4)
    assert 0.5 < c["slope"] < 0.7
    ref_citl = minimize(lambda a: np.sum(np.logaddexp(0, a[0] + lp)) - np.sum(y * (a[0] + lp)),
                        [0.0], method="BFGS").x[0]
    assert c["intercept"] == pytest.approx(ref_citl, abs=1e-4)
    # perfectly calibrated probabilities: slope near 1, intercept near 0
    y2 = rng.random(n) < p
    c2 = stats.calibration_slope_intercept(y2, p)
    assert abs(c2["slope"] - 1) < 0.12 and abs(c2["intercept"]) < 0.12


def test_calibration_curve_and_ece(rng):
    p = rng.random(5000)
    y = rng.random(5000) < p
    skc = pytest.importorskip("sklearn.calibration")
    for strategy in ("uniform", "quantile"):
        c = stats.calibration_curve(y, p, n_bins=10, strategy=strategy)
        obs, pred = skc.calibration_curve(y, p, n_bins=10, strategy=strategy)
        np.testing.assert_allclose(c["observed"], obs, atol=1e-12)
        np.testing.assert_allclose(c["mean_predicted"], pred, atol=1e-12)
    assert stats.expected_calibration_error(y, p) < 0.03
    assert stats.expected_calibration_error(y, p ** 3) > 0.15       # miscalibrated
    # hand case: two bins, |0.0 - 0.25| and |1.0 - 0.75|
    e = stats.expected_calibration_error([0, 0, 1, 1], [0.2, 0.3, 0.7, 0.8], n_bins=2)
    assert e == pytest.approx(0.25)


def test_regression_bad_input():
    with pytest.raises(EvaluationError, match="NaN"):
        stats.mae([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(EvaluationError, match="length"):
        stats.rmse([1.0, 2.0], [1.0])
    with pytest.raises(EvaluationError, match="probabilities"):
        stats.calibration_curve([0, 1], [0.2, 1.2])
