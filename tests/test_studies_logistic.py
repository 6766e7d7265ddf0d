"""Study models: Newton-IRLS logistic regression against scipy.optimize on the same objective,
recovery of known coefficients, imputation fitted on training rows only, AF from predicted markers
vs the P-wave baseline (DeLong on the same test cases), and the LVH analyses (facts/lvh.md)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit

pd = pytest.importorskip("pandas")

from ecgcore import stats
from ecgcore.models.studies import (LVH_THRESHOLDS, LVHLogistic, LogisticRegression, MedianImputer,
                                    RiskModel, af_from_markers, lvh_from_mass, lvh_study, prior_adjust)
from ecgcore.stats import EvaluationError


def _reference_fit(X, y, l2, w):
    """The same penalised objective minimised by BFGS (intercept unpenalised), raw features."""
    Z = np.column_stack([np.ones(len(X)), X])

    def f(b):
        eta = Z @ b
        return np.sum(w * (np.logaddexp(0, eta) - y * eta)) + 0.5 * l2 * np.sum(b[1:] ** 2)

    def g(b):
        r = Z.T @ (w * (expit(Z @ b) - y))
        r[1:] += l2 * b[1:]
        return r
    return minimize(f, np.zeros(Z.shape[1]), jac=g, method="BFGS", options={"gtol": 1e-10, "maxiter": 5000}).x


@pytest.mark.parametrize("l2,cw", [(0.0, None), (1.0, "balanced"), (5.0, None)])
def test_logistic_matches_scipy_minimize(rng, l2, cw):
    X = rng.normal(size=(400, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0]
    y = (rng.random(400) < expit(-1.0 + X @ [0.8, -0.4, 1.5])).astype(float)
    m = LogisticRegression(l2=l2, standardize=False, class_weight=cw).fit(X, y)
    n1 = y.sum()
    w = np.where(y == 1, 400 / (2 * n1), 400 / (2 * (400 - n1))) if cw else np.ones(400)
    ref = _reference_fit(X, y, l2, w)
    np.testing.assert_allclose(np.r_[m.intercept_, m.coef_], ref, atol=1e-5)
    np.testing.assert_allclose(m.predict_proba(X), expit(np.column_stack([np.ones(400), X]) @ ref), atol=1e-6)


def test_logistic_recovers_known_coefficients_with_honest_ses(rng):
    beta = np.array([-0.5, 1.2, -0.7])
    X = rng.normal(size=(20000, 2)) * [1.0, 3.0]
    y = (rng.random(20000) < expit(beta[0] + X @ beta[1:])).astype(float)
    m = LogisticRegression().fit(X, y)
    est = np.r_[m.intercept_, m.coef_]
    assert np.all(np.abs(est - beta) < 4 * m.se_), (est, m.se_)
    # Wald SEs = sqrt(diag(inverse Fisher information)) at the estimate, computed independently
    Z = np.column_stack([np.ones(len(X)), X])
    p = expit(Z @ est)
    info = (Z * (p * (1 - p))[:, None]).T @ Z
    np.testing.assert_allclose(m.se_, np.sqrt(np.diag(np.linalg.inv(info))), rtol=1e-6)
    # standardisation changes nothing without a penalty
    m2 = LogisticRegression(standardize=False).fit(X, y)
    np.testing.assert_allclose(m2.coef_, m.coef_, rtol=1e-7)


def test_logistic_refuses_separable_and_bad_input(rng):
    x = np.r_[rng.normal(-3, 0.5, 50), rng.normal(3, 0.5, 50)]
    y = np.r_[np.zeros(50), np.ones(50)]
    with pytest.raises(EvaluationError, match="separable"):
        LogisticRegression(l2=0.0).fit(x, y)
    assert LogisticRegression(l2=1.0).fit(x, y).coef_[0] > 0     # the penalty makes it defined
    with pytest.raises(EvaluationError, match="NaN"):
        LogisticRegression().fit(np.array([[1.0], [np.nan], [2.0]]), [0, 1, 0])
    with pytest.raises(EvaluationError, match="one class"):
        LogisticRegression().fit(x, np.ones(100))


def test_imputer_is_fitted_on_training_rows_only(rng):
    X = rng.normal(size=(100, 3))
    X[rng.random(100) < 0.2, 1] = np.nan
    imp = MedianImputer().fit(X, ["a", "b", "c"])
    assert imp.output_names == ["a", "b", "c", "b_missing"]
    np.testing.assert_allclose(imp.median_[1], np.nanmedian(X[:, 1]))
    T = np.array([[0.3, np.nan, 5.0], [np.nan, 1.0, 5.0]])
    out = imp.transform(T)
    # b (missing in training) is imputed with its training median and flagged; a (never missing in
    # training) is not invented: the row stays NaN
    np.testing.assert_allclose(out, [[0.3, imp.median_[1], 5.0, 1.0], [np.nan, 1.0, 5.0, 0.0]])
    # the risk model: test-row values never change the fitted model
    df = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "y": (X[:, 0] + rng.normal(size=100) > 0).astype(float)})
    m1 = RiskModel(["a", "b"]).fit(df.iloc[:70], df["y"].iloc[:70])
    df2 = df.copy()
    df2.loc[70:, "b"] = 1e6
    m2 = RiskModel(["a", "b"]).fit(df2.iloc[:70], df2["y"].iloc[:70])
    np.testing.assert_array_equal(m1.imputer.median_, m2.imputer.median_)
    np.testing.assert_array_equal(m1.lr.coef_, m2.lr.coef_)


def _marker_table(rng, n=1600):
    """A known structure: AF depends on a latent LA remodelling score, age and sex; predicted markers
    correlate ~0.5 with the latent (DL-AtCM reports r 0.41-0.52 between predicted and measured LA
    indices); the P-wave indices carry a weaker signal."""
    age = rng.uniform(45, 80, n)
    sex = (rng.random(n) < 0.5).astype(float)
    latent = rng.normal(size=n)
    af = (rng.random(n) < expit(-2.0 + 1.6 * latent + 0.04 * (age - 62) + 0.3 * sex)).astype(float)
    la_max = 38.81 + 11.03 * (0.55 * latent + 0.84 * rng.normal(size=n))
    t = pd.DataFrame({
        "age": age, "sex": sex, "AF": af,
        "LA_max_pred": la_max, "LA_min_pred": 15.41 + 6.95 * (0.5 * latent + 0.87 * rng.normal(size=n)),
        "LAEF_pred": 0.6154 - 0.0887 * (0.4 * latent + 0.9 * rng.normal(size=n)),
        "LA_LV_ratio_pred": 0.4935 + 0.1259 * (0.3 * latent + 0.95 * rng.normal(size=n)),
        "p_duration_ms": 105 + 12 * (0.25 * latent + rng.normal(size=n)),
        "pr_interval_ms": 160 + 20 * rng.normal(size=n),
        "p_amplitude_ii_uv": 100 + 30 * rng.normal(size=n),
        "p_axis_deg": 50 + 20 * rng.normal(size=n),
        "patient_id": [f"p{i // 2}" for i in range(n)]})
    t["split"] = np.where(np.arange(n) // 2 % 5 < 3, "train", np.where(np.arange(n) // 2 % 5 == 3, "val", "test"))
    # P indices missing where no P wave was measured, markers missing where no prediction exists
    t.loc[rng.random(n) < 0.05, "p_duration_ms"] = np.nan
    t.loc[t.index[(t["split"] == "test").to_numpy() & (rng.random(n) < 0.03)], "LA_max_pred"] = np.nan
    r = np.corrcoef(latent, la_max)[0, 1]
    return t, r


def test_af_from_markers_beats_pwave_baseline_by_delong_on_same_cases(rng):
    t, r = _marker_table(rng)
    assert 0.41 <= r <= 0.65          # the published anchor range for predicted vs measured LA indices
    res = af_from_markers(t, "AF", fit_on=("val",), groups="patient_id", n_boot=200, seed=1)
    m = res["metrics"]["tasks"]
    assert m["markers"]["auroc"]["value"] > m["pwi"]["auroc"]["value"] + 0.05
    d = res["delong"]["markers_vs_pwi"]
    assert d["p_value"] < 0.01 and d["diff"] > 0
    # the comparison is on identical cases: recompute on the common test rows directly
    tt = res["table"]
    ok = (tt["split"] == "test").to_numpy().copy()
    for c in ("AF", "clinical_prob", "pwi_prob", "markers_prob"):
        ok &= np.isfinite(tt[c].to_numpy(float))
    assert ok.sum() == res["delong"]["n"] == res["metrics"]["n_common_test"] == m["markers"]["n"] == m["pwi"]["n"]
    assert res["metrics"]["n_dropped"]["test"] == int((tt["split"] == "test").sum() - ok.sum()) > 0
    ref = stats.delong_test(tt["AF"][ok], tt["markers_prob"][ok], tt["pwi_prob"][ok])
    assert d["p_value"] == pytest.approx(ref.p_value) and d["diff"] == pytest.approx(ref.diff)
    assert m["markers"]["delong"]["pwi_prob"]["p_value"] == pytest.approx(ref.p_value)
    # the models were fitted on validation rows: refitting there by hand gives the same probabilities
    v = (tt["split"] == "val").to_numpy()
    cols = ["LA_max_pred", "LA_min_pred", "LAEF_pred", "LA_LV_ratio_pred", "age", "sex"]
    own = RiskModel(cols, l2=1e-3).fit(t[v], t["AF"][v]).predict_proba(t)
    np.testing.assert_allclose(own, tt["markers_prob"], rtol=1e-10, equal_nan=True)
    # threshold metrics at a validation-chosen threshold
    assert m["markers"]["threshold"]["chosen_on"] == "validation"
    with pytest.raises(EvaluationError, match="test split"):
        af_from_markers(t, "AF", fit_on=("train", "test"), n_boot=10)


# ---------------------------------------------------------------------------
# LVH (facts/lvh.md §2, §7)
# ---------------------------------------------------------------------------

def test_lvh_thresholds_are_the_published_sex_specific_values():
    assert LVH_THRESHOLDS == {"mass": {"male": 141.0, "female": 93.0}, "indexed": {"male": 70.0, "female": 55.0}}
    ilvm = np.array([70.0, 69.99, 55.0, 54.99, 60.0, np.nan, 80.0])
    male = np.array([1, 1, 0, 0, 1, 1, np.nan])
    np.testing.assert_array_equal(lvh_from_mass(ilvm, male), [1, 0, 1, 0, 0, np.nan, np.nan])
    np.testing.assert_array_equal(lvh_from_mass([141.0, 140.9, 93.0, 92.9], [1, 1, 0, 0], kind="mass"),
                                  [1, 0, 1, 0])
    with pytest.raises(EvaluationError, match="0/1"):
        lvh_from_mass([60.0], [2])


def test_prior_adjust_is_the_published_formula(rng):
    p = rng.uniform(0.01, 0.99, 50)
    pi = 0.07
    np.testing.assert_allclose(prior_adjust(p, pi), expit(np.log(p / (1 - p)) - np.log(pi / (1 - pi))))
    np.testing.assert_allclose(prior_adjust(prior_adjust(p, pi), 0.5, pi), p)


def _lvh_table(rng, n=1500):
    male = (rng.random(n) < 0.5).astype(float)
    ilvm = np.where(male == 1, rng.normal(60, 9, n), rng.normal(47, 7, n))
    pred = ilvm + rng.normal(0, 5, n) - 1.0            # a known bias of -1 g/m2, SD 5
    split = np.array(["train", "val", "test"])[rng.choice(3, n, p=[0.7, 0.15, 0.15])]
    return pd.DataFrame({"eid": [f"e{i}" for i in range(n)], "is_m": male, "ilvm_true": ilvm,
                         "ilvm_pred": pred, "split": split})


def test_lvh_study_regression_and_classification(rng):
    t = _lvh_table(rng)
    res = lvh_study(t, groups="eid", n_boot=300, seed=2, lvh_col=None)
    m = res["metrics"]["tasks"]
    test = (t["split"] == "test").to_numpy()
    y, p = t["ilvm_true"][test].to_numpy(), t["ilvm_pred"][test].to_numpy()
    assert m["mass"]["mae"]["value"] == pytest.approx(stats.mae(y, p))
    assert m["mass"]["mae"]["ci_low"] < m["mass"]["mae"]["value"] < m["mass"]["mae"]["ci_high"]
    assert m["mass"]["r2"]["value"] == pytest.approx(stats.r2(y, p))
    assert m["mass"]["bland_altman"]["bias"] == pytest.approx(np.mean(p - y))
    assert abs(m["mass"]["bland_altman"]["bias"] + 1.0) < 1.0        # the simulated bias
    # the cutoff rule: predicted iLVM >= sex threshold; its sensitivity is the direct count
    lvh = lvh_from_mass(y, t["is_m"][test])
    call = lvh_from_mass(p, t["is_m"][test])
    assert m["lvh_cutoff"]["sensitivity"]["value"] == pytest.approx(np.mean(call[lvh == 1] == 1))
    assert m["lvh_cutoff"]["specificity"]["value"] == pytest.approx(np.mean(call[lvh == 0] == 0))
    np.testing.assert_array_equal(res["table"]["lvh_pred_cutoff"], lvh_from_mass(t["ilvm_pred"], t["is_m"]))
    # LR: fitted on validation rows only (test labels do not move it) and a good discriminator
    assert res["lvh_lr"]["fit_on"] == "val" and res["lvh_lr"]["coef_mass"] > 0
    v = (t["split"] == "val").to_numpy()
    own = LVHLogistic().fit(t["ilvm_pred"][v], t["is_m"][v], lvh_from_mass(t["ilvm_true"][v], t["is_m"][v]))
    assert own.lr.coef_[1] == pytest.approx(res["lvh_lr"]["coef_mass"])
    assert m["lvh_lr"]["auroc"]["value"] > 0.85
    assert m["lvh_lr"]["threshold"]["chosen_on"] == "validation"
    t2 = t.copy()
    t2.loc[test, "ilvm_true"] = rng.permutation(t2.loc[test, "ilvm_true"].to_numpy()) + 10.0
    assert lvh_study(t2, n_boot=20, lvh_col=None)["lvh_lr"]["coef_mass"] == pytest.approx(res["lvh_lr"]["coef_mass"])
    # balanced class weights + C = 1 on raw features, against scipy
    yv = lvh_from_mass(t["ilvm_true"][v], t["is_m"][v])
    Xv = np.column_stack([t["is_m"][v], t["ilvm_pred"][v]])
    n1 = yv.sum()
    w = np.where(yv == 1, len(yv) / (2 * n1), len(yv) / (2 * (len(yv) - n1)))
    ref = _reference_fit(Xv, yv, 1.0, w)
    np.testing.assert_allclose([own.lr.intercept_, *own.lr.coef_], ref, rtol=1e-4, atol=1e-6)
    # prior adjustment with the validation prevalence by default
    assert res["prior"]["from"] == "val"
    np.testing.assert_allclose(res["table"]["lvh_proba_prioradj_lr"],
                               prior_adjust(res["table"]["lvh_proba_lr"], res["prior"]["value"]))
