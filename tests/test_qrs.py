"""QRS detection: MIT-BIH 100 and LUDB (with noise) against annotations, simulated
records against true fiducials, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_path

from ecgcore.delineation import detect_qrs
from ecgcore.errors import ECGError

BEATS = set("NLRBAaJSVrFejnE/fQ?")


def _match(ref, det, tol):
    """Nearest-first one-to-one matching; returns the number of matched pairs."""
    ref, det = np.asarray(ref), np.asarray(det)
    if ref.size == 0 or det.size == 0:
        return 0
    d = np.abs(ref[:, None] - det[None, :])
    ii, jj = np.nonzero(d <= tol)
    order = np.argsort(d[ii, jj], kind="stable")
    ur, ud, n = set(), set(), 0
    for k in order:
        if ii[k] in ur or jj[k] in ud:
            continue
        ur.add(ii[k]); ud.add(jj[k]); n += 1
    return n


def _sim(rhythm="sinus", n=1, seed=3, noise="mild", **kw):
    from ecgcore.synthetic import simulate
    return simulate(n=n, seed=seed, rhythm=rhythm, noise=noise, **kw)


def test_mitbih_100_se_ppv():
    wfdb = pytest.importorskip("wfdb")
    base = str(shared_path("data", "wfdb", "100.atr")).removesuffix(".atr")
    rec, ann = wfdb.rdrecord(base), wfdb.rdann(base, "atr")
    ref = np.array([s for s, c in zip(ann.sample, ann.symbol) if c in BEATS])
    for x in (rec.p_signal.T, rec.p_signal.T[0]):     # both leads fused, and MLII alone
        det = detect_qrs(x, rec.fs)
        tp = _match(ref, det, int(0.15 * rec.fs))
        assert tp / ref.size >= 0.997 and tp / det.size >= 0.997, (tp, ref.size, det.size)


def test_ludb_noisy_copies(rng):
    wfdb = pytest.importorskip("wfdb")
    from scipy.signal import butter, sosfilt
    tp = nr = nd = 0
    for name in ("1", "103", "150"):
        base = str(shared_path("data", "ludb", name + ".hea")).removesuffix(".hea")
        rec = wfdb.rdrecord(base)
        x = rec.p_signal.T
        fs = rec.fs
        rs = np.sort(np.concatenate([wfdb.rdann(base, ld).sample[np.array(wfdb.rdann(base, ld).symbol) == "N"]
                                     for ld in ("ii", "v2", "v5")]))
        groups = np.split(rs, np.flatnonzero(np.diff(rs) > 0.2 * fs) + 1)
        ref = np.array([int(np.median(g)) for g in groups])
        t = np.arange(x.shape[1]) / fs
        p = np.mean((x - x.mean(1, keepdims=True)) ** 2, axis=1, keepdims=True) / 10.0  # 10 dB
        emg = sosfilt(butter(2, [20, 150], "band", fs=fs, output="sos"), rng.standard_normal(x.shape))
        for noise in (np.sin(2 * np.pi * 0.3 * t)[None] * np.ones((12, 1)), emg,
                      np.sin(2 * np.pi * 50 * t)[None] * np.ones((12, 1))):
            noisy = x + noise * np.sqrt(p / np.mean(noise ** 2, axis=1, keepdims=True))
            det = detect_qrs(noisy, fs)
            det = det[(det >= ref.min() - 75) & (det <= ref.max() + 75)]
            tp += _match(ref, det, 75); nr += ref.size; nd += det.size
    assert tp / nr >= 0.99 and tp / nd >= 0.99, (tp, nr, nd)


@pytest.mark.parametrize("rhythm", ["sinus", "af", "wide_qrs", "lbbb"])
def test_simulated_r_peaks(rhythm):
    for rec in _sim(rhythm, n=2):
        true_r = rec.meta["fiducials"]["R"]
        true_r = true_r[true_r >= 0]
        det = detect_qrs(rec.signal, rec.fs)
        assert det.dtype == np.int64 and np.all(np.diff(det) > 0)
        tp = _match(true_r, det, int(0.05 * rec.fs))
        assert tp == true_r.size == det.size


def test_single_lead_and_inverted_lead_agree():
    rec = _sim()[0]
    ii = rec["II"].astype(float)
    a = detect_qrs(ii, rec.fs)
    b = detect_qrs(-ii, rec.fs)
    assert a.size == b.size and _match(a, b, int(0.05 * rec.fs)) == a.size


def test_bad_input_no_exceptions(rng):
    fs = 500.0
    assert detect_qrs(np.zeros((12, 5000)), fs).size == 0               # flat
    assert detect_qrs(np.full(5000, np.nan), fs).size == 0               # all missing
    assert detect_qrs(np.zeros(100), fs).size == 0                        # 0.2 s
    noise = detect_qrs(rng.standard_normal((12, 5000)), fs)               # pure noise
    assert noise.dtype == np.int64
    rec = _sim()[0]
    x = rec.signal.astype(float)
    ref = detect_qrs(x, rec.fs)
    gap = x.copy()
    gap[:, 1000:1600] = np.nan                                            # NaN gap
    det = detect_qrs(gap, rec.fs)
    outside = ref[(ref < 950) | (ref > 1650)]
    assert _match(outside, det, 10) == outside.size
    sat = np.clip(x, -0.3, 0.3)                                           # saturation
    assert _match(ref, detect_qrs(sat, rec.fs), 25) >= ref.size - 1
    with pytest.raises(ECGError):
        detect_qrs(np.zeros((2, 2, 10)), fs)
    with pytest.raises(ECGError):
        detect_qrs(x, -1)


def test_long_record_is_chunked():
    """One hour (two leads) goes through the chunked path and finds every beat."""
    rec = _sim(duration=60, n=1)[0]
    one = rec.signal[[1, 7]].astype(np.float64)
    r1 = detect_qrs(one, rec.fs)
    x = np.tile(one, (1, 60))                     # 60 min
    r = detect_qrs(x, rec.fs)
    n = one.shape[1]
    expect = (r1[None, :] + n * np.arange(60)[:, None]).ravel()
    tp = _match(expect, r, int(0.05 * rec.fs))
    assert tp >= expect.size - 60 and r.size <= expect.size + 60


# ---------------------------------------------------------------- kernels vs scipy / numpy
@pytest.mark.parametrize("order,btype,wn", [(1, "high", 0.5), (2, "low", 40.0), (4, "low", 25.0),
                                             (6, "band", (1.0, 40.0))])
def test_sos_kernels_match_scipy(rng, order, btype, wn):
    """The fused-section filters (one row, columns forward/backward, zero phase) against
    scipy's sosfilt (steady-state start) and sosfiltfilt, for 1 to 6 sections."""
    from scipy import signal
    from ecgcore.delineation import _qrs_kernels as k
    fs = 500.0
    sos = np.ascontiguousarray(signal.butter(order, wn, btype=btype, fs=fs, output="sos"))
    x = np.cumsum(rng.standard_normal((5, 1500)), axis=1) + 3.0       # offset + wander
    zi = signal.sosfilt_zi(sos)
    ref = np.stack([signal.sosfilt(sos, row, zi=zi * row[0])[0] for row in x])
    out = np.empty(x.shape[1])
    for r in range(x.shape[0]):
        k.sos_forward(x[r], sos, out)
        np.testing.assert_allclose(out, ref[r], rtol=1e-9, atol=1e-9)
    buf = np.ascontiguousarray(x.T)
    k.sos_cols(buf, sos, False)
    np.testing.assert_allclose(buf.T, ref, rtol=1e-9, atol=1e-9)
    buf = np.ascontiguousarray(x[:, ::-1].T)
    k.sos_cols(buf, sos, True)                                         # backward = forward of reversed
    np.testing.assert_allclose(buf.T, ref[:, ::-1], rtol=1e-9, atol=1e-9)
    zp = k.sos_filtfilt_rows(x, sos, 300)
    np.testing.assert_allclose(zp, signal.sosfiltfilt(sos, x, padtype="odd", padlen=300),
                               rtol=1e-8, atol=1e-8)


def test_scan_rows_matches_numpy(rng):
    """Non-finite counts and finite ranges from the bit-pattern scan equal numpy's."""
    from ecgcore.delineation import _qrs_kernels as k
    for trial in range(60):
        L, n = int(rng.integers(1, 14)), int(rng.integers(0, 400))
        x = rng.standard_normal((L, n)) * 10.0 ** rng.uniform(-8, 3)
        if trial % 4 == 1:
            x = -np.abs(x)
        if trial % 5 == 2:
            x[:] = 0.0
        if n and trial % 3 == 0:
            x[rng.integers(0, L, 3), rng.integers(0, n, 3)] = [np.nan, np.inf, -np.inf]
        nbad, lo, hi = k.scan_rows(x)
        fin = np.isfinite(x)
        assert np.array_equal(nbad, (~fin).sum(axis=1))
        np.testing.assert_array_equal(lo, np.where(fin, x, np.inf).min(axis=1, initial=np.inf))
        np.testing.assert_array_equal(hi, np.where(fin, x, -np.inf).max(axis=1, initial=-np.inf))


@pytest.mark.parametrize("n_leads", [1, 3, 12])
def test_qrs_feature_matches_numpy_reference(rng, n_leads):
    """The fused multi-lead feature against a plain scipy/numpy implementation of its
    definition (steady-state low-pass, +-8 ms difference, squared, / median of 1-s
    maxima, clipped at 4, summed over leads, centred 100-ms mean / lead count)."""
    from scipy import signal
    from ecgcore.delineation import _qrs_kernels as k
    from ecgcore.delineation.qrs import _lowpass_sos
    rec = _sim(n=1, seed=11)[0]
    fs = rec.fs
    x = np.ascontiguousarray(rec.signal[:n_leads].astype(np.float64))
    x[0] += 0.05 * rng.standard_normal(x.shape[1])
    usable = np.ones(n_leads, bool)
    if n_leads > 2:
        usable[1] = False
    sos = _lowpass_sos(fs)
    kk = int(round(0.008 * fs))
    n = x.shape[1]
    fused = np.zeros(n)
    used = 0
    for l in np.flatnonzero(usable):
        lp = signal.sosfilt(sos, x[l], zi=signal.sosfilt_zi(sos) * x[l, 0])[0]
        e = np.zeros(n)
        e[kk:n - kk] = (lp[2 * kk:] - lp[:n - 2 * kk]) ** 2
        nb = max(1, n // int(fs))
        bm = [e[b * int(fs):(n if b == nb - 1 else (b + 1) * int(fs))].max() for b in range(nb)]
        fused += np.minimum(e / np.median(bm), 4.0)
        used += 1
    w = int(round(0.1 * fs))
    c = np.concatenate(([0.0], np.cumsum(fused)))
    i = np.arange(n)
    ref = (c[np.clip(i - w // 2 + w, 0, n)] - c[np.clip(i - w // 2, 0, n)]) / (w * used)
    np.testing.assert_allclose(k.qrs_feature(x, fs, sos, usable), ref, rtol=1e-7, atol=1e-9)


def test_layouts_and_dtypes_give_the_same_beats(rng):
    """Read-only, Fortran-ordered, float32, int16 and strided inputs take other paths
    (copy, clean) than C-contiguous float64: same beats (int16 within rounding)."""
    rec = _sim(n=1, seed=4)[0]
    x = np.ascontiguousarray(rec.signal.astype(np.float64))
    ref = detect_qrs(x, rec.fs)
    ro = x.copy()
    ro.flags.writeable = False
    assert np.array_equal(detect_qrs(ro, rec.fs), ref)
    assert np.array_equal(detect_qrs(np.asfortranarray(x), rec.fs), ref)
    assert np.array_equal(detect_qrs(x.T.copy().T, rec.fs), ref)
    assert _match(ref, detect_qrs(x.astype(np.float32), rec.fs), 2) == ref.size
    assert _match(ref, detect_qrs((x * 1000).astype(np.int16), rec.fs), 2) == ref.size
    one = x[1].copy()
    assert np.array_equal(detect_qrs(np.asfortranarray(x)[1], rec.fs), detect_qrs(one, rec.fs))
    assert np.array_equal(detect_qrs(x, rec.fs, leads_usable=[True] * x.shape[0]), ref)
    with pytest.raises(ECGError, match="leads_usable"):
        detect_qrs(x, rec.fs, leads_usable=[True, False])


@pytest.mark.parametrize("n_beats", [1, 2, 5, 8])
def test_median_windows_equals_numpy_median(rng, n_beats):
    """The incremental-sort median of beat windows gives numpy's median exactly."""
    from ecgcore.delineation import _qrs_kernels as k
    y = np.cumsum(rng.standard_normal((4, 3000)), axis=1)
    starts = np.sort(rng.choice(2500, n_beats, replace=False)).astype(np.int64)
    leads = np.array([0, 2, 3], np.int64)
    w = 400
    ref = np.median(y[leads][:, starts[:, None] + np.arange(w)[None, :]], axis=1)
    np.testing.assert_array_equal(k.median_windows(y, leads, starts, w), ref)


def test_scan_cols_and_detect_clean_match(rng):
    """``scan_cols`` (Fortran-ordered records read in memory order) gives ``scan_rows``'s
    counts and ranges; ``detect_clean`` (no second scan) the R peaks of ``detect`` on
    cleaned input, in either memory order."""
    from ecgcore.delineation import _qrs_kernels as k
    from ecgcore.delineation.qrs import _clean_rows, _detect_clean, _lowpass_sos
    for trial in range(40):
        L, n = int(rng.integers(1, 14)), int(rng.integers(1, 300))
        x = rng.standard_normal((L, n)) * 10.0 ** rng.uniform(-8, 3)
        if trial % 4 == 1:
            x = -np.abs(x)
        if trial % 3 == 0:
            x[rng.integers(0, L, 3), rng.integers(0, n, 3)] = [np.nan, np.inf, -np.inf]
        got = k.scan_cols(np.ascontiguousarray(x.T))
        for a, b in zip(got, k.scan_rows(np.ascontiguousarray(x))):
            assert np.array_equal(a, b)
    rec = _sim(n=1, seed=12)[0]
    fs = rec.fs
    x = rec.signal.astype(np.float64)
    x[4] = 0.0                                                  # a flat lead
    for arr in (np.ascontiguousarray(x), np.asfortranarray(x)):
        xc, usable = _clean_rows(arr)
        assert not usable[4]
        ref = k.detect(np.ascontiguousarray(x), np.ones(x.shape[0], np.bool_), fs, _lowpass_sos(fs), 0.25, 0.08)[0]
        got = _detect_clean(xc, usable, fs)
        assert got.size > 5 and np.array_equal(got, ref)
