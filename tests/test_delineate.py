"""12-lead delineation: LUDB annotations, simulated records with true fiducials, the
Delineation API, annotation files, and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import shared_path

import ecgcore
from ecgcore.delineation import MARKS, Delineation, delineate
from ecgcore.delineation import waves
from ecgcore.delineation.delineation import _triplets

LUDB_LEADS = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")


def _sim(rhythm="sinus", n=1, seed=5, noise="mild", **kw):
    from ecgcore.synthetic import simulate
    return simulate(n=n, seed=seed, rhythm=rhythm, noise=noise, **kw)


def _pairs(ref, det, tol):
    """Nearest-first matching -> (ref values, det values)."""
    ref = np.asarray(ref)[np.asarray(ref) >= 0]
    det = np.sort(np.asarray(det)[np.asarray(det) >= 0])
    if ref.size == 0 or det.size == 0:
        return np.zeros(0), np.zeros(0)
    d = np.abs(ref[:, None] - det[None, :])
    ii, jj = np.nonzero(d <= tol)
    order = np.argsort(d[ii, jj], kind="stable")
    ur, ud, a, b = set(), set(), [], []
    for k in order:
        if ii[k] in ur or jj[k] in ud:
            continue
        ur.add(ii[k]); ud.add(jj[k]); a.append(ref[ii[k]]); b.append(det[jj[k]])
    return np.array(a), np.array(b)


# ---------------------------------------------------------------- real annotations
def _ludb(name):
    wfdb = pytest.importorskip("wfdb")
    base = str(shared_path("data", "ludb", name + ".hea")).removesuffix(".hea")
    rec = wfdb.rdrecord(base)
    refs = {}
    for ld in LUDB_LEADS:
        a = wfdb.rdann(base, ld)
        sym, smp = list(a.symbol), np.asarray(a.sample)
        out = {m: [] for m in MARKS}
        for i, s in enumerate(sym):
            kinds = {"p": ("P_on", "P_peak", "P_off"), "N": ("QRS_on", "R", "QRS_off"),
                     "t": ("T_on", "T_peak", "T_off")}.get(s)
            if kinds is None:
                continue
            out[kinds[1]].append(smp[i])
            if i and sym[i - 1] == "(":
                out[kinds[0]].append(smp[i - 1])
            if i + 1 < len(sym) and sym[i + 1] == ")":
                out[kinds[2]].append(smp[i + 1])
        refs[ld] = {m: np.array(v, np.int64) for m, v in out.items()}
    return rec.p_signal.T, float(rec.fs), refs


def _ludb_errors(names, marks=("QRS_on", "QRS_off", "P_off")):
    """Per-lead errors (ms) of the matched marks over LUDB records, and the reference counts."""
    errs = {m: [] for m in marks}
    n_ref = {m: 0 for m in marks}
    for name in names:
        x, fs, refs = _ludb(name)
        d = delineate(x, fs)
        for li, ld in enumerate(LUDB_LEADS):
            det = d.lead(li)
            for m in marks:
                a, b = _pairs(refs[ld][m], det[m], int(0.15 * fs))
                errs[m].extend((b - a) * 1000.0 / fs)
                n_ref[m] += int((refs[ld][m] >= 0).sum())
    return {m: np.asarray(e) for m, e in errs.items()}, n_ref


def test_ludb_sinus_records_against_annotations():
    """Sinus records of the validation split (not used for tuning): loose but meaningful
    bounds."""
    errs, n_ref = _ludb_errors(("113", "130", "159"), ("P_on", "P_off", "QRS_on", "QRS_off", "T_off"))
    for m, e in errs.items():
        se = e.size / n_ref[m]
        assert se >= (0.97 if m.startswith("QRS") else 0.85), (m, se)
        # the bias is checked on the median: one of the three strips (130) has P onsets
        # annotated ~35 ms after the visible deflection in most leads
        assert abs(np.median(e)) < 10, (m, np.median(e))
        assert abs(np.mean(e)) < 15, (m, np.mean(e))
        assert np.std(e) < (16 if m.startswith("QRS") else 35), (m, np.std(e))


def test_ludb_af_record_has_no_p_waves():
    # LUDB 51 is atrial fibrillation (ludb.csv); its annotators marked no P wave
    x, fs, refs = _ludb("51")
    assert all(refs[ld]["P_peak"].size == 0 for ld in LUDB_LEADS)
    d = delineate(x, fs)
    assert d.flags["no_atrial_activity"] is True
    assert np.all(d.marks[:, :, :3] == -1) and np.all(d.global_marks[:, :3] == -1)
    assert (d.global_marks[:, 3] >= 0).all()       # QRS still delineated


# ---------------------------------------------------------------- simulated truth
def test_simulated_sinus_global_marks():
    errs = {m: [] for m in MARKS}
    for rec in _sim(n=3, seed=11):
        f = rec.meta["fiducials"]
        d = ecgcore.delineate(rec)
        g = d.global_()
        assert d.flags["no_atrial_activity"] is False
        for m in MARKS:
            a, b = _pairs(f[m], g[m], int(0.1 * rec.fs))
            assert a.size >= 0.9 * (f[m] >= 0).sum(), m
            errs[m].extend((b - a) * 1000.0 / rec.fs)
    for m in ("P_on", "P_off", "QRS_on", "QRS_off", "T_off"):
        assert abs(np.mean(errs[m])) < 25 and np.std(errs[m]) < 25, (m, np.mean(errs[m]), np.std(errs[m]))


@pytest.mark.parametrize("rhythm", ["af", "flutter"])
def test_simulated_rhythms_without_p_report_absent(rhythm):
    for rec in _sim(rhythm, n=2, seed=2):
        d = delineate(rec)
        assert d.flags["no_atrial_activity"] is True
        assert (d.global_marks[:, 0] == -1).all() and (d.marks[:, :, 0] == -1).all()


def test_wide_qrs_flagged():
    rec = _sim("wide_qrs", seed=4)[0]
    d = delineate(rec)
    assert "wide_qrs" in d.beat_labels()
    f = rec.meta["fiducials"]
    a, b = _pairs(f["QRS_off"], d.global_()["QRS_off"], 50)
    assert a.size >= 0.9 * (f["QRS_off"] >= 0).sum()


# ---------------------------------------------------------------- API
def test_delineation_api_and_annotation_files(tmp_path):
    wfdb = pytest.importorskip("wfdb")
    rec = _sim(seed=7)[0]
    d = delineate(rec)
    assert isinstance(d, Delineation)
    ii = d.lead("II")
    assert set(ii) == set(MARKS) and all(v.dtype == np.int64 and v.size == d.n_beats for v in ii.values())
    assert np.array_equal(d.lead(1)["R"], ii["R"]) and np.array_equal(d.lead("ii")["R"], ii["R"])
    g = d.global_()
    ok = (g["P_on"] >= 0) & (g["QRS_on"] >= 0)
    assert (g["P_on"][ok] < g["QRS_on"][ok]).all()
    ok = (g["QRS_off"] >= 0) & (g["T_off"] >= 0)
    assert (g["QRS_off"][ok] < g["T_off"][ok]).all()
    with pytest.raises(ecgcore.ECGError):
        d.lead("V9")
    df = d.to_frame()
    assert len(df) == d.n_beats * 13 and list(df.columns[:2]) == ["beat", "lead"]
    # annotation files read back by the wfdb package in LUDB convention
    paths = d.to_wfdb(tmp_path / "rec")
    assert len(paths) == 13
    ann = wfdb.rdann(str(tmp_path / "rec"), "ii")
    s, sym, num = _triplets(d.marks[1])
    assert np.array_equal(ann.sample, s) and list(ann.symbol) == sym
    assert np.array_equal(ann.num, np.asarray(num))


def test_array_input_and_lead_index():
    rec = _sim(seed=8)[0]
    d = delineate(rec.signal, fs=rec.fs)
    assert d.leads == tuple(str(i) for i in range(12))
    assert d.lead(0)["QRS_on"].size == d.n_beats
    with pytest.raises(ecgcore.ECGError):
        delineate(rec.signal)          # no fs


# ---------------------------------------------------------------- bad input
def test_bad_input_gives_flags_not_exceptions(rng):
    fs = 500.0
    d = delineate(np.zeros((12, 5000)), fs=fs)                  # flat
    assert d.n_beats == 0 and d.flags["no_qrs"] and len(d.flags["unusable_leads"]) == 12
    d = delineate(rng.standard_normal((12, 5000)) * 0.05, fs=fs)   # pure noise
    assert d.marks.shape[0] == 12
    d = delineate(np.zeros((12, 600)), fs=fs)                   # 1.2 s
    assert d.flags["too_short"]
    rec = _sim(seed=9)[0]
    x = rec.signal.astype(float)
    gap = x.copy()
    gap[:, 2000:2600] = np.nan                                   # NaN gap
    d = delineate(gap, fs=rec.fs)
    m = d.marks[d.marks >= 0]
    assert not ((m >= 2000) & (m < 2600)).any()
    assert d.n_beats >= 6
    d = delineate(np.clip(x, -0.25, 0.25), fs=rec.fs)           # saturation
    assert d.n_beats >= 6
    inv = x.copy()
    inv[[0, 1]] *= -1                                            # inverted leads
    d2 = delineate(inv, fs=rec.fs)
    assert d2.n_beats == delineate(x, fs=rec.fs).n_beats
    one = np.full((12, 5000), np.nan)
    one[3] = x[1]                                                # one live lead
    d = delineate(one, fs=rec.fs)
    assert d.n_beats >= 6 and len(d.flags["unusable_leads"]) == 11


def test_paced_like_spikes_do_not_break():
    rec = _sim(seed=10)[0]
    x = rec.signal.astype(float).copy()
    r = rec.meta["fiducials"]["QRS_on"]
    for q in r[r > 10]:
        x[:, q - 8:q - 6] += 3.0                                 # 4-ms pacing spikes
    d = delineate(x, fs=rec.fs)
    a, _ = _pairs(rec.meta["fiducials"]["R"], d.r_peaks, 50)
    assert a.size >= (rec.meta["fiducials"]["R"] >= 0).sum() - 1


def test_long_record_chunked(monkeypatch):
    """The chunked path (shortened chunk) gives the same beats as one block."""
    rec = _sim(seed=12, duration=40)[0]
    whole = delineate(rec)
    monkeypatch.setattr(waves, "CHUNK_S", 10.0)
    chunked = delineate(rec)
    assert chunked.n_beats == whole.n_beats
    same = np.abs(chunked.global_marks[:, 3] - whole.global_marks[:, 3]) <= 2
    assert same.mean() >= 0.9


# ---------------------------------------------------------------- multi-lead consistency
def test_consensus_pulls_outlier_lead_and_fills_missing(rng):
    from ecgcore.delineation import _wave_kernels as wk
    L, nb = 8, 5
    base = 1000 + 400 * np.arange(nb)
    jitter = rng.integers(-3, 4, (L, nb))
    out = -np.ones((L, nb, 9), np.int64)
    out[:, :, 0] = base[None, :] + jitter
    out[:, :, 2] = base[None, :] + 50 + jitter
    cand = out.copy()
    keep = np.ones((L, nb), bool)
    out[2, 1, 0] += 60                          # one lead's onset on the wrong deflection
    keep[5, 3] = False                          # a lead where the wave was too small
    cand[5, 3, 0] = base[3] + 2                 # ... but its candidate is close: kept
    cand[5, 3, 2] = base[3] + 150               # ... this one is far: the median is used
    lead_ok = np.ones((L, nb), bool)
    new = wk.consensus_marks(out, cand, keep, lead_ok, np.ones(nb, bool),
                             np.array([0, 2], np.int64), 20, True, 3)
    assert new.all()
    med_on = int(np.round(np.median(np.delete(out[:, 1, 0], 2))))
    assert abs(out[2, 1, 0] - med_on) <= 1
    assert out[5, 3, 0] == base[3] + 2
    assert abs(out[5, 3, 2] - (base[3] + 50)) <= 3
    # untouched elsewhere: every other mark is within its jitter of the truth
    assert np.abs(out[:, :, 0] - base[None, :]).max() <= 3
    # no fill: the missing lead stays missing
    out2 = cand.copy()
    new2 = wk.consensus_marks(out2, cand, keep, lead_ok, np.ones(nb, bool),
                              np.array([0, 2], np.int64), 20, False, 3)
    assert not new2[5, 3]


def test_simulated_sinus_has_p_on_nearly_every_beat():
    n_b = n_p = 0
    for rec in _sim(n=3, seed=31):
        d = delineate(rec)
        inside = (d.r_peaks > 0.4 * rec.fs) & (d.r_peaks < rec.signal.shape[1] - 0.1 * rec.fs)
        n_b += int(inside.sum())
        n_p += int((d.global_marks[inside, 0] >= 0).sum())
        # every lead of a beat with P reports it (per-lead P never outside its own QRS)
        m = d.marks
        ok = (m[:, :, 2] >= 0) & (m[:, :, 3] >= 0)
        assert (m[:, :, 2][ok] < m[:, :, 3][ok]).all()
    assert n_p >= 0.95 * n_b, (n_p, n_b)


@pytest.mark.parametrize("rhythm", ["af", "flutter"])
def test_simulated_no_p_rhythms_more_seeds(rhythm):
    for rec in _sim(rhythm, n=3, seed=41):
        d = delineate(rec)
        assert d.flags["no_atrial_activity"] is True
        assert (d.marks[:, :, :3] == -1).all()


def test_noisy_short_and_nan_inputs_do_not_raise(rng):
    rec = _sim(seed=13)[0]
    x = rec.signal.astype(float)
    noisy = x + 0.3 * rng.standard_normal(x.shape)               # heavy EMG-like noise
    d = delineate(noisy, fs=rec.fs)
    assert d.marks.shape == (12, d.n_beats, 9)
    d = delineate(x[:, : int(1.5 * rec.fs)], fs=rec.fs)           # 1.5 s
    assert d.flags["too_short"] and d.marks.shape[0] == 12
    holes = x.copy()
    holes[rng.random(x.shape) < 0.02] = np.nan                     # scattered NaN
    d = delineate(holes, fs=rec.fs)
    assert d.n_beats >= 6
    m = d.marks
    assert ((m == -1) | ((m >= 0) & (m < x.shape[1]))).all()


# ---------------------------------------------------------------- atrial flutter
def _periodicity_ref(v, mask, lag_lo, lag_hi, n_cyc):
    """numpy reference of ``atrial_periodicity`` for one lead: 2 cov / (var a + var b)
    (np.cov) over the unblanked pairs at lags k*L, minimum over k, maximum over L."""
    best = -1.0
    for lag in range(lag_lo, lag_hi + 1):
        worst = 2.0
        for k in range(1, n_cyc + 1):
            s = k * lag
            m = mask[:-s] & mask[s:]
            c = np.cov(v[:-s][m], v[s:][m])
            worst = min(worst, 2 * c[0, 1] / (c[0, 0] + c[1, 1]))
        best = max(best, worst)
    return best


def test_atrial_periodicity_matches_numpy_and_separates_sawtooth(rng):
    from ecgcore.delineation import _wave_kernels as wk
    fs = 125.0
    n = int(10 * fs)
    t = np.arange(n) / fs
    q_on = np.arange(20, n - 20, 53)                  # "QRS" every 424 ms, 2:1 with the F waves
    q_off = q_on + 12
    mask = np.ones(n, bool)
    for a, z in zip(q_on, q_off):
        mask[a - 2:z + 3] = False
    saw = 2 * ((t / 0.212) % 1.0) - 1                 # flutter: 283/min sawtooth
    p_only = np.zeros(n)                              # sinus-like: one P bump per RR, flat elsewhere
    for a in q_on:
        i = np.arange(max(0, a - 22), a - 8)
        p_only[i] = np.sin(np.pi * (i - i[0]) / max(1, i.size - 1))
    v = np.vstack([saw, p_only]) + 0.05 * rng.standard_normal((2, n))
    lo, hi = int(0.176 * fs), int(round(0.25 * fs))
    got = wk.atrial_periodicity(v, np.ones(2, np.bool_), q_on, q_off, 2, lo, hi, 3)
    for l in range(2):
        assert got[l] == pytest.approx(_periodicity_ref(v[l], mask, lo, hi, 3), abs=1e-9)
    assert got[0] > 0.7 and got[1] < waves.PRESENCE["flutter_score"]
    # an unusable lead is not scored
    assert wk.atrial_periodicity(v, np.array([True, False]), q_on, q_off, 2, lo, hi, 3)[1] == -1


def test_ludb_flutter_strip_reports_no_p_and_sinus_is_not_flutter():
    # LUDB 35: typical atrial flutter with 2:1 conduction locked to the QRS; its
    # annotators marked no P wave in any lead (ludb.csv, header comments)
    x, fs, refs = _ludb("35")
    assert all(refs[ld]["P_peak"].size == 0 for ld in LUDB_LEADS)
    d = delineate(x, fs)
    assert d.flags["atrial_flutter"] is True and d.flags["no_atrial_activity"] is True
    assert (d.marks[:, :, :3] == -1).all() and (d.global_marks[:, :3] == -1).all()
    # sinus strips of the validation split keep their P waves
    for name in ("113", "159", "181"):
        x, fs, refs = _ludb(name)
        d = delineate(x, fs)
        assert d.flags["atrial_flutter"] is False, name
        assert (d.global_marks[:, 0] >= 0).mean() > 0.8, name


def test_simulated_flutter_flagged_as_flutter_sinus_not():
    for rec in _sim("flutter", n=3, seed=7):
        assert delineate(rec).flags["atrial_flutter"] is True
    for rec in _sim("sinus", n=3, seed=7):
        assert delineate(rec).flags["atrial_flutter"] is False


def test_weak_p_lead_pulled_to_leads_median():
    fs = 500.0
    out = np.full((4, 2, 9), -1, np.int64)
    out[:, :, 0] = [[100, 600], [104, 598], [96, 602], [140, 680]]   # lead 3 is 40 / 78 samples off
    out[:, :, 2] = [[150, 650], [152, 652], [148, 648], [151, 700]]
    keep = np.ones((4, 2), bool)
    amp = np.array([[1.0, 1.0], [0.9, 0.9], [1.1, 1.1], [0.1, 1.0]])  # lead 3 weak in beat 0 only
    waves._pull_weak_leads(out, keep, amp, np.ones(4), fs)
    assert out[3, 0, 0] == 102 and out[3, 0, 2] == 151                  # moved / already close
    assert out[3, 1, 0] == 680 and out[3, 1, 2] == 700                  # strong P: its own marks
    assert (out[:3, :, 0] == [[100, 600], [104, 598], [96, 602]]).all()   # others untouched
    assert (out[:3, :, 2] == [[150, 650], [152, 652], [148, 648]]).all()


def test_envelope_p_offset_same_in_chunked_path(monkeypatch):
    """The multi-lead P offset is computed per chunk in long records and deferred in
    short ones: both paths must give the same P offsets (chunk-local indices shifted)."""
    rec = _sim(seed=12, duration=40)[0]
    whole = delineate(rec)
    monkeypatch.setattr(waves, "CHUNK_S", 10.0)
    chunked = delineate(rec)
    both = (whole.global_marks[:, 2] >= 0) & (chunked.global_marks[:, 2] >= 0)
    assert both.sum() >= 0.8 * whole.n_beats
    same = np.abs(chunked.global_marks[both, 2] - whole.global_marks[both, 2]) <= 2
    assert same.mean() >= 0.9
    f = rec.meta["fiducials"]
    a, b = _pairs(f["P_off"], whole.global_()["P_off"], int(0.1 * rec.fs))
    assert a.size >= 0.9 * (f["P_off"] >= 0).sum()
    assert abs(np.median(b - a)) * 1000 / rec.fs < 25


def test_envelope_p_offset_kernel_follows_the_multilead_wave():
    """Three leads with a P wave ending at the same sample (different sizes and signs)
    plus a flat lead: the envelope offset lies at the end of the wave."""
    from ecgcore.delineation import _wave_kernels as wk
    fs = 500.0
    n = 1000
    y = np.zeros((4, n))
    i = np.arange(400, 450)                                   # P from 400 to 449
    bump = np.sin(np.pi * (i - 400) / 49.0)
    for l, s in enumerate((1.0, -0.5, 0.3)):
        y[l, i] = 0.1 * s * bump
        y[l, 500:520] = s * np.hanning(20)                    # "QRS" from 500
    scale = np.ones((4, 1))
    got = wk.p_offset_envelope(y, np.array([True, True, True, False]), scale,
                               np.array([500]), np.array([400]), np.array([450]), fs, 0.02, 0.3)
    assert 440 <= got[0] <= 456, got
    # no room before the QRS: not computed
    got = wk.p_offset_envelope(y, np.ones(4, np.bool_), scale, np.array([5]), np.array([0]),
                               np.array([3]), fs, 0.02, 0.3)
    assert got[0] == -1


def test_apply_p_envelope_strong_leads_keep_a_slightly_later_own_offset():
    fs = 500.0
    out = np.full((4, 1, 9), -1, np.int64)
    out[:, 0, 2] = [505, 530, 495, 505]      # lead 0: strong, 10 ms late; 1: strong, 60 ms late;
    keep = np.ones((4, 1), bool)             # 2: strong, early; 3: weak, 10 ms late
    amp = np.array([[1.0], [1.0], [1.0], [0.2]])
    env = np.array([500])
    waves._apply_p_envelope(out, keep, env, fs, amp, np.ones(4))
    assert list(out[:, 0, 2]) == [505, 500, 500, 500]
    # leads without a kept P wave are not touched
    out[:, 0, 2] = [505, 530, 495, 505]
    keep[1, 0] = False
    waves._apply_p_envelope(out, keep, env, fs, amp, np.ones(4))
    assert out[1, 0, 2] == 530


# ---------------------------------------------------------------- kernels vs numpy references
def _same(a, b):
    """Bit-identical outputs (NaN equal to NaN), recursing into tuples and dicts."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and not isinstance(a, str):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _decide_inputs(x, fs):
    xc, usable = waves._clean_rows(x)
    r = waves.detect_qrs(xc, fs, leads_usable=usable)
    marks, feats, extra, _ = waves._delineate_block(xc, usable, fs, r, lazy=False)
    return marks, feats, extra, usable, r


def test_decide_kernels_match_numpy_reference(rng):
    """``_decide`` (numba kernels) gives exactly the outputs of ``_decide_numpy`` (the
    numpy code it replaced) on simulated rhythms and on randomly damaged per-lead marks
    (missing waves and QRS, moved boundaries, weak and unusable leads)."""
    fs = 500.0
    recs = [_sim(rh, seed=s)[0] for rh, s in (("sinus", 31), ("af", 32), ("flutter", 33), ("lbbb", 34))]
    n_checked = 0
    for rec in recs:
        marks, feats, extra, usable, r = _decide_inputs(rec.signal.astype(float), rec.fs)
        for trial in range(4):
            m, f, e, u = marks.copy(), feats.copy(), extra.copy(), usable.copy()
            if trial:
                L, nb, _ = m.shape
                m[rng.random(m.shape) < 0.1] = -1                           # missing marks
                shift = rng.integers(-40, 41, m.shape) * (rng.random(m.shape) < 0.2)
                m = np.where(m >= 0, np.maximum(m + shift, 0), -1)           # moved marks
                f[..., :2] *= np.exp(rng.normal(0, 1.0, (L, nb, 2)))        # weak / strong waves
                e[..., 1] *= np.exp(rng.normal(0, 1.0, (L, nb)))
                e[..., 3] = rng.uniform(0, 1, (L, nb))                       # template projections
                e[..., 6] = np.where(rng.random(nb) < 0.7, m[0, :, 2] + rng.integers(-10, 10, nb), -1)[None, :]
                e[..., 2] = (rng.random(nb) < 0.5)[None, :]                  # template members
                u[rng.integers(0, L)] = False
            got = waves._decide(m.copy(), f.copy(), u, r, fs, e.copy())
            ref = waves._decide_numpy(m.copy(), f.copy(), u, r, fs, e.copy())
            assert _same(got, ref), (rec.meta.get("rhythm"), trial)
            n_checked += 1
    assert n_checked == 16


def test_median_windows_network_matches_numpy_median(rng):
    """The sorting-network median of beat windows equals ``np.median`` over the beats,
    for 1 to 30 beats, with ties, and falls back (same values) for windows with NaN."""
    y = rng.standard_normal((3, 3000))
    y[1] = np.round(y[1] * 2)                       # many ties
    leads = np.array([0, 1, 2])
    for nm in range(1, 31):
        starts = rng.integers(0, 2500, nm)
        ref = np.median(np.stack([y[:, s:s + 301] for s in starts]), axis=0)
        assert np.array_equal(waves._median_windows(y, leads, starts, 301), ref), nm
    y[2, 100] = np.nan
    starts = np.array([0, 50, 80])
    ref = waves._qk.median_windows(y, leads, starts, 200)
    assert _same(waves._median_windows(y, leads, starts, 200), ref)


def test_smoothing_kernels_match_cumulative_sum_formula(rng):
    """``smooth`` / ``smooth_rows`` (edge loops split, four running sums at once) give
    the centred moving average of the cumulative-sum formula bit for bit, also for
    leads shorter than the window."""
    from ecgcore.delineation import _wave_kernels as wk
    for n, w in ((5000, 11), (7, 11), (12, 5), (1, 3)):
        y = rng.standard_normal((6, n))
        h = w // 2
        i = np.arange(n)
        a, z = np.maximum(i - h, 0), np.minimum(i + h + 1, n)
        c = np.concatenate((np.zeros((6, 1)), np.cumsum(y, axis=1)), axis=1)
        ref = (c[:, z] - c[:, a]) / (z - a)
        usable = np.array([True, True, False, True, True, True])
        rows = wk.smooth_rows(y, usable, w)
        for l in range(6):
            assert np.array_equal(wk.smooth(y[l], w), ref[l]), (n, w, l)
            assert np.array_equal(rows[l], ref[l] if usable[l] else np.zeros(n)), (n, w, l)


def test_envelope_inputs_kernel_matches_numpy(rng):
    """``p_offset_envelope_marks`` takes the same inputs from the marks as the numpy
    code it replaced (earliest usable QRS onset, median P onset/offset over usable
    leads, truncated)."""
    from ecgcore.delineation import _wave_kernels as wk
    rec = _sim(seed=41)[0]
    marks, feats, extra, usable, r = _decide_inputs(rec.signal.astype(float), rec.fs)
    y = waves._qk.sos_filtfilt_rows(waves._clean_rows(rec.signal.astype(float))[0],
                                    waves._band_sos(rec.fs), int(rec.fs))
    for trial in range(3):
        m = marks.copy()
        if trial:
            m[rng.random(m.shape) < 0.3] = -1
            usable = usable.copy()
            usable[rng.integers(0, 12)] = False
        u = usable[:, None]
        big = np.iinfo(np.int64).max
        qon = np.where(u & (m[:, :, 3] >= 0), m[:, :, 3], big).min(axis=0)
        qon = np.where(qon == big, -1, qon).astype(np.int64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)      # all-NaN beats are expected
            lo = np.nanmedian(np.where(u & (m[:, :, 0] >= 0), m[:, :, 0], np.nan), axis=0)
            hi = np.nanmedian(np.where(u & (m[:, :, 2] >= 0), m[:, :, 2], np.nan), axis=0)
        ok = np.isfinite(lo) & np.isfinite(hi)
        lo = np.where(ok, lo, -1).astype(np.int64)
        hi = np.where(ok, hi, -1).astype(np.int64)
        ref = wk.p_offset_envelope(y, usable, np.ascontiguousarray(feats[:, :, 2]), qon, lo, hi,
                                   rec.fs, waves.PARAMS["smooth_s"], waves.P_ENVELOPE["alpha"])
        got = wk.p_offset_envelope_marks(y, usable, m, feats, rec.fs, waves.PARAMS["smooth_s"],
                                         waves.P_ENVELOPE["alpha"])
        assert np.array_equal(got, ref)


def test_template_middle_beat_only_matches_full_kernel():
    """The median-beat stage delineates only the middle beat of its three: its marks and
    features equal those of the full per-lead kernel."""
    from ecgcore.delineation import _wave_kernels as wk
    rec = _sim(seed=43)[0]
    xc, usable = waves._clean_rows(rec.signal.astype(float))
    y = waves._qk.sos_filtfilt_rows(xc, waves._band_sos(rec.fs), int(rec.fs))
    r = waves.detect_qrs(xc, rec.fs)[2:5]
    p = waves._params_array()
    _, _, on, off = wk.qrs_bounds_multilead(y, usable, r, rec.fs, 0.1, 0.02, 0.005)
    m_all, f_all = wk.delineate_leads(y, usable, r, rec.fs, p, on, off)
    m1, f1 = wk.delineate_leads_only(y, usable, r, rec.fs, p, on, off, 1)
    assert (m_all[:, 1] >= 0).sum() > 60
    assert np.array_equal(m1[:, 1], m_all[:, 1]) and np.array_equal(f1[:, 1], f_all[:, 1])


def test_atrial_periodicity_blanking_at_edges_matches_numpy(rng):
    """The masked segment sums come from prefix sums minus the blanked runs: check them
    against the direct numpy definition with runs at the record's start and end,
    adjacent and overlapping complexes, and a beat without bounds."""
    from ecgcore.delineation import _wave_kernels as wk
    n, pad, lo, hi = 700, 2, 20, 31
    for trial in range(6):
        q_on = np.sort(rng.choice(np.arange(0, n - 10), size=int(rng.integers(3, 12)), replace=False))
        q_on[0] = 0 if trial % 2 == 0 else q_on[0]
        q_off = q_on + rng.integers(3, 15, q_on.size)
        q_off[-1] = n - 1 if trial % 3 == 0 else q_off[-1]
        q_on[1] = -1 if trial == 5 else q_on[1]       # a beat without bounds blanks nothing
        mask = np.ones(n, bool)
        for a, z in zip(q_on, q_off):
            if a >= 0:
                mask[max(0, a - pad):z + pad + 1] = False
        v = rng.standard_normal((3, n)) + np.sin(np.arange(n) * 2 * np.pi / 25.0) * rng.uniform(0, 3, (3, 1))
        got = wk.atrial_periodicity(v, np.ones(3, np.bool_), q_on, q_off, pad, lo, hi, 3)
        for l in range(3):
            assert got[l] == pytest.approx(_periodicity_ref(v[l], mask, lo, hi, 3), abs=1e-9)


def test_qrs_correlation_kernel_matches_numpy(rng):
    """The template stage's QRS-shape test (one kernel, no window copy) against the numpy
    formula it replaced: centred windows, correlation pooled over leads."""
    from ecgcore.delineation import _wave_kernels as wk
    y = rng.standard_normal((5, 3000))
    use = np.array([0, 2, 3, 4], np.int64)
    starts = np.sort(rng.choice(np.arange(0, 2900), 9, replace=False)).astype(np.int64)
    w = 61
    tq = y[use, starts[4]:starts[4] + w] + 0.3 * rng.standard_normal((use.size, w))
    q = np.stack([[y[l, s:s + w] for s in starts] for l in use])
    q = q - q.mean(axis=2, keepdims=True)
    t = tq - tq.mean(axis=1, keepdims=True)
    ref = np.einsum("lbw,lw->b", q, t) / (np.sqrt(np.einsum("lbw,lbw->b", q, q) * np.sum(t * t)) + 1e-30)
    got = wk.qrs_correlation(y, use, starts, w, tq)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    assert got[4] > 0.8 and np.abs(np.delete(got, 4)).max() < 0.5


def test_fortran_ordered_and_readonly_input_same_outputs():
    """Records loaded as ``p_signal.T`` are Fortran-ordered and are read without a
    transposing copy; pandas may hand out read-only arrays. Every output equals the one
    for a C-ordered writeable copy (bit for bit), also for median beats; a lead with a
    NaN gap takes the cleaning path."""
    rec = _sim(seed=44)[0]
    xc = np.ascontiguousarray(rec.signal.astype(np.float64))
    xf = np.asfortranarray(xc)
    xr = xc.copy()
    xr.flags.writeable = False
    g = xf.copy(order="F")
    g[3, 100:400] = np.nan
    for other, ref in ((xf, xc), (xr, xc), (g, np.ascontiguousarray(g))):
        a, b = delineate(other, fs=rec.fs), delineate(ref, fs=rec.fs)
        for k in ("marks", "global_marks", "beat_class", "beat_quality", "flags", "features"):
            assert _same(getattr(a, k), getattr(b, k)), k
        ma, mb = ecgcore.median_beats(other, fs=rec.fs), ecgcore.median_beats(ref, fs=rec.fs)
        assert np.array_equal(ma.signal, mb.signal, equal_nan=True) and ma.meta == mb.meta
    u0 = waves._clean_rows(xc)[1]
    out, u = waves._clean_rows(xf)
    assert out is xf and np.array_equal(u, u0)           # finite: read in place, not copied
    assert np.array_equal(waves._clean_rows(xf * np.nan)[1], np.zeros(xf.shape[0], bool))


# ---------------------------------------------------------------- amplitude QRS bounds
LUDB_VAL = ("103", "113", "116", "118", "129", "130", "141", "148", "149", "150", "157", "159",
            "166", "168", "179", "181", "186", "190", "193", "194")


def test_amplitude_bounds_improve_ludb_validation(monkeypatch):
    """Per-lead QRS bounds and P offsets from the lead's own amplitude
    (``qrs_bounds_amplitude``, ``p_offset_amplitude``; constants chosen on the
    development split) against the annotators' per-lead marks of the whole validation
    split: QRS bounds with a lower SD than the slope rule alone; P offsets with a
    smaller bias than the envelope alone and no larger SD; small biases."""
    new = _ludb_errors(LUDB_VAL)[0]
    monkeypatch.setitem(waves.PARAMS, "qrs_off_amp_rel", 0.0)
    monkeypatch.setitem(waves.PARAMS, "qrs_on_amp_rel", 0.0)
    monkeypatch.setitem(waves.P_ENVELOPE, "amp_rel", 0.0)
    old = _ludb_errors(LUDB_VAL)[0]
    for m in ("QRS_on", "QRS_off", "P_off"):
        assert new[m].size >= 0.99 * old[m].size, m
        assert abs(np.mean(new[m])) < 5, (m, np.mean(new[m]))
    assert np.std(new["QRS_off"]) < np.std(old["QRS_off"]) - 0.5, (np.std(new["QRS_off"]), np.std(old["QRS_off"]))
    assert np.std(new["QRS_on"]) <= np.std(old["QRS_on"]), (np.std(new["QRS_on"]), np.std(old["QRS_on"]))
    assert abs(np.mean(new["P_off"])) < abs(np.mean(old["P_off"])) - 1.0, (np.mean(new["P_off"]), np.mean(old["P_off"]))
    assert np.std(new["P_off"]) <= np.std(old["P_off"]) + 0.25, (np.std(new["P_off"]), np.std(old["P_off"]))


def test_qrs_bounds_amplitude_kernel():
    """A complex that ends (starts) early in one lead while the slope rule's bounds are
    those of the latest (earliest) lead: the offset moves to where the lead settles,
    plus/minus the shift; bounds never move outwards; a zero fraction switches off."""
    from ecgcore.delineation import _wave_kernels as wk
    n = 400
    t = np.arange(n, dtype=float)
    y = np.zeros((2, n))
    # lead 0: complex 150..190 (R at 170), then a slow drift of 2 % of p-p until 260
    y[0, 150:191] = np.interp(t[150:191], [150, 170, 190], [0.0, 1.0, 0.0])
    y[0, 190:260] = np.linspace(0.0, 0.02, 70)
    y[0, 260:] = 0.02
    # lead 1: small wiggles (3 % of p-p) from 100, complex 140..180
    y[1, 100:140] = 0.03 * np.sin(np.arange(40) * 2 * np.pi / 20)
    y[1, 140:181] = np.interp(t[140:181], [140, 160, 180], [0.0, -1.0, 0.0])
    r = np.array([170], np.int64)
    usable = np.ones(2, np.bool_)
    marks = -np.ones((2, 1, 9), np.int64)
    marks[:, 0, 3] = 100
    marks[:, 0, 5] = 250
    m = marks.copy()
    wk.qrs_bounds_amplitude(y, usable, r, m, 0.1, 0.05, 10, 4, 3)
    # the definition, in numpy: offset = 1 + the last sample from R on that lies more than
    # 10 % of p-p from the mean of the 11 samples from the old offset, + 4
    lev = y[0, 250:261].mean()
    last = 170 + np.flatnonzero(np.abs(y[0, 170:251] - lev) > 0.1 * np.ptp(y[0, 100:251]))[-1]
    assert 186 <= last <= 189 and m[0, 0, 5] == last + 1 + 4
    # onset = the first sample more than 5 % of p-p from the level before, - 1 - 3: the
    # wiggles (3 %) do not count, the complex (from 140) does
    lev = y[1, 90:101].mean()
    first = 100 + np.flatnonzero(np.abs(y[1, 100:171] - lev) > 0.05 * np.ptp(y[1, 100:251]))[0]
    assert 140 <= first <= 143 and m[1, 0, 3] == first - 1 - 3
    assert m[0, 0, 3] > 100 and m[1, 0, 5] < 250
    # never outwards: bounds already inside the complex stay
    m2 = marks.copy()
    m2[:, 0, 3] = 160
    m2[:, 0, 5] = 175
    wk.qrs_bounds_amplitude(y, usable, r, m2, 0.1, 0.05, 10, 40, 40)
    assert np.array_equal(m2[:, 0, [3, 5]], np.array([[160, 175], [160, 175]]))
    m3 = marks.copy()
    wk.qrs_bounds_amplitude(y, usable, r, m3, 0.0, 0.0, 10, 4, 3)
    assert np.array_equal(m3, marks)
    m4 = marks.copy()
    wk.qrs_bounds_amplitude(y, np.array([False, True]), r, m4, 0.1, 0.05, 10, 4, 3)
    assert np.array_equal(m4[0], marks[0]) and m4[1, 0, 5] < 250


def _moving_average(v, h):
    """Centred moving average of 2h + 1 samples, truncated at the ends (the definition)."""
    n = v.size
    c = np.concatenate(([0.0], np.cumsum(v)))
    lo = np.maximum(np.arange(n) - h, 0)
    hi = np.minimum(np.arange(n) + h + 1, n)
    return (c[hi] - c[lo]) / (hi - lo)


def test_p_offset_amplitude_matches_definition():
    """``p_offset_amplitude`` (running-sum moving average over the P-to-QRS segment only)
    equals the definition computed with numpy on the whole smoothed lead, on a simulated
    record's band-limited leads; ``mix_p_offset`` is the clamped mean."""
    from ecgcore.delineation import _wave_kernels as wk
    rec = _sim(seed=17)[0]
    fs = rec.fs
    xc, usable = waves._clean_rows(rec.signal.astype(float))
    y = waves._qk.sos_filtfilt_rows(xc, waves._band_sos(fs), int(fs))
    r = waves.detect_qrs(xc, fs)
    m, f, e, _ = waves._delineate_block(xc, usable, fs, r, lazy=False)
    w, k, rel = int(0.02 * fs) | 1, int(0.02 * fs), 0.25
    got = wk.p_offset_amplitude(y, usable, m, w, k, rel)
    h = w // 2
    checked = 0
    for l in range(y.shape[0]):
        ys = _moving_average(y[l], h)
        for b in range(m.shape[1]):
            pk, q = m[l, b, 1], m[l, b, 3]
            if pk < 0 or q < 0 or q - k < pk:
                assert got[l, b] == -1
                continue
            lev = ys[q - k:q - 1].mean()
            near = np.flatnonzero(np.abs(ys[pk:q] - lev) <= rel * abs(ys[pk] - lev))
            assert got[l, b] == (pk + near[0] if near.size else q - 1), (l, b)
            checked += 1
    assert checked >= 20
    out = m.copy()
    cand = got.copy()
    wk.mix_p_offset(out, cand, 3)
    ok = (m[:, :, 2] >= 0) & (cand >= 0)
    want = (m[:, :, 2] + cand + 3) // 2
    want = np.where(m[:, :, 3] >= 0, np.minimum(want, m[:, :, 3] - 1), want)
    want = np.where(m[:, :, 1] >= 0, np.maximum(want, m[:, :, 1]), want)
    assert ok.sum() >= 20
    assert np.array_equal(out[:, :, 2], np.where(ok, want, m[:, :, 2]))
    assert np.array_equal(np.delete(out, 2, axis=2), np.delete(m, 2, axis=2))


# ---------------------------------------------------------------- amplitude P onsets
def _ludb_p_on_errors(names):
    err = []
    for name in names:
        x, fs, refs = _ludb(name)
        d = delineate(x, fs)
        for li, ld in enumerate(LUDB_LEADS):
            a, b = _pairs(refs[ld]["P_on"], d.lead(li)["P_on"], int(0.15 * fs))
            err.extend((b - a) * 1000.0 / fs)
    return np.asarray(err)


def test_amplitude_p_onset_improves_ludb_validation(monkeypatch):
    """Per-lead P onsets averaged with the lead's own amplitude onset
    (``p_onset_amplitude``, ``mix_p_onset``; constants chosen on the development split)
    against the annotators' per-lead P onsets of the whole validation split: lower SD
    and no larger bias than the decided onsets alone, and no P onset lost."""
    new = _ludb_p_on_errors(LUDB_VAL)
    monkeypatch.setitem(waves.P_ONSET_AMP, "rel", 0.0)
    old = _ludb_p_on_errors(LUDB_VAL)
    assert new.size >= old.size, (new.size, old.size)
    assert np.std(new) < np.std(old) - 0.2, (np.std(new), np.std(old))
    assert abs(np.mean(new)) <= abs(np.mean(old)), (np.mean(new), np.mean(old))
    assert abs(np.mean(new)) < 5


def test_p_onset_amplitude_matches_definition():
    """``p_onset_amplitude`` (moving average computed only where visited) equals the
    definition computed with numpy on the whole smoothed lead, on a simulated record's
    band-limited leads and decided marks; ``mix_p_onset`` is the rounded, capped and
    clamped mean."""
    from ecgcore.delineation import _wave_kernels as wk
    rec = _sim(seed=17)[0]
    fs = rec.fs
    xc, usable = waves._clean_rows(rec.signal.astype(float))
    y = waves._qk.sos_filtfilt_rows(xc, waves._band_sos(fs), int(fs))
    out = delineate(rec).marks.copy()
    w, k, gap, rel, mb = int(0.02 * fs) | 1, int(0.02 * fs), int(0.008 * fs), 0.3, int(0.1 * fs)
    got = wk.p_onset_amplitude(y, usable, out, w, k, gap, rel, mb)
    h = w // 2
    checked = found = 0
    for l in range(y.shape[0]):
        ys = _moving_average(y[l], h)
        for b in range(out.shape[1]):
            on, pk = out[l, b, 0], out[l, b, 1]
            if on < 0 or pk <= on or on - gap - k < 0:
                assert got[l, b] == -1
                continue
            lev = ys[on - gap - k:on - gap].mean()
            idx = np.arange(pk, max(0, pk - mb) - 1, -1)
            near = idx[np.abs(ys[idx] - lev) <= rel * abs(ys[pk] - lev) + 1e-12]
            assert got[l, b] == (near[0] if near.size else -1), (l, b)
            checked += 1
            found += near.size > 0
    assert checked >= 20 and found >= 20
    sh, cap = -8, 50
    mixed = out.copy()
    wk.mix_p_onset(mixed, got, sh, cap)
    ok = (out[:, :, 0] >= 0) & (got >= 0) & (np.abs(got + sh - out[:, :, 0]) <= cap)
    want = np.rint(0.5 * (out[:, :, 0] + got + sh)).astype(np.int64)
    want = np.where(out[:, :, 1] >= 0, np.minimum(want, out[:, :, 1]), want)
    assert ok.sum() >= 20
    assert np.array_equal(mixed[:, :, 0], np.where(ok, np.maximum(want, 0), out[:, :, 0]))
    assert np.array_equal(mixed[:, :, 1:], out[:, :, 1:])
    # a candidate further than the cap from the onset is ignored
    far = np.where(got >= 0, got + 200, -1)
    m2 = out.copy()
    wk.mix_p_onset(m2, far, 0, cap)
    assert np.array_equal(m2, out)


def test_amplitude_p_onset_same_in_chunked_path(monkeypatch):
    """Long records compute the amplitude P onsets chunk by chunk after the decisions
    (the band-limited chunk again), short ones from the kept block: same per-lead P
    onsets (chunk-local indices shifted), and the step runs in the chunked path."""
    rec = _sim(seed=12, duration=40)[0]
    monkeypatch.setattr(waves, "CHUNK_S", 10.0)
    chunked = delineate(rec).marks[:, :, 0]
    monkeypatch.setitem(waves.P_ONSET_AMP, "rel", 0.0)
    chunked_off = delineate(rec).marks[:, :, 0]
    monkeypatch.setitem(waves.P_ONSET_AMP, "rel", 0.3)
    monkeypatch.setattr(waves, "CHUNK_S", 60.0)
    whole = delineate(rec).marks[:, :, 0]
    both = (whole >= 0) & (chunked >= 0)
    assert both.sum() >= 0.8 * (whole >= 0).sum() and both.sum() >= 50
    assert (np.abs(chunked[both] - whole[both]) <= 2).mean() >= 0.9
    assert (chunked != chunked_off).sum() >= 0.2 * both.sum()


@pytest.mark.parametrize("fs", [40.0, 50.0, 60.0, 66.0])
def test_low_sampling_rates_delineate_without_errors(fs):
    # below ~67 Hz some 10-30 ms level windows hold no sample: those rules are skipped
    # (they raised ZeroDivisionError), the rest of the delineation still runs
    rec = _sim(seed=3)[0]
    ref = delineate(rec)
    low = ecgcore.Record(ecgcore.signal.resample(rec.signal.astype(np.float64), rec.fs, fs).astype(np.float32),
                         fs, rec.leads)
    d = delineate(low)
    assert d.n_beats == ref.n_beats
    # the R peaks land on the same beats (within one low-rate sample)
    assert np.all(np.abs(d.r_peaks / fs - ref.r_peaks / rec.fs) <= 1.5 / fs)
    m = ecgcore.measure(low)
    assert abs(m["heart_rate_bpm"] - ecgcore.measure(rec)["heart_rate_bpm"]) < 2
    assert ecgcore.median_beats(low).meta["n_beats"] > 0
    assert d.flags["low_sampling_rate"] is (fs < 50.0)
    assert not ref.flags["low_sampling_rate"] and "sampling_rate_too_low" not in d.flags


@pytest.mark.parametrize("fs", [10.0, 20.0, 24.0])
def test_rates_that_do_not_resolve_qrs_report_no_beats(fs):
    # below 25 Hz the detector found wrong beats (20 Hz: PPV 70 % on LUDB); none is
    # reported, with a flag and a reason instead of an exception
    rec = _sim(seed=3)[0]
    low = ecgcore.Record(ecgcore.signal.resample(rec.signal.astype(np.float64), rec.fs, fs).astype(np.float32),
                         fs, rec.leads)
    d = delineate(low)
    assert d.n_beats == 0
    assert d.flags["sampling_rate_too_low"] and d.flags["low_sampling_rate"] and d.flags["no_qrs"]
    m = ecgcore.measure(low)
    assert np.isnan(m["heart_rate_bpm"]) and "below 25 Hz" in m["reasons"]["heart_rate_bpm"]
    with pytest.warns(RuntimeWarning, match="below 25 Hz"):
        assert ecgcore.detect_qrs(low.signal, fs).size == 0
