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
