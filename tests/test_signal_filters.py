"""ecgcore.signal filters and the fused chain against scipy.signal."""

from __future__ import annotations


import numpy as np
import pytest
import scipy.signal as ss

from ecgcore.errors import PreprocessError
import ecgcore.signal as S

from _signal_helpers import DTYPE_TOL, assert_close_range, real_signals  # noqa: E402


def _ecg_like(rng, shape, fs=500.0):
    """Seeded synthetic ECG-ish signal: wander + beats + mains + noise."""
    n = shape[-1]
    t = np.arange(n) / fs
    base = 0.3 * np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 6, shape[:-1] + (1,)))
    beats = np.exp(-((t % 0.8) - 0.4) ** 2 / 2e-4)
    mains = 0.05 * np.sin(2 * np.pi * 50 * t)
    return base + beats + mains + 0.05 * rng.standard_normal(shape)


SOS_CASES = [
    ("bandpass", dict(low=0.5, high=40.0), lambda fs: ss.butter(4, [0.5, 40], "bandpass", fs=fs, output="sos")),
    ("highpass", dict(cutoff=0.5), lambda fs: ss.butter(4, 0.5, "highpass", fs=fs, output="sos")),
    ("lowpass", dict(cutoff=40.0, order=2), lambda fs: ss.butter(2, 40, "lowpass", fs=fs, output="sos")),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,kw,design", SOS_CASES)
@pytest.mark.parametrize("shape", [(12, 5000), (3, 2, 1001), (777,), (5, 28)])
def test_butter_zero_phase_equals_sosfiltfilt(rng, dtype, name, kw, design, shape):
    fs = 500.0
    x = (np.cumsum(rng.standard_normal(shape), axis=-1) + _ecg_like(rng, shape)).astype(dtype)
    sos = design(fs)
    padlen = 3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
    if shape[-1] <= padlen:
        with pytest.raises(PreprocessError, match="too short"):
            getattr(S, name)(x, fs, **kw)
        with pytest.raises(ValueError):
            ss.sosfiltfilt(sos, x)
        return
    y = getattr(S, name)(x, fs, **kw)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close_range(y, ss.sosfiltfilt(sos, x), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_causal_equals_sosfilt(rng, dtype):
    x = _ecg_like(rng, (4, 3001)).astype(dtype)
    sos = ss.butter(4, [0.5, 40], "bandpass", fs=500, output="sos")
    assert_close_range(S.bandpass(x, 500, 0.5, 40, zero_phase=False), ss.sosfilt(sos, x), dtype)
    assert_close_range(S.sosfilt(sos, x), ss.sosfilt(sos, x), dtype)


def test_length_just_above_padding(rng):
    sos = ss.butter(4, [0.5, 40], "bandpass", fs=500, output="sos")
    padlen = 3 * (2 * len(sos) + 1)
    for n in (padlen + 1, padlen + 2, padlen + 7):
        x = rng.standard_normal((2, n))
        assert_close_range(S.bandpass(x, 500, 0.5, 40), ss.sosfiltfilt(sos, x), np.float64)
    with pytest.raises(PreprocessError):
        S.bandpass(rng.standard_normal((2, padlen)), 500, 0.5, 40)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_axis_not_last(rng, dtype):
    x = _ecg_like(rng, (12, 2000)).T.copy().astype(dtype)  # (time, leads)
    sos = ss.butter(4, [0.5, 40], "bandpass", fs=500, output="sos")
    y = S.bandpass(x, 500, 0.5, 40, axis=0)
    assert y.shape == x.shape
    assert_close_range(y, ss.sosfiltfilt(sos, x, axis=0), dtype)
    b, a = ss.iirnotch(50, 30, fs=500)
    assert_close_range(S.notch(x, 500, axis=0), ss.filtfilt(b, a, x, axis=0), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [10, 11, 5000, 4097])
def test_notch_equals_filtfilt(rng, dtype, n):
    x = _ecg_like(rng, (3, n)).astype(dtype)
    for freq, q in ((50.0, 30.0), (60.0, 25.0)):
        b, a = ss.iirnotch(freq, q, fs=500)
        y = S.notch(x, 500, freq, q)
        assert y.dtype == dtype
        assert_close_range(y, ss.filtfilt(b, a, x), dtype)
    with pytest.raises(PreprocessError):
        S.notch(x[:, :9], 500)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ba_form_equals_filtfilt_ecgfounder(rng, dtype):
    # ECGFounder: butter(4, [0.67, 40], 'bandpass') as (b, a), filtfilt padlen 27
    x = (_ecg_like(rng, (12, 5000)) + np.cumsum(rng.standard_normal((12, 5000)), axis=1) * 0.01).astype(dtype)
    b, a = ss.butter(4, [0.67, 40], "bandpass", fs=500)
    assert_close_range(S.bandpass(x, 500, 0.67, 40, form="ba"), ss.filtfilt(b, a, x), dtype)
    assert_close_range(S.filtfilt(b, a, x), ss.filtfilt(b, a, x), dtype)


def test_real_records(shared):
    for x, fs in real_signals():
        hi = min(40.0, fs / 2 - 5)
        sos = ss.butter(4, [0.5, hi], "bandpass", fs=fs, output="sos")
        b, a = ss.iirnotch(50, 30, fs=fs) if fs > 100 else (None, None)
        for dtype in (np.float64, np.float32):
            xx = x.astype(dtype)
            assert_close_range(S.bandpass(xx, fs, 0.5, hi), ss.sosfiltfilt(sos, xx), dtype)
            if fs > 100:  # a 50 Hz notch needs fs above 100 Hz (PTB-XL lr is 100 Hz)
                assert_close_range(S.notch(xx, fs), ss.filtfilt(b, a, xx), dtype)


def test_bad_arguments(rng):
    x = rng.standard_normal((2, 1000))
    for call in (lambda: S.bandpass(x, 500, 40, 0.5), lambda: S.bandpass(x, 500, 0.5, 300),
                 lambda: S.highpass(x, -1, 0.5), lambda: S.lowpass(x, 500, 40, order=0),
                 lambda: S.bandpass(x, 500, 0.5, 40, axis=2), lambda: S.bandpass(x + 1j, 500, 0.5, 40),
                 lambda: S.notch(x, 500, q=0)):
        with pytest.raises(PreprocessError):
            call()


def test_nan_propagates_like_scipy(rng):
    x = _ecg_like(rng, (2, 1000))
    x[0, 500] = np.nan
    y = S.bandpass(x, 500, 0.5, 40)
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_chain_equals_scipy_chain(rng, dtype):
    x = _ecg_like(rng, (2, 12, 5000)).astype(dtype)
    steps = [("bandpass", {"low": 0.5, "high": 40}), ("notch", {"freq": 50}),
             ("resample", {"fs_out": 250}), ("zscore", {"scope": "lead"}), ("segment", {"length_s": 5})]
    y = S.chain(x, 500, steps)
    sos = ss.butter(4, [0.5, 40], "bandpass", fs=500, output="sos")
    b, a = ss.iirnotch(50, 30, fs=500)
    r = ss.resample_poly(ss.filtfilt(b, a, ss.sosfiltfilt(sos, x, axis=-1), axis=-1), 1, 2, axis=-1)
    r = (r - r.mean(-1, keepdims=True)) / r.std(-1, keepdims=True)
    r = np.moveaxis(r.reshape(2, 12, 2, 1250), 2, 1)
    assert y.shape == (2, 2, 12, 1250) and y.dtype == dtype
    assert_close_range(y, r, dtype)


@pytest.mark.parametrize("steps_seg", [{"length_s": 5.0}, {"length": 1000}, {"length": 1000, "stride": 1000},
                                       {"length": 1000, "stride": 500}, {"length": 1000, "drop_last": False}])
def test_chain_segment_paths_equal_segment(rng, steps_seg):
    # the chain's reshape shortcut for plain windows and the general segment() agree
    x = np.cumsum(rng.standard_normal((2, 12, 2600)), axis=-1).astype(np.float32)
    steps = [("bandpass", {"low": 0.5, "high": 40.0}), ("zscore", {"scope": "lead"})]
    base = S.chain(x, 500, steps)
    params = dict(steps_seg)
    if "length_s" in params:
        params["length"] = int(round(params.pop("length_s") * 500))
    ref = S.segment(base, **params)
    y = S.chain(x, 500, steps + [("segment", steps_seg)])
    assert y.shape == ref.shape and y.flags.c_contiguous
    np.testing.assert_array_equal(y, ref)
    y1 = S.chain(x[0], 500, steps + [("segment", steps_seg)])
    np.testing.assert_array_equal(y1, ref[0])


# --- block layout: 4 x 4 register transposes in and out of the time-major buffer --------
# Blocks are 24, 12, 8 or 4 lanes wide; the transposes work on groups of 4 lanes and
# 4 samples, with scalar code for the last (n % 4) samples and for a group that is only
# partly filled with rows. These row counts and lengths hit every combination.

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 7, 9, 11, 12, 13, 23, 24, 25, 30, 37])
def test_block_transposes_rows_and_lengths(rng, dtype, rows):
    sos = ss.butter(4, [0.5, 40], "bandpass", fs=500, output="sos")
    b, a = ss.iirnotch(50, 30, fs=500)
    for n in (97, 98, 99, 100):  # n % 4 = 1, 2, 3, 0
        x = _ecg_like(rng, (rows, n)).astype(dtype)
        y = S.chain(x, 500, [("bandpass", {"low": 0.5, "high": 40}), ("notch", {"freq": 50}),
                             ("resample", {"fs_out": 250})])
        r = ss.resample_poly(ss.filtfilt(b, a, ss.sosfiltfilt(sos, x, axis=-1), axis=-1), 1, 2, axis=-1)
        assert y.dtype == dtype
        assert_close_range(y, r, dtype)
        # filter only: transpose out from the filter buffer (n samples) rather than
        # from the resampler's output (ceil(n / 2) samples)
        assert_close_range(S.sosfiltfilt(sos, x), ss.sosfiltfilt(sos, x, axis=-1), dtype)


@pytest.mark.parametrize("rows", [3, 12, 29])
def test_block_transposes_float32_state(rng, rows):
    # fast_float32 keeps the recursion in float32: the 4 x 4 transposes run on
    # 4-float vectors instead of 4-double ones
    x = _ecg_like(rng, (rows, 1003)).astype(np.float32)
    sos = ss.butter(4, [0.5, 40], "bandpass", fs=500, output="sos")
    y = S.bandpass(x, 500, 0.5, 40, fast_float32=True)
    assert y.dtype == np.float32
    assert_close_range(y, ss.sosfiltfilt(sos, x.astype(np.float64), axis=-1), np.float32)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fs_in,fs_out", [(500, 250), (1000, 500), (500, 100), (360, 500)])
def test_resample_poly_halfband_taps_dropped(rng, dtype, fs_in, fs_out):
    # 2:1 designs are half-band: firwin leaves every other tap as ~1e-17 residue,
    # which the plan drops; the result must stay within float64 rounding of scipy
    from fractions import Fraction
    x = _ecg_like(rng, (3, 2001), fs_in).astype(dtype)
    f = Fraction(fs_out, fs_in)
    ref = ss.resample_poly(x, f.numerator, f.denominator, axis=-1)
    y = S.resample(x, fs_in, fs_out)
    err = float(np.max(np.abs(y.astype(np.float64) - ref)))
    tol = (1e-12 if dtype == np.float64 else 2e-6) * float(np.ptp(ref))
    assert err <= tol, err


# --- chain kernel: z-score fused into the kernel, unit-section normalisation -------------
# A zscore(scope="lead") step right after the filters/resampling runs inside the kernel
# (statistics from the float64 block buffer); every Butterworth / iirnotch section
# (numerator b0 * [1, c, 1]) runs as [1, c, 1] with the gains applied at the end.

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rows", [1, 5, 12, 30])
@pytest.mark.parametrize("zs", [{"scope": "lead"}, {}, {"ddof": 1, "eps": 1e-8},
                                {"constant": "nan", "eps": 0.5}, {"constant": "keep", "ddof": 3}])
def test_chain_fused_zscore_equals_zscore(rng, dtype, rows, zs):
    x = (np.cumsum(rng.standard_normal((rows, 1501)), axis=-1) * 0.02 + _ecg_like(rng, (rows, 1501))).astype(dtype)
    x[0] *= 1e3  # lanes of one block with very different scales
    if rows > 2:
        x[2, 700] = np.nan  # NaN propagates to the whole lead, not to its block neighbours
    steps = [("bandpass", {"low": 0.5, "high": 40}), ("notch", {"freq": 50}), ("resample", {"fs_out": 250})]
    y = S.chain(x, 500, steps + [("zscore", zs)])
    r = S.zscore(S.chain(x, 500, steps), **zs)
    assert y.dtype == dtype and y.shape == r.shape == (rows, 751)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(r))
    ok = ~np.isnan(r)
    # the fused statistics come from float64 values, the reference's from the rounded output
    tol = 1e-9 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(y[ok], r[ok], rtol=0, atol=tol * max(1.0, float(np.abs(r[ok]).max())))
    # and against scipy end to end
    sos = ss.butter(4, [0.5, 40], "bandpass", fs=500, output="sos")
    b, a = ss.iirnotch(50, 30, fs=500)
    ref = ss.resample_poly(ss.filtfilt(b, a, ss.sosfiltfilt(sos, x.astype(np.float64), axis=-1), axis=-1),
                           1, 2, axis=-1)
    ddof, eps = zs.get("ddof", 0), zs.get("eps", 0.0)
    ref = (ref - ref.mean(-1, keepdims=True)) / (ref.std(-1, ddof=ddof, keepdims=True) + eps)
    assert_close_range(y[ok], ref[ok], dtype)


@pytest.mark.parametrize("constant,fill", [("zero", 0.0), ("nan", np.nan), ("keep", None)])
def test_chain_fused_zscore_constant_leads(rng, constant, fill):
    # linear resampling keeps a constant lead exactly constant: the fused z-score must
    # treat it as zscore() does (zeros, NaN, or the samples unchanged)
    x = rng.standard_normal((7, 800))
    x[3] = 2.5
    steps = [("resample", {"fs_out": 400, "method": "linear"})]
    y = S.chain(x, 500, steps + [("zscore", {"constant": constant})])
    r = S.zscore(S.chain(x, 500, steps), constant=constant)
    if fill is None:
        np.testing.assert_array_equal(y[3], np.full(y.shape[1], 2.5))
    elif np.isnan(fill):
        assert np.isnan(y[3]).all()
    else:
        np.testing.assert_array_equal(y[3], 0.0)
    np.testing.assert_allclose(y, r, rtol=0, atol=1e-12)


def test_chain_unfusable_zscore_goes_through_zscore(rng):
    # scope="record" is not fused; bad parameters still raise zscore()'s errors
    x = _ecg_like(rng, (2, 12, 1000))
    steps = [("bandpass", {"low": 0.5, "high": 40})]
    y = S.chain(x, 500, steps + [("zscore", {"scope": "record"})])
    np.testing.assert_allclose(y, S.zscore(S.chain(x, 500, steps), scope="record"), rtol=0, atol=1e-12)
    for bad in ({"ddof": -1}, {"eps": -1.0}, {"constant": "drop"}, {"ddof": 1000}):
        with pytest.raises(PreprocessError):
            S.chain(x, 500, steps + [("zscore", bad)])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unit_and_general_sections_mixed(rng, dtype):
    # a stage of unit sections (normalised), a causal one (gain applied once, not
    # squared) and sections with b0 != b2 (kept as they are) in one kernel call
    x = (np.cumsum(rng.standard_normal((13, 3000)), axis=-1) * 0.05 + _ecg_like(rng, (13, 3000))).astype(dtype)
    hp = ss.butter(2, 0.5, "highpass", fs=500, output="sos")
    lp = ss.butter(3, 40, "lowpass", fs=500, output="sos")
    odd = ss.bessel(3, 30, "lowpass", fs=500, output="sos")  # sections with b2 = 0
    odd[0, :3] = [0.02, 0.01, 0.005]
    steps = [("sosfiltfilt", {"sos": hp}), ("sosfiltfilt", {"sos": lp, "zero_phase": False}),
             ("sosfiltfilt", {"sos": odd})]
    y = S.chain(x, 500, steps)
    r = ss.sosfiltfilt(odd, ss.sosfilt(lp, ss.sosfiltfilt(hp, x.astype(np.float64), axis=-1), axis=-1), axis=-1)
    assert_close_range(y, r, dtype)


def test_unit_sections_tiny_total_gain(rng):
    # a narrow 10th-order low-pass has a total gain of ~1e-22: four zero-phase stages
    # (eight passes) multiply to below 1e-150, where the kernel keeps scipy's
    # coefficients instead of normalising; one stage is normalised
    x = _ecg_like(rng, (3, 4000))
    sos = ss.butter(10, 1.0, "lowpass", fs=500, output="sos")
    assert abs(np.prod(sos[:, 0])) ** 8 < 1e-150
    y = S.chain(x, 500, [("sosfiltfilt", {"sos": sos})] * 4)
    r = x
    for _ in range(4):
        r = ss.sosfiltfilt(sos, r, axis=-1)
    assert_close_range(y, r, np.float64)
    assert_close_range(S.chain(x, 500, [("sosfiltfilt", {"sos": sos})]), ss.sosfiltfilt(sos, x), np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,seg", [((5, 7, 1203), {"length": 200}), ((2, 3, 12, 1000), {"length_s": 1.0}),
                                       ((12, 999), {"length": 100}), ((4, 2, 1000), {"length": 250}),
                                       ((3, 5, 808), {"length": 404})])
def test_chain_fused_then_segment_equals_segment(rng, dtype, shape, seg):
    # a plain segment step after the fused kernel steps (z-score included) takes the
    # reshape shortcut: it must equal segment() of the unsegmented result, for n-d
    # record batches, window lengths with and without a remainder, constant leads too
    x = (np.cumsum(rng.standard_normal(shape), axis=-1) * 0.1).astype(dtype)
    x[(0,) * (len(shape) - 1)] = 1.5  # constant lead: linear resampling keeps it constant
    for steps in ([("resample", {"fs_out": 400, "method": "linear"}), ("zscore", {"constant": "keep"})],
                  [("resample", {"fs_out": 400, "method": "linear"}), ("zscore", {})],
                  [("bandpass", {"low": 0.5, "high": 40}), ("resample", {"fs_out": 250})]):
        base = S.chain(x, 500, steps)
        fs_out = steps[0][1].get("fs_out", 500) if steps[0][0] == "resample" else 250
        p = dict(seg)
        if "length_s" in p:
            p["length"] = int(round(p.pop("length_s") * fs_out))
        ref = S.segment(base, **p)
        y = S.chain(x, 500, steps + [("segment", seg)])
        assert y.shape == ref.shape and y.dtype == dtype and y.flags.c_contiguous
        np.testing.assert_array_equal(y, ref)
