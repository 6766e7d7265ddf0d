"""The P-wave-index baseline on simulated records with a known structure: ecgcore.measure
indices -> feature table (NaN handling) -> logistic fit on train -> test AUROC with a bootstrap CI."""

from __future__ import annotations

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

import ecgcore
from ecgcore import stats
from ecgcore.models.studies import PWAVE_EXTENDED, PWAVE_INDICES, pwave_baseline, pwave_feature_table


def _true_p_duration(rec):
    f = rec.meta["fiducials"]
    ok = (f["P_on"] >= 0) & (f["P_off"] >= 0)
    return float(np.mean(f["P_off"][ok] - f["P_on"][ok]) * 1000 / rec.fs) if ok.any() else np.nan


@pytest.fixture(scope="module")
def measured():
    sinus = ecgcore.simulate(n=70, seed=71, rhythm="sinus", noise="mild", heart_rate=(55, 95))
    af = ecgcore.simulate(n=15, seed=72, rhythm="af", noise="mild")
    recs = sinus + af
    ids = [f"r{i:03d}" for i in range(len(recs))]
    table = pwave_feature_table(recs, indices=PWAVE_EXTENDED, ids=ids)
    table["true_pdur"] = [_true_p_duration(r) for r in recs]
    table["rhythm"] = [r.meta["rhythm"] for r in recs]
    return table


def test_feature_table_is_measure_with_nan_where_no_p_wave(measured):
    t = measured
    assert list(t.columns[:1 + len(PWAVE_EXTENDED)]) == ["id", *PWAVE_EXTENDED]
    assert (t["error"] == "").all() and len(t) == 85          # every record kept (no early break)
    sinus, af = t[t.rhythm == "sinus"], t[t.rhythm == "af"]
    # measured P duration tracks the simulator's true P duration
    assert np.corrcoef(sinus["p_duration_ms"], sinus["true_pdur"])[0, 1] > 0.6
    assert np.nanmedian(np.abs(sinus["p_duration_ms"] - sinus["true_pdur"])) < 12
    # physical units: P amplitude in II is tens to a few hundred µV, positive in sinus rhythm
    assert 20 < sinus["p_amplitude_ii_uv"].median() < 400
    assert set(np.unique(sinus["interatrial_block"].dropna())) <= {0.0, 1.0, 2.0}
    # no atrial activity in AF: the P indices are missing, not zero
    assert af["p_duration_ms"].isna().mean() > 0.8 and af["pr_interval_ms"].isna().mean() > 0.8


def test_dl_atcm_onset_reference_is_an_option(measured):
    recs = ecgcore.simulate(n=3, seed=71, rhythm="sinus", noise="mild", heart_rate=(55, 95))
    from ecgcore.delineation.measures import measure_many
    m = measure_many(recs)
    iso = pwave_feature_table(m)
    ons = pwave_feature_table(m, amplitude_reference="onset")
    np.testing.assert_array_equal(iso["p_amplitude_ii_uv"], m["p_amplitude_ii_uv"])
    np.testing.assert_array_equal(ons["p_amplitude_ii_uv"], m["p_amplitude_ii_onset_uv"])
    np.testing.assert_array_equal(iso["p_amplitude_ii_uv"], measured["p_amplitude_ii_uv"][:3])


def test_pwave_baseline_learns_p_duration_outcome(measured):
    t = measured.copy()
    # known structure: the outcome is a long true P duration (sinus) or AF (no P wave at all)
    sinus = (t.rhythm == "sinus").to_numpy()
    cut = np.median(t["true_pdur"][sinus])
    rng = np.random.default_rng(1)
    risk = np.where(sinus, 1 / (1 + np.exp(-(t["true_pdur"] - cut) / 2.0)), 0.95)
    t["outcome"] = (rng.random(len(t)) < risk).astype(float)
    t["patient_id"] = t["id"]
    t["split"] = np.array(["train", "train", "val", "test", "test"])[np.arange(len(t)) % 5]
    res = pwave_baseline(t, outcome="outcome", indices=PWAVE_INDICES, n_boot=300, seed=3)
    auc = res["metrics"]["tasks"]["pwi"]["auroc"]
    test = (t["split"] == "test").to_numpy()
    oracle = stats.auroc(t["outcome"][test], risk[test])       # the true risk: the best possible score
    assert auc["value"] >= 0.75 and auc["value"] >= oracle - 0.15, (auc, oracle)
    assert auc["ci_low"] <= auc["value"] <= auc["ci_high"] and auc["ci_low"] < auc["ci_high"], auc
    assert auc["value"] == pytest.approx(stats.auroc(t["outcome"][test], res["table"]["pwi_prob"][test]))
    coef = res["model"]["coefficients"]
    assert coef["p_duration_ms"]["coef"] > 0              # longer P -> higher risk
    assert coef["p_duration_ms_missing"]["coef"] > 0      # no P wave (AF) -> higher risk
    # imputation medians come from training rows only
    tr = (t["split"] == "train").to_numpy()
    imp = res["risk_model"].imputer
    np.testing.assert_allclose(imp.median_[0], np.nanmedian(t["p_duration_ms"][tr]))
    assert res["metrics"]["tasks"]["pwi"]["threshold"]["chosen_on"] == "validation"
