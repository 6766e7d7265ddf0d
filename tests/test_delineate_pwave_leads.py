"""Per-lead P boundaries (``waves.P_LEAD``): onsets pulled towards the beat's median over
the leads, offsets of weak leads from an absolute-threshold rule, the ``leads=``
argument, and the accuracy on LUDB annotations with and without these steps."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import shared_path
from test_delineate import _ludb   # (signal, fs, per-lead reference marks) of a LUDB record

from ecgcore.delineation import MARKS, delineate
from ecgcore.delineation import waves
from ecgcore.errors import ECGError

LUDB_LEADS = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")
NAMES = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
P_ON, P_PEAK, P_OFF, QRS_ON = (MARKS.index(m) for m in ("P_on", "P_peak", "P_off", "QRS_on"))


def _sim(seed=5):
    from ecgcore.synthetic import simulate
    return simulate(n=1, seed=seed, rhythm="sinus", noise="mild")[0]


@pytest.fixture
def no_p_lead(monkeypatch):
    """Switch the per-lead steps off (onset spread 1, weak-lead offsets off)."""
    def off():
        monkeypatch.setitem(waves.P_LEAD, "spread_on", 1.0)
        monkeypatch.setitem(waves.P_LEAD, "off_weak_rel", 0.0)
    return off


# ---------------------------------------------------------------- the leads= argument
def test_leads_argument_names_rows_and_checks_them():
    rec = _sim()
    x = np.asarray(rec.signal, np.float64)
    d = delineate(x, rec.fs, leads=[n.lower() for n in NAMES])
    assert d.leads == NAMES                          # normalised spellings
    assert delineate(x, rec.fs).leads == tuple(str(i) for i in range(12))
    with pytest.raises(ECGError, match="11 names for 12"):
        delineate(x, rec.fs, leads=NAMES[:11])
    with pytest.raises(ECGError, match="sequence of lead names"):
        delineate(x, rec.fs, leads="II")


def test_names_do_not_change_the_marks():
    """Naming the rows (or passing a Record) labels the leads; the marks are the same."""
    rec = _sim(seed=7)
    x = np.asarray(rec.signal, np.float64)
    a = delineate(x, rec.fs)
    b = delineate(x, rec.fs, leads=NAMES)
    assert (a.marks[:, :, P_OFF] >= 0).sum() >= 12 * 5, "the simulated sinus record should have P waves"
    np.testing.assert_array_equal(a.marks, b.marks)
    np.testing.assert_array_equal(a.global_marks, b.global_marks)
    c = delineate(rec)
    assert c.leads == NAMES
    np.testing.assert_array_equal(c.marks, b.marks)
    np.testing.assert_array_equal(b.lead("II")["P_off"], a.lead(1)["P_off"])


def test_onset_spread_scales_deviations_from_the_beat_median(no_p_lead, monkeypatch):
    """Against the same record with the step off: each lead's P onset deviation from the
    beat's median over the leads is the given fraction of what it was (to a sample, then
    kept at or before the P peak), so no beat's spread over the leads grows; the offsets
    are not touched by this step."""
    x, fs, _ = _ludb(_ludb_dev()[0])        # a real record: its leads' P bounds differ
    k = waves.P_LEAD["spread_on"]
    assert k < 1
    no_p_lead()
    old = delineate(x, fs).marks
    monkeypatch.setitem(waves.P_LEAD, "spread_on", k)
    new = delineate(x, fs).marks
    np.testing.assert_array_equal(old[:, :, P_OFF], new[:, :, P_OFF])
    ok = old[:, :, P_ON] >= 0
    np.testing.assert_array_equal(ok, new[:, :, P_ON] >= 0)
    v = np.where(ok, old[:, :, P_ON], np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.round(np.nanmedian(v, axis=0))[None, :]       # the median, to a sample
        # the target to the nearest sample (via half samples: ties to even)
        want = np.minimum(np.rint(np.rint(2 * (med + k * (v - med))) / 2), old[:, :, P_PEAK])
        got = new[:, :, P_ON].astype(float)
        np.testing.assert_array_equal(want[ok], got[ok])
        spread_old = np.nanstd(v, axis=0)
        spread_new = np.nanstd(np.where(ok, got, np.nan), axis=0)
    live = spread_old > 2
    assert live.sum() >= 3
    assert np.all(spread_new[live] <= spread_old[live] + 1e-9)


def test_absolute_threshold_offsets_on_known_waves():
    """A median beat with four P waves ending at the same sample (half-sine bumps of
    0.2, -0.1, 0.05 and 0.03 mV on different baselines) and a lead without P: each lead's
    absolute-threshold offset is the first sample after its extremum where it is within
    20 µV of its PR level (found here by a plain loop), reported minus the leads' median;
    the two smallest waves are weak, and a small wave is back within 20 µV earlier."""
    fs = 500.0
    w = 600
    on, end, q = 200, 260, 310
    amps = (0.2, -0.1, 0.05, 0.03)
    tmpl = np.zeros((5, w))
    bump = np.sin(np.pi * np.arange(end - on + 1) / (end - on))
    for l, (a, base) in enumerate(zip(amps, (0.0, 0.3, -0.2, 0.1))):
        tmpl[l] = base
        tmpl[l, on:end + 1] += a * bump
    tmpl[4] = 0.005 * np.sin(np.arange(w) / 7.0)
    tm = -np.ones((5, 9), np.int64)
    tm[:4, 0], tm[:4, 1], tm[:4, 2] = on, on + 30, end
    tm[:, 3] = q
    d, weak = waves._p_template_abs(tmpl, tm, fs)
    thr = waves.P_LEAD["off_abs_mv"]
    t = []
    for l in range(4):
        pr = tmpl[l, q - int(waves.P_LEAD["off_level_s"] * fs):q].mean()
        tp = tmpl[l, on - int(0.03 * fs):on - int(0.01 * fs)].mean()
        pk = on + int(np.argmax(np.abs(tmpl[l, on:end + 1] - tp)))
        t.append(next(i for i in range(pk, w) if abs(tmpl[l, i] - pr) < thr))
    np.testing.assert_array_equal(d[:4], np.array(t) - np.median(t))
    assert np.isnan(d[4]) and np.isnan(weak[4])
    rel = np.abs(amps) / np.median(np.abs(amps))
    np.testing.assert_array_equal(weak[:4], (rel < waves.P_LEAD["off_weak_rel"]).astype(float))
    assert weak[3] == 1 and weak[0] == 0
    assert t[3] < t[2] < t[0]


def test_weak_lead_offsets_follow_the_rule_strong_leads_untouched(monkeypatch):
    """On a real record (LUDB dev): the inputs of the per-lead stage are captured; leads
    flagged weak on the median beat get median + own x (offset - median) + abs x (their
    absolute-threshold deviation), every other lead keeps its P offset; onsets follow
    the spread rule."""
    x, fs, _ = _ludb(_ludb_dev()[1])
    seen = {}
    real = waves._p_lead_stage

    def spy(out, extra):
        seen["out"], seen["extra"] = out.copy(), extra.copy()
        return real(out, extra)

    monkeypatch.setattr(waves, "_p_lead_stage", spy)
    new = delineate(x, fs).marks
    old, extra = seen["out"], seen["extra"]
    hb = (old[:, :, P_ON] >= 0) & (old[:, :, P_OFF] >= 0)
    weak = hb & (extra[:, :, 9] == 1)
    assert weak.sum() >= 5 and (hb & ~weak).sum() >= 5
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m_off = np.round(np.nanmedian(np.where(hb, old[:, :, P_OFF], np.nan), axis=0))
        m_on = np.round(np.nanmedian(np.where(hb, old[:, :, P_ON], np.nan), axis=0))
    p = waves.P_LEAD
    want = np.rint(m_off + p["off_own"] * (old[:, :, P_OFF] - m_off) + p["off_abs"] * extra[:, :, 8])
    want = np.where(weak, want, old[:, :, P_OFF])
    want = np.maximum(np.minimum(want, old[:, :, QRS_ON] - 1), old[:, :, P_PEAK])
    np.testing.assert_array_equal(want[hb], new[:, :, P_OFF][hb])
    keep = hb & ~weak & (old[:, :, P_OFF] < old[:, :, QRS_ON])
    np.testing.assert_array_equal(old[:, :, P_OFF][keep], new[:, :, P_OFF][keep])
    want_on = np.minimum(np.rint(np.rint(2 * (m_on + p["spread_on"] * (old[:, :, P_ON] - m_on))) / 2),
                         old[:, :, P_PEAK])
    np.testing.assert_array_equal(want_on[hb], new[:, :, P_ON][hb])


def test_weak_lead_offsets_same_in_chunked_path(monkeypatch):
    """Long records get the weak-lead rule from each chunk's median beat: nearly the same
    per-lead P offsets as from the whole record's."""
    from ecgcore.synthetic import simulate
    rec = simulate(n=1, seed=12, rhythm="sinus", noise="mild", duration=40)[0]
    whole = delineate(rec).marks[:, :, P_OFF]
    monkeypatch.setattr(waves, "CHUNK_S", 10.0)
    chunked = delineate(rec).marks[:, :, P_OFF]
    both = (whole >= 0) & (chunked >= 0)
    assert both.sum() >= 0.8 * (whole >= 0).sum() and both.sum() >= 50
    assert (np.abs(chunked[both] - whole[both]) <= 2).mean() >= 0.9


# ---------------------------------------------------------------- LUDB annotations
def _errors(d, refs, fs, mark):
    """Per-lead errors (ms) of one-to-one nearest matches within 150 ms; (errors, n_ref)."""
    k = MARKS.index(mark)
    tol = int(0.15 * fs)
    err, n_ref = [], 0
    for li, ld in enumerate(LUDB_LEADS):
        ref = refs[ld][mark]
        det = np.sort(d.marks[li, :, k][d.marks[li, :, k] >= 0])
        n_ref += ref.size
        if ref.size == 0 or det.size == 0:
            continue
        dist = np.abs(ref[:, None] - det[None, :])
        ii, jj = np.nonzero(dist <= tol)
        ur, ud = set(), set()
        for q in np.argsort(dist[ii, jj], kind="stable"):
            if ii[q] in ur or jj[q] in ud:
                continue
            ur.add(ii[q]); ud.add(jj[q])
            err.append((det[jj[q]] - ref[ii[q]]) * 1000.0 / fs)
    return np.array(err), n_ref


def _ludb_dev():
    d = shared_path("data", "ludb")
    names = sorted((p.stem for p in d.glob("*.hea")), key=int)
    if len(names) < 40:
        pytest.skip(f"the LUDB shelf has {len(names)} records, the split needs 40")
    return names[:20]


def test_ludb_dev_per_lead_p_error_lower_with_the_lead_steps(no_p_lead):
    """LUDB development split (first 20 shelf records, where the constants were chosen):
    12 leads pooled, the per-lead P_on and P_off error SD against the annotators are lower
    with the steps than without, the bias stays under 5 ms and no P mark is lost."""
    data = [_ludb(n) for n in _ludb_dev()]
    res = {}
    for state in ("on", "off"):
        if state == "off":
            no_p_lead()
        for mark in ("P_on", "P_off"):
            errs, n_ref = [], 0
            for x, fs, refs in data:
                e, n = _errors(delineate(x, fs, leads=LUDB_LEADS), refs, fs, mark)
                errs.append(e); n_ref += n
            e = np.concatenate(errs)
            res[state, mark] = (float(e.std()), float(e.mean()), e.size / n_ref)
    for mark in ("P_on", "P_off"):
        sd_on, mu_on, se_on = res["on", mark]
        sd_off, _, se_off = res["off", mark]
        assert sd_on < sd_off - 0.3, (mark, res)
        assert abs(mu_on) < 5, (mark, res)
        assert se_on >= se_off and se_on >= 0.99, (mark, res)


def test_compiled_lead_stage_equals_the_numpy_reference(monkeypatch):
    """The numba kernels (``_plead_kernels``) give bit for bit what the readable numpy
    versions in ``waves`` give, on real records, a noisy copy, a NaN gap and simulated
    rhythms with and without P waves."""
    from ecgcore.synthetic import simulate
    seen = {"abs": 0, "stage": 0}
    fast_abs, fast_stage = waves._p_template_abs_fast, waves._p_lead_stage

    def spy_abs(tmpl, tm, fs):
        got = fast_abs(tmpl, tm, fs)
        want = waves._p_template_abs(np.asarray(tmpl), np.asarray(tm), fs)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        seen["abs"] += int(np.isfinite(want[0]).sum())
        return got

    def spy_stage(out, extra):
        want = out.copy()
        waves._p_lead_stage_reference(want, extra)
        fast_stage(out, extra)
        np.testing.assert_array_equal(out, want)
        seen["stage"] += 1

    monkeypatch.setattr(waves, "_p_template_abs_fast", spy_abs)
    monkeypatch.setattr(waves, "_p_lead_stage", spy_stage)
    rng = np.random.default_rng(3)
    for name in _ludb_dev()[:4]:
        x, fs, _ = _ludb(name)
        delineate(x, fs)
        delineate(x + rng.normal(0, 0.05, x.shape), fs)
        y = x.copy()
        y[3, 1000:1400] = np.nan
        delineate(y, fs)
    for seed in range(4):
        delineate(simulate(n=1, seed=seed, rhythm="mixed")[0])
    assert seen["stage"] == 16 and seen["abs"] >= 12 * 8
