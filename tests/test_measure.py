"""Measurements, P-wave indices, median beats and the delineate/measure CLIs."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from conftest import shared_path

from ecgcore.delineation import measure, measure_many, median_beats
from ecgcore.delineation import pwave
from ecgcore.record import Record


def _sim(rhythm="sinus", n=1, seed=21, noise="mild", **kw):
    from ecgcore.synthetic import simulate
    return simulate(n=n, seed=seed, rhythm=rhythm, noise=noise, **kw)


def _true_median(f, a, b, fs):
    ok = (f[a] >= 0) & (f[b] >= 0)
    return float(np.median(f[b][ok] - f[a][ok]) * 1000.0 / fs)


def test_measure_sinus_against_truth():
    for rec in _sim(n=3):
        f, fs = rec.meta["fiducials"], rec.fs
        m = measure(rec)
        rr = np.diff(f["R"][f["R"] >= 0]) * 1000.0 / fs
        assert m["rr_mean_ms"] == pytest.approx(rr.mean(), abs=10)
        assert m["heart_rate_bpm"] == pytest.approx(60000.0 / rr.mean(), rel=0.02)
        assert abs(m["qrs_duration_ms"] - _true_median(f, "QRS_on", "QRS_off", fs)) < 35
        assert abs(m["pr_interval_ms"] - _true_median(f, "P_on", "QRS_on", fs)) < 30
        assert abs(m["p_duration_ms"] - _true_median(f, "P_on", "P_off", fs)) < 35
        assert abs(m["qt_ms"] - _true_median(f, "QRS_on", "T_off", fs)) < 40
        rr_s = m["rr_mean_ms"] / 1000.0
        assert m["qtc_bazett_ms"] == pytest.approx(m["qt_ms"] / math.sqrt(rr_s))
        assert m["qtc_fridericia_ms"] == pytest.approx(m["qt_ms"] / rr_s ** (1 / 3))
        assert m["qtc_framingham_ms"] == pytest.approx(m["qt_ms"] + 154 * (1 - rr_s))
        assert m["qtc_hodges_ms"] == pytest.approx(m["qt_ms"] + 1.75 * (60 / rr_s - 60))
        assert m["pq_interval_ms"] == m["pr_interval_ms"]
        # the simulator's QRS axis is known
        d = (m["qrs_axis_deg"] - rec.meta["qrs_axis_deg"] + 180) % 360 - 180
        assert abs(d) < 30, (m["qrs_axis_deg"], rec.meta["qrs_axis_deg"])
        assert np.isfinite(m["p_axis_deg"]) and m["interatrial_block"] in ("none", "partial", "advanced")
        assert m["p_morphology_II"] in pwave.MORPHOLOGIES
        assert m["r_amp_II_uv"] > 100 and m["s_amp_II_uv"] <= 0


def test_measure_af_gives_nan_with_reasons():
    rec = _sim("af", seed=3)[0]
    m = measure(rec)
    assert m["no_atrial_activity"] is True
    for k in ("pr_interval_ms", "p_duration_ms", "p_axis_deg", "ptfv1_uvms", "p_amplitude_ii_uv",
              "p_dispersion_ms"):
        assert math.isnan(m[k]) and "atrial" in m["reasons"][k], k
    assert m["interatrial_block"] == "" and np.isfinite(m["qrs_duration_ms"])


def test_measure_flat_record_does_not_raise():
    rec = Record(np.zeros((12, 5000)), 500, ["I", "II", "III", "aVR", "aVL", "aVF",
                                            "V1", "V2", "V3", "V4", "V5", "V6"])
    m = measure(rec)
    assert m["n_beats"] == 0 and math.isnan(m["heart_rate_bpm"]) and m["reasons"]["heart_rate_bpm"]


def test_amplitudes_are_physical_units():
    """Doubling the signal doubles µV amplitudes and PTFV1 depth; intervals stay."""
    rec = _sim(seed=5)[0]
    a = measure(rec)
    b = measure(rec.copy(signal=rec.signal * 2))
    assert b["r_amp_V5_uv"] == pytest.approx(2 * a["r_amp_V5_uv"], rel=1e-3)
    assert b["p_amplitude_ii_uv"] == pytest.approx(2 * a["p_amplitude_ii_uv"], rel=1e-3)
    assert b["qrs_duration_ms"] == a["qrs_duration_ms"]


# ---------------------------------------------------------------- P-wave index definitions
def _bump(n, c, w, a):
    t = np.arange(n)
    return a * np.exp(-0.5 * ((t - c) / w) ** 2)


def test_p_morphology_classes():
    fs = 500.0
    assert pwave.p_morphology(_bump(50, 25, 6, 150), fs) == "positive"
    assert pwave.p_morphology(_bump(50, 25, 6, -150), fs) == "negative"
    assert pwave.p_morphology(_bump(60, 18, 5, 100) + _bump(60, 42, 5, -80), fs) == "biphasic+-"
    assert pwave.p_morphology(_bump(60, 18, 5, -80) + _bump(60, 42, 5, 100), fs) == "biphasic-+"
    assert pwave.p_morphology(_bump(70, 20, 5, 120) + _bump(70, 48, 5, 120), fs) == "notched"
    assert pwave.p_morphology(_bump(50, 25, 6, 10), fs) == "flat"


def test_terminal_force_and_dtnpv1():
    fs = 500.0
    # +/- P: positive 100 µV, then a negative lobe of 120 µV lasting ~ 40 ms
    w = _bump(60, 18, 5, 100) + _bump(60, 45, 6, -120)
    depth, dur = pwave.terminal_negative_phase(w, fs)
    assert depth == pytest.approx(120, rel=0.05)
    cross = np.flatnonzero((w[:-1] >= 0) & (w[1:] < 0))[-1] + 1
    assert dur == pytest.approx((60 - cross) * 2.0)
    assert pwave.terminal_negative_phase(_bump(50, 25, 6, 150), fs) == (0.0, 0.0)
    # wholly negative P: the whole wave is the terminal phase
    d2, t2 = pwave.terminal_negative_phase(_bump(50, 25, 6, -90) - 1e-3, fs)
    assert d2 == pytest.approx(90, rel=0.01) and t2 == pytest.approx(100.0)


def test_interatrial_block_and_axis():
    assert pwave.interatrial_block(110, "positive", "positive", "positive") == "none"
    assert pwave.interatrial_block(125, "positive", "biphasic+-", "positive") == "partial"
    assert pwave.interatrial_block(130, "biphasic+-", "biphasic+-", "biphasic+-") == "advanced"
    assert pwave.interatrial_block(float("nan"), "", "", "") == ""
    assert pwave.frontal_axis(1.0, 0.0) == pytest.approx(0.0)
    assert pwave.frontal_axis(0.0, 1.0) == pytest.approx(90.0)
    assert pwave.frontal_axis(1.0, 1.0) == pytest.approx(45.0)
    assert math.isnan(pwave.frontal_axis(0.0, 0.0))


# ---------------------------------------------------------------- median beats
def test_median_beats_lvh_shape_and_alignment():
    rec = _sim(seed=6)[0].conform(["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"])
    mb = median_beats(rec, length=400, before=150)
    assert mb.signal.shape == (8, 400) and mb.fs == rec.fs and mb.leads == rec.leads
    assert mb.meta["n_beats"] >= 5
    # the R wave sits at sample 150 in the lead with the tallest R
    k = int(np.argmax(np.abs(mb.signal).max(axis=1)))
    assert abs(int(np.argmax(np.abs(mb.signal[k]))) - 150) <= 10
    # equals the sample-wise median of the high-passed beats up to filtering
    short = median_beats(rec.signal[:, :300], fs=rec.fs)
    assert np.isnan(short.signal).all() and "needed" in short.meta["reason"]


def test_measure_many_table():
    recs = _sim(n=2, seed=8)
    df = measure_many(recs)
    assert len(df) == 2 and "qrs_duration_ms" in df.columns and df["qrs_duration_ms"].notna().all()


# ---------------------------------------------------------------- CLI
def test_cli_delineate_and_measure(tmp_path):
    from ecgcore.cli import main
    pd = pytest.importorskip("pandas")
    a = str(shared_path("data", "ludb", "1.hea"))
    b = str(shared_path("data", "ludb", "3.hea"))
    out = tmp_path / "marks.csv"
    rc = main(["delineate", a, str(tmp_path / "missing.hea"), "--out", str(out), "--no-progress"])
    assert rc == 1
    errs = [json.loads(line) for line in open(tmp_path / "errors.jsonl")]
    assert len(errs) == 1 and "missing" in errs[0]["path"]
    df = pd.read_csv(out)
    assert set(df["source"]) == {a} and (df["lead"] == "global").sum() == (df["lead"] == "II").sum()
    # resume: only the new file is processed
    rc = main(["delineate", a, b, "--out", str(out), "--resume", "--no-progress"])
    assert rc == 0
    df2 = pd.read_csv(out)
    assert set(df2["source"]) == {a, b} and (df2["source"] == a).sum() == (df["source"] == a).sum()
    mout = tmp_path / "measures.csv"
    rc = main(["measure", a, b, "--out", str(mout), "--workers", "2", "--no-progress"])
    assert rc == 0
    m = pd.read_csv(mout)
    assert len(m) == 2 and m["qrs_duration_ms"].between(40, 200).all()
    assert main(["measure", a, "--out", str(tmp_path / "x.txt"), "--no-progress"]) == 2
