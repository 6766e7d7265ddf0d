"""Cluster bootstrap and DeLong: brute-force references, determinism, coverage sanity."""

import functools

import numpy as np
import pytest
from scipy.stats import norm

from ecgcore import stats
from ecgcore.stats import EvaluationError


def _brute_delong(y, scores):
    """Structural components by the O(m n) pairwise definition (DeLong 1988)."""
    y = np.asarray(y, bool)
    out = []
    for s in np.atleast_2d(scores):
        x, z = s[y], s[~y]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        out.append((psi.mean(1), psi.mean(0)))
    v10 = np.array([o[0] for o in out])
    v01 = np.array([o[1] for o in out])
    S = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
    return v10.mean(1), np.atleast_2d(S)


def test_delong_matches_brute_force(rng):
    n = 300
    y = rng.integers(0, 2, n)
    a = np.round(rng.normal(size=n) + y, 1)           # ties on purpose
    b = np.round(a + rng.normal(size=n), 1)
    auc, S = _brute_delong(y, np.vstack([a, b]))
    r = stats.delong_test(y, a, b)
    assert r.auc1 == pytest.approx(auc[0]) and r.auc2 == pytest.approx(auc[1])
    np.testing.assert_allclose(r.cov, S, rtol=1e-10)
    z = (auc[0] - auc[1]) / np.sqrt(S[0, 0] + S[1, 1] - 2 * S[0, 1])
    assert r.z == pytest.approx(z, rel=1e-10)
    assert r.p_value == pytest.approx(2 * norm.sf(abs(z)), rel=1e-9)
    one = stats.delong_auc_ci(y, a, transform="none")
    assert one["se"] == pytest.approx(np.sqrt(S[0, 0]), rel=1e-10)
    assert one["auc"] == pytest.approx(stats.auroc(y, a))


def test_delong_identical_scores_give_p_one(rng):
    y = rng.integers(0, 2, 200)
    a = rng.normal(size=200) + y
    assert stats.delong_test(y, a, a).p_value == 1.0
    assert stats.delong_test(y, a, 3 * a + 1).p_value == 1.0      # same ranking


def test_delong_detects_a_real_difference(rng):
    y = rng.integers(0, 2, 800)
    good = rng.normal(size=800) + 1.5 * y
    weak = rng.normal(size=800) + 0.3 * y
    r = stats.delong_test(y, good, weak)
    assert r.diff > 0 and r.p_value < 1e-6 and r.ci_low > 0


def test_delong_null_p_values_are_not_too_small(rng):
    """Two equally good, independent-noise scores: p < 0.05 in about 5% of trials."""
    ps = []
    for _ in range(200):
        y = rng.integers(0, 2, 150)
        base = y + rng.normal(size=150)
        ps.append(stats.delong_test(y, base + rng.normal(size=150),
                                    base + rng.normal(size=150)).p_value)
    assert 0.01 <= np.mean(np.array(ps) < 0.05) <= 0.11


def test_bootstrap_deterministic_and_batched_equals_loop(rng):
    n = 400
    y = rng.integers(0, 2, n)
    p = rng.normal(size=n) + y
    pid = rng.integers(0, 150, n)
    r1 = stats.bootstrap_ci(stats.auroc, y, p, groups=pid, n_boot=300, seed=7)
    r2 = stats.bootstrap_ci(stats.auroc, y, p, groups=pid, n_boot=300, seed=7)
    loop = stats.bootstrap_ci(lambda a, b: stats.auroc(a, b), y, p, groups=pid, n_boot=300, seed=7)
    np.testing.assert_array_equal(r1.replicates, r2.replicates)
    np.testing.assert_allclose(r1.replicates, loop.replicates, rtol=1e-12)
    assert r1.n_clusters == np.unique(pid).size
    r3 = stats.bootstrap_ci(stats.auroc, y, p, groups=pid, n_boot=300, seed=8)
    assert not np.array_equal(r1.replicates, r3.replicates)
    # partial with a threshold keeps the batched path and equals the loop
    f = functools.partial(stats.sensitivity, threshold=0.5)
    a = stats.bootstrap_ci(f, y, p, groups=pid, n_boot=100, seed=1)
    b = stats.bootstrap_ci(lambda u, v: stats.sensitivity(u, v, 0.5), y, p, groups=pid,
                           n_boot=100, seed=1)
    np.testing.assert_allclose(a.replicates, b.replicates, rtol=1e-12)


def test_cluster_bootstrap_keeps_patients_together(rng):
    # each patient has 5 identical rows: the cluster bootstrap sees 60 units, not 300,
    # so its interval of the mean is wider than the row bootstrap's, by about sqrt(5)
    v = np.repeat(rng.normal(size=60), 5)
    pid = np.repeat(np.arange(60), 5)
    mean = lambda x: float(np.mean(x))
    rc = stats.bootstrap_ci(mean, v, groups=pid, n_boot=1000, seed=0)
    rr = stats.bootstrap_ci(mean, v, n_boot=1000, seed=0)
    assert 1.7 < rc.se / rr.se < 2.8
    # every replicate is a mean over whole patients: a multiple of 1/60 of patient sums
    w = stats.cluster_weights(np.random.default_rng(0), 20, pid, 60)
    assert np.all(w.reshape(20, 60, 5).std(-1) == 0) and np.all(w.sum(1) == 300)


def test_bootstrap_ci_covers_population_auc(rng):
    # binormal model: AUC = Phi(d / sqrt(2)) for unit variances
    d = 1.0
    n = 3000
    y = rng.integers(0, 2, n)
    p = rng.normal(size=n) + d * y
    true = norm.cdf(d / np.sqrt(2))
    r = stats.bootstrap_ci(stats.auroc, y, p, n_boot=2000, seed=3)
    assert r.ci_low < true < r.ci_high
    assert r.ci_high - r.ci_low < 0.05
    dl = stats.delong_auc_ci(y, p)
    assert r.se == pytest.approx(dl["se"], rel=0.15)       # two variance estimates agree
    bca = stats.bootstrap_ci(stats.auroc, y[:600], p[:600], n_boot=1000, seed=3, method="bca")
    pct = stats.bootstrap_ci(stats.auroc, y[:600], p[:600], n_boot=1000, seed=3)
    assert abs(bca.ci_low - pct.ci_low) < 0.02 and abs(bca.ci_high - pct.ci_high) < 0.02


def test_bca_against_scipy(rng):
    from scipy.stats import bootstrap
    x = rng.exponential(size=200)
    ours = stats.bootstrap_ci(lambda a: float(np.mean(a)), x, n_boot=4000, seed=0, method="bca")
    ref = bootstrap((x,), np.mean, n_resamples=4000, method="BCa", rng=np.random.default_rng(1))
    assert ours.ci_low == pytest.approx(ref.confidence_interval.low, abs=0.03)
    assert ours.ci_high == pytest.approx(ref.confidence_interval.high, abs=0.03)


def test_one_class_resamples_are_skipped():
    y = np.r_[1, np.zeros(19, int)]
    p = np.linspace(0, 1, 20)
    r = stats.bootstrap_ci(stats.auroc, y, p, n_boot=200, seed=0, min_valid=0.1)
    assert 0 < r.n_valid < 200 and np.isfinite(r.ci_low)


def test_bootstrap_bad_input():
    with pytest.raises(EvaluationError, match="differ in length"):
        stats.bootstrap_ci(stats.auroc, [0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(EvaluationError, match="groups"):
        stats.bootstrap_ci(stats.auroc, [0, 1], [0.1, 0.2], groups=[1])
    with pytest.raises(EvaluationError, match="method"):
        stats.bootstrap_ci(stats.auroc, [0, 1], [0.1, 0.2], method="basic")
