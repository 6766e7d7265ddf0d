"""Layout and loop-order rewrites of the delineation kernels give the same bits.

Fortran-ordered (``p_signal.T``) records are read through their transpose, without a
copy (``_qrs_kernels.sos_filtfilt_cols``, ``detect_clean_cols``); the references are
scipy's filter and the row-layout path on a C copy of the same samples. The moving
average of ``p_offset_envelope`` sums across samples in vectorised loops; the reference
is the plain per-sample sum in the same order.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from ecgcore.delineation import delineate, detect_qrs, waves
from ecgcore.delineation import _qrs_kernels as qk
from ecgcore.delineation import _wave_kernels as wk
from ecgcore.delineation.qrs import _detect_clean_cols, _lowpass_sos


def _fortran_record(rng, n_leads=12, n=5000, fs=500.0):
    """Seeded 12-lead-like record (QRS-like spikes every ~0.8 s, P/T bumps, noise),
    Fortran-ordered as wfdb's ``p_signal.T``."""
    t = np.arange(n) / fs
    x = np.zeros((n_leads, n))
    beats = np.arange(0.4, t[-1] - 0.4, 0.8 + 0.05 * rng.standard_normal())
    gains = rng.uniform(-1.5, 1.5, n_leads)
    for b in beats:
        x += gains[:, None] * np.exp(-0.5 * ((t - b) / 0.012) ** 2)
        x += 0.15 * gains[:, None] * np.exp(-0.5 * ((t - b + 0.16) / 0.025) ** 2)
        x += 0.3 * gains[:, None] * np.exp(-0.5 * ((t - b - 0.3) / 0.05) ** 2)
    x += 0.02 * rng.standard_normal(x.shape) + 0.2 * np.sin(2 * np.pi * 0.3 * t)
    return np.asfortranarray(x)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filtfilt_cols_matches_scipy_and_rows(seed):
    rng = np.random.default_rng(seed)
    x = _fortran_record(rng, n_leads=int(rng.integers(2, 13)), n=int(rng.integers(600, 4000)))
    sos = waves._band_sos(500.0)
    ref = signal.sosfiltfilt(sos, x, axis=1, padtype="odd", padlen=500)
    got = qk.sos_filtfilt_cols(x.T, sos, 500)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    assert got.flags.c_contiguous and got.shape == x.shape
    # the row layout on a C copy: the same bits
    assert np.array_equal(got, qk.sos_filtfilt_rows(np.ascontiguousarray(x), sos, 500))


@pytest.mark.parametrize("seed", [3, 4])
def test_detect_cols_same_beats_as_rows(seed):
    rng = np.random.default_rng(seed)
    x = _fortran_record(rng)
    usable = np.ones(x.shape[0], np.bool_)
    usable[int(rng.integers(0, 12))] = False
    r = _detect_clean_cols(x.T, usable, 500.0)
    assert r.size >= 5
    assert np.array_equal(r, detect_qrs(np.ascontiguousarray(x), 500.0, leads_usable=usable))
    # one usable lead: the single-lead branch reads a column
    one = np.zeros(x.shape[0], np.bool_)
    one[2] = True
    assert np.array_equal(_detect_clean_cols(x.T, one, 500.0),
                          qk.detect_clean(np.ascontiguousarray(x), one, 500.0, _lowpass_sos(500.0), 0.25, 0.08))


@pytest.mark.parametrize("seed", [5, 6])
def test_delineate_fortran_equals_c_order(seed):
    rng = np.random.default_rng(seed)
    x = _fortran_record(rng)
    a = delineate(x, 500.0)
    b = delineate(np.ascontiguousarray(x), 500.0)
    assert a.n_beats >= 5
    assert np.array_equal(a.marks, b.marks) and np.array_equal(a.global_marks, b.global_marks)
    assert np.array_equal(a.beat_class, b.beat_class)
    assert np.array_equal(a.beat_quality, b.beat_quality, equal_nan=True)
    assert a.flags == b.flags or repr(a.flags) == repr(b.flags)
    for k in a.features:
        assert np.array_equal(a.features[k], b.features[k], equal_nan=True), k
    # a NaN gap: the Fortran record takes the copying path, same marks as the C one
    x2 = x.copy(order="F")
    x2[3, 1000:1300] = np.nan
    assert np.array_equal(delineate(x2, 500.0).marks, delineate(np.ascontiguousarray(x2), 500.0).marks)


def _envelope_reference(y, usable, scale, qon, pk_lo, pk_hi, fs, smooth_s, alpha):
    """``p_offset_envelope`` written per sample (each moving-average sum from 0.0 in
    window order), the form the kernel had before its sums were vectorised."""
    L, n = y.shape
    nb = qon.shape[0]
    out = -np.ones(nb, np.int64)
    h = max(3, int(smooth_s * fs) | 1) // 2
    ia, ib = int(0.03 * fs), max(1, int(0.008 * fs))
    for b in range(nb):
        q, a = qon[b], pk_lo[b]
        z = q - ib
        if q < 0 or a < 0 or q - ia < 0 or z - a < 3:
            continue
        hi = min(pk_hi[b], z - int(0.02 * fs))
        if hi <= a:
            continue
        s0 = min(a, q - ia)
        ys = np.zeros((L, z - s0))
        env = np.zeros(z - a)
        for l in range(L):
            if not usable[l] or scale[l, b] <= 0.0:
                continue
            for i in range(s0, z):
                lo, up = max(0, i - h), min(n, i + h + 1)
                acc = 0.0
                for k in range(lo, up):
                    acc += y[l, k]
                ys[l, i - s0] = acc / (up - lo)
            p = 0.0
            for i in range(q - ia, z):
                p += ys[l, i - s0]
            p /= (z - (q - ia))
            inv = 1.0 / scale[l, b]
            for i in range(a, z):
                env[i - a] += abs(ys[l, i - s0] - p) * inv
        k = int(np.argmax(env[:hi - a]))
        base = env[k:].min()
        th = base + alpha * (env[k] - base)
        j = k
        while j < z - a - 1 and env[j] > th:
            j += 1
        out[b] = a + j
    return out


def test_p_offset_envelope_matches_per_sample_sums():
    rng = np.random.default_rng(7)
    L, n, fs = 5, 900, 500.0
    y = np.cumsum(rng.standard_normal((L, n)), axis=1) * 0.01
    usable = np.array([True, True, False, True, True])
    scale = rng.uniform(0.5, 2.0, (L, 6))
    scale[4, 2] = 0.0
    # windows near both ends of the record (the edge sums) and inside it
    qon = np.array([20, 150, 400, 620, 890, 300], np.int64)
    pk_lo = np.array([2, 60, 300, 540, 800, -1], np.int64)
    pk_hi = np.array([15, 120, 360, 590, 870, 280], np.int64)
    got = wk.p_offset_envelope(y, usable, scale, qon, pk_lo, pk_hi, fs, 0.02, 0.3)
    ref = _envelope_reference(y, usable, scale, qon, pk_lo, pk_hi, fs, 0.02, 0.3)
    assert np.array_equal(got, ref)
    assert (got >= 0).sum() >= 3
