"""Kaplan-Meier and log-rank against hand-computed values and lifelines (test-only oracle)."""

import numpy as np
import pytest
from scipy.stats import chi2

from ecgcore import stats
from ecgcore.stats import EvaluationError


def test_kaplan_meier_hand_computed():
    # times 1,2,2,3,4 ; events 1,1,0,1,0
    km = stats.kaplan_meier([1, 2, 2, 3, 4], [1, 1, 0, 1, 0])
    np.testing.assert_array_equal(km.time, [1, 2, 3, 4])
    np.testing.assert_array_equal(km.n_at_risk, [5, 4, 2, 1])
    s = np.cumprod([4 / 5, 3 / 4, 1 / 2, 1.0])
    np.testing.assert_allclose(km.survival, s)
    green = np.cumsum([1 / (5 * 4), 1 / (4 * 3), 1 / (2 * 1), 0])
    np.testing.assert_allclose(km.var_log, green)
    np.testing.assert_allclose(km.cumulative_incidence, 1 - s)
    assert km.at([0.5, 2.5, 10]).tolist() == pytest.approx([1.0, s[1], s[3]])
    assert stats.number_at_risk([1, 2, 2, 3, 4], [0, 2, 3.5]).tolist() == [5, 4, 1]


def test_logrank_two_groups_hand_computed():
    # group A: times 1, 3 (events); group B: 2 (event), 4 (censored)
    t = [1, 3, 2, 4]
    e = [1, 1, 1, 0]
    g = ["A", "A", "B", "B"]
    # t=1: n=4 (2,2) d=1 -> E_A=.5, V=.25 ; t=2: n=3 (1,2) d=1 -> E_A=1/3, V=2/9
    # t=3: n=2 (1,1) d=1 -> E_A=.5, V=.25
    O, E, V = 2, 0.5 + 1 / 3 + 0.5, 0.25 + 2 / 9 + 0.25
    r = stats.logrank_test(t, e, g)
    assert r.statistic == pytest.approx((O - E) ** 2 / V)
    assert r.p_value == pytest.approx(chi2.sf((O - E) ** 2 / V, 1))
    assert r.df == 1 and r.observed.tolist() == [2, 1]


def test_against_lifelines(rng):
    lifelines = pytest.importorskip("lifelines")
    from lifelines.statistics import multivariate_logrank_test
    n = 600
    grp = rng.integers(0, 3, n)
    t = np.round(rng.exponential(10 / (1 + 0.4 * grp)), 0)     # rounded: many ties
    e = rng.random(n) < 0.75
    km = stats.kaplan_meier(t, e)
    kmf = lifelines.KaplanMeierFitter().fit(t, e)
    np.testing.assert_allclose(km.survival, kmf.survival_function_.loc[km.time].iloc[:, 0], atol=1e-12)
    ci = kmf.confidence_interval_.loc[km.time].to_numpy()
    ok = np.isfinite(km.ci_low)
    np.testing.assert_allclose(km.ci_low[ok], ci[ok, 0], atol=1e-10)
    np.testing.assert_allclose(km.ci_high[ok], ci[ok, 1], atol=1e-10)
    r = stats.logrank_test(t, e, grp)
    ref = multivariate_logrank_test(t, grp, e)
    assert r.statistic == pytest.approx(ref.test_statistic, rel=1e-9)
    assert r.p_value == pytest.approx(ref.p_value, rel=1e-6)
    assert r.p_value < 0.01


def test_logrank_null_is_uniformish(rng):
    ps = [stats.logrank_test(rng.exponential(size=80), rng.random(80) < 0.7,
                             rng.integers(0, 2, 80)).p_value for _ in range(200)]
    assert 0.01 <= np.mean(np.array(ps) < 0.05) <= 0.11


def test_incidence_by_group_with_validation_cuts(rng):
    pv = rng.random(300)
    cuts = stats.risk_cut_points(pv, 3)
    np.testing.assert_allclose(cuts, np.quantile(pv, [1 / 3, 2 / 3]))
    p = rng.random(900)
    t = rng.exponential(200 / (0.5 + 2 * p))
    e = t < 700
    t = np.minimum(t, 700)
    res = stats.incidence_by_group(t, e, p, cuts, horizons=[100, 300])
    inc = [g["incidence_at"]["incidence"] for g in res["groups"]]
    assert inc[0][1] < inc[1][1] < inc[2][1]                  # risk ordering holds
    assert res["logrank"].p_value < 1e-6 and res["logrank"].df == 2
    assert sum(g["n"] for g in res["groups"]) == 900
    assert stats.risk_groups([0.1, cuts[0], 0.99], cuts).tolist() == [0, 1, 2]
    with pytest.raises(stats.EvaluationError, match="no validation prediction"):
        stats.risk_cut_points(np.array([]), 3)     # an IndexError from np.quantile before


def test_survival_bad_input():
    with pytest.raises(EvaluationError, match="0/1"):
        stats.kaplan_meier([1, 2], [0, 2])
    with pytest.raises(EvaluationError, match="non-negative"):
        stats.kaplan_meier([-1, 2], [0, 1])
    with pytest.raises(EvaluationError, match="2 groups"):
        stats.logrank_test([1, 2], [1, 1], [0, 0])
    with pytest.raises(EvaluationError, match="increasing"):
        stats.risk_groups([0.1], [0.5, 0.2])
