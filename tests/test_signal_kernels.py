"""ecgcore.signal resampling, median baseline, z-score, segmentation and quality vs references."""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
import scipy.signal as ss
from scipy.interpolate import interp1d

from ecgcore.errors import PreprocessError
import ecgcore.signal as S

from _signal_helpers import DTYPE_TOL, assert_close_range, real_signals  # noqa: E402
# float32 windows of 129..255 samples on AVX-512 machines take the quantised kernel
# by default: within range * 2**-20 of scipy (exact=True: bit for bit)
from test_median_fast import QTOL, assert_median_close  # noqa: E402


RATES = [(500, 250), (400, 500), (360, 500), (500, 100), (250, 500), (1000, 257), (500, 500)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fs_in,fs_out", RATES)
@pytest.mark.parametrize("shape", [(12, 5000), (2, 3, 2935), (41,), (4, 3)])
def test_resample_poly_equals_scipy(rng, dtype, fs_in, fs_out, shape):
    x = np.cumsum(rng.standard_normal(shape), axis=-1).astype(dtype)
    f = Fraction(fs_out, fs_in)
    ref = ss.resample_poly(x, f.numerator, f.denominator, axis=-1)
    y = S.resample(x, fs_in, fs_out)
    assert y.dtype == dtype
    assert y.shape[-1] == S.resample_length(shape[-1], fs_in, fs_out)
    assert_close_range(y, ref, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fs_in,n", [(400, 2934), (400, 4096), (1000, 10000), (250, 2500), (360, 3601), (500, 5000)])
def test_resample_linear_fairseq_rule(rng, dtype, fs_in, n):
    x = np.cumsum(rng.standard_normal((12, n)), axis=-1).astype(dtype)
    m = int(n * 500 / fs_in)
    y = S.resample(x, fs_in, 500, method="linear")
    assert y.shape == (12, m) and y.dtype == dtype
    ref = interp1d(np.linspace(0, m - 1, n), x, kind="linear", axis=-1)(np.arange(m))
    assert_close_range(y, ref, dtype)
    # the end points are pinned
    np.testing.assert_array_equal(y[:, 0], x[:, 0])
    np.testing.assert_allclose(y[:, -1], x[:, -1], rtol=1e-6, atol=1e-6)


def test_resample_linear_known_lengths(rng):
    for fs_in, n, m in ((400, 2934, 3667), (400, 4096, 5120), (1000, 10000, 5000), (250, 2500, 5000)):
        assert S.resample(rng.standard_normal((1, n)), fs_in, 500, method="linear").shape[-1] == m


def test_resample_fft_and_axis(rng):
    x = rng.standard_normal((1000, 3))
    y = S.resample(x, 500, 250, method="fft", axis=0)
    assert_close_range(y, ss.resample(x, 500, axis=0), np.float64)
    y = S.resample(x, 500, 250, axis=0)
    assert_close_range(y, ss.resample_poly(x, 1, 2, axis=0), np.float64)


def test_resample_errors(rng):
    with pytest.raises(PreprocessError):
        S.resample(rng.standard_normal(10), 500, 250, method="cubic")
    with pytest.raises(PreprocessError):
        S.resample(rng.standard_normal(1), 400, 500, method="linear")
    with pytest.raises(PreprocessError):
        S.resample(rng.standard_normal(10), 0, 500)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,window_s,fs", [((12, 5000), 0.4, 500), ((2, 3, 777), 0.2, 250), ((150,), 0.4, 500),
                                                ((3, 40), 0.1, 500)])
def test_median_baseline_equals_medfilt(rng, dtype, shape, window_s, fs):
    x = (np.cumsum(rng.standard_normal(shape), axis=-1) + np.round(rng.standard_normal(shape), 1)).astype(dtype)
    k = S.median_kernel_size(fs, window_s)
    assert k % 2 == 1 and k == (int(window_s * fs) + 1 if int(window_s * fs) % 2 == 0 else int(window_s * fs))
    rows = x.reshape(-1, shape[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scipy: kernel longer than the signal
        med = np.stack([ss.medfilt(r, k) for r in rows]).reshape(shape)
    y = S.median_baseline(x, fs, window_s)
    assert y.dtype == dtype
    assert_median_close(S.running_median(x, k), med, x, k)
    np.testing.assert_array_equal(S.running_median(x, k, exact=True), med)
    np.testing.assert_array_equal(S.median_baseline(x, fs, window_s, exact=True), x - med)
    span = float(np.ptp(np.concatenate([x.ravel(), [0]])))
    assert np.abs(y.astype(np.float64) - (x - med)).max() <= QTOL * span + 2e-7 * float(np.abs(x).max())


def test_median_baseline_ecgfounder_size_and_axis(rng):
    assert S.median_kernel_size(500, 0.4) == 201  # int(0.4 * fs) + 1
    x = rng.standard_normal((600, 2))
    ref = np.stack([ss.medfilt(x[:, i], 201) for i in range(2)], axis=1)
    np.testing.assert_array_equal(S.median_baseline(x, 500, 0.4, axis=0), x - ref)
    xn = x.T.copy()
    xn[0, 10] = np.nan
    y = S.median_baseline(xn, 500, 0.4)
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_zscore_lead_fairseq(rng, dtype):
    x = (rng.standard_normal((12, 5120)) * 0.3 + 0.1).astype(dtype)
    x[3] = 0.7  # constant lead
    y, mean, std = S.zscore(x, return_stats=True)
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(1, keepdims=True)) / x64.std(1, keepdims=True)
    live = np.arange(12) != 3
    assert y.dtype == dtype
    assert_close_range(y[live], ref[live], dtype)
    assert (y[3] == 0).all() and std[3] == 0
    np.testing.assert_allclose(mean, x64.mean(1), rtol=1e-12)
    assert np.isnan(S.zscore(x, constant="nan")[3]).all()
    np.testing.assert_array_equal(S.zscore(x, constant="keep")[3], x[3])
    y1 = S.zscore(x, ddof=1)
    assert_close_range(y1[live], ((x64 - x64.mean(1, keepdims=True)) / x64.std(1, ddof=1, keepdims=True))[live], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_zscore_record_ecgfounder(rng, dtype):
    x = (rng.standard_normal((3, 12, 1000)) * np.arange(1, 13)[:, None]).astype(dtype)
    x64 = x.astype(np.float64)
    m = x64.mean(axis=(1, 2), keepdims=True)
    s = x64.std(axis=(1, 2), keepdims=True)
    assert_close_range(S.zscore(x, scope="record", eps=1e-8), (x64 - m) / (s + 1e-8), dtype)
    # time on axis 0
    xt = np.moveaxis(x[0], -1, 0)
    assert_close_range(S.zscore(xt, axis=0), np.moveaxis((x64[0] - x64[0].mean(1, keepdims=True))
                                                          / x64[0].std(1, keepdims=True), -1, 0), dtype)
    with pytest.raises(PreprocessError):
        S.zscore(x[0, 0], scope="record")
    with pytest.raises(PreprocessError):
        S.zscore(x, scope="global")


def test_segment_shapes_and_values(rng):
    x = rng.standard_normal((12, 5120))
    seg = S.segment(x, 2500)
    assert seg.shape == (2, 12, 2500)
    np.testing.assert_array_equal(seg[1], x[:, 2500:5000])
    seg = S.segment(x, 2500, drop_last=False)
    assert seg.shape == (3, 12, 2500)
    np.testing.assert_array_equal(seg[2, :, :120], x[:, 5000:])
    assert (seg[2, :, 120:] == 0).all()
    assert S.segment(x[:, :2000], 2500).shape == (0, 12, 2500)
    assert S.segment(x[:, :2000], 2500, drop_last=False).shape == (1, 12, 2500)
    seg = S.segment(x, 1000, stride=500)
    assert seg.shape == (9, 12, 1000)
    np.testing.assert_array_equal(seg[3], x[:, 1500:2500])
    b = rng.standard_normal((4, 12, 5000)).astype(np.float32)
    sb = S.segment(b, 2500)
    assert sb.shape == (4, 2, 12, 2500) and sb.dtype == np.float32
    np.testing.assert_array_equal(sb[2, 1], b[2, :, 2500:])
    assert S.segment(x[0], 1000).shape == (5, 1000)
    st = S.segment(x.T, 2500, axis=0)
    np.testing.assert_array_equal(st, S.segment(x, 2500))
    assert S.n_segments(5120, 2500) == 2 and S.n_segments(5120, 2500, drop_last=False) == 3


def test_quality_measures(rng):
    fs, n = 500.0, 5000
    t = np.arange(n) / fs
    x = 0.05 * rng.standard_normal((5, n)) + np.sin(2 * np.pi * 1.2 * t)
    x[1] = 0.2                                   # flat
    x[2] += 2.0 * np.sin(2 * np.pi * 50 * t)     # mains
    x[3] = np.clip(x[3] * 5, -1, 1)              # clipped
    x[4, :500] = np.nan
    x[4] += 3.0 * np.sin(2 * np.pi * 0.1 * t)    # wander
    q = S.quality(x, fs)
    assert q["flat"].tolist() == [False, True, False, False, False]
    np.testing.assert_allclose(q["nan_fraction"], [0, 0, 0, 0, 0.1])
    assert q["powerline_ratio"][2] > 0.5 > q["powerline_ratio"][0]
    assert q["clipping_fraction"][3] > 0.2 and q["clipping_fraction"][0] < 0.01
    assert q["wander_ratio"][4] > 0.5 > q["wander_ratio"][0]
    assert 1.8 < q["amplitude"][0] < 2.6 and q["amplitude"][1] == 0
    q3 = S.quality(x[None], fs)
    assert q3["flat"].shape == (1, 5)


def test_real_records_resample_and_baseline(shared):
    for x, fs in real_signals():
        for dtype in (np.float64, np.float32):
            xx = x.astype(dtype)
            f = Fraction(500, int(fs))
            assert_close_range(S.resample(xx, fs, 500), ss.resample_poly(xx, f.numerator, f.denominator, axis=-1), dtype)
            m = int(xx.shape[-1] * 500 / fs)
            if m != xx.shape[-1]:
                ref = interp1d(np.linspace(0, m - 1, xx.shape[-1]), xx, axis=-1)(np.arange(m))
                assert_close_range(S.resample(xx, fs, 500, method="linear"), ref, dtype)
            k = S.median_kernel_size(fs, 0.4)
            med = np.stack([ss.medfilt(r, k) for r in xx])
            np.testing.assert_array_equal(S.median_baseline(xx, fs, 0.4, exact=True), xx - med)
            assert_median_close(S.running_median(xx, k), med, xx, k)


def _medfilt_rows(x, k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scipy: kernel longer than the signal
        return np.stack([ss.medfilt(r, k) for r in x.reshape(-1, x.shape[-1])]).reshape(x.shape)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [1, 3, 7, 15, 17, 31, 33, 63, 65, 129, 201, 255, 257, 513, 601])
def test_running_median_kernel_sizes(rng, dtype, k):
    # k sweeps the in-register window sizes (1..32 vectors of 4/8/16 lanes, padded
    # with +inf) and the sorted-buffer fallback for longer windows
    x = (np.cumsum(rng.standard_normal((3, 1500)), axis=-1)).astype(dtype)
    ref = _medfilt_rows(x, k)
    assert_median_close(S.running_median(x, k), ref, x, k)
    np.testing.assert_array_equal(S.running_median(x, k, exact=True), ref)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 2, 5, 50, 100, 101, 199, 200, 201, 202, 403])
def test_running_median_short_signals(rng, dtype, n):
    # signals shorter than the window: the zero padding dominates, as in scipy
    x = (rng.standard_normal((2, n)) * 3 + 0.5).astype(dtype)
    for k in (5, 201):
        ref = _medfilt_rows(x, k)
        assert_median_close(S.running_median(x, k), ref, x, k)
        np.testing.assert_array_equal(S.running_median(x, k, exact=True), ref)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_running_median_ties_and_infinities(rng, dtype):
    # quantised samples (many exact ties, zeros equal to the padding) and +/-inf
    x = rng.integers(-3, 4, size=(4, 700)).astype(dtype)
    x[1, ::7] = np.inf
    x[2, 3::11] = -np.inf
    x[3, :] = np.repeat(rng.integers(-2, 3, 70), 10)  # long constant runs
    for k in (9, 33, 201):
        ref = _medfilt_rows(x, k)
        assert_median_close(S.running_median(x, k), ref, x, k)
        np.testing.assert_array_equal(S.running_median(x, k, exact=True), ref)
    y = S.median_baseline(x[:1], 500, 0.4, exact=True)
    np.testing.assert_array_equal(y, x[:1] - _medfilt_rows(x[:1], 201))


def test_running_median_many_rows_nan_row_and_even_k(rng):
    x = np.cumsum(rng.standard_normal((5, 12, 640)), axis=-1).astype(np.float32)
    x[2, 5, 100] = np.nan
    y = S.running_median(x, 51)
    assert np.isnan(y[2, 5]).all()
    ok = np.ones((5, 12), bool)
    ok[2, 5] = False
    np.testing.assert_array_equal(y[ok], _medfilt_rows(x[ok], 51))
    with pytest.raises(PreprocessError):
        S.running_median(x, 50)


# --- kernel paths of the running median, each against scipy.signal.medfilt -------------
# method: 1 = sorted window in vector registers (automatic choice of sweep), 2 = sorted
# buffer + memmove, 3 = block sort (Suomela's algorithm with a rank bit mask; automatic
# for long windows), 4 / 5 = register window with the branch-free / branchy sweep,
# 6 = block sort with bitonic networks in zmm registers and a median walk in groups of 16
# outputs (csrc/medfilt_walk16.hpp)
# (float32, k <= 511, AVX-512 machines; elsewhere it falls back to 3); 7 = the same
# with quantised 32-bit entries for k <= 255 (tests/test_median_fast.py).

def _kernel_median(x, k, method, subtract=False):
    from ecgcore._kernels import medfilt as _mf
    return _mf.running_median(np.ascontiguousarray(x), k, subtract, method)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [1, 3, 5, 31, 63, 65, 127, 201, 255, 257, 301, 401, 511, 1001])
def test_running_median_block_kernel_sizes(rng, dtype, k):
    # the block length is k, so these lengths put the signal end before, on and
    # after block boundaries (n = k - 1, k, k + 1, 3k + 7) and give 1-word and
    # many-word rank masks (2k bits); 255 / 257 and 511 are the largest windows of
    # the two network sizes of method 6 (256- and 512-entry blocks); 1500 and 5000
    # samples give odd and even numbers of block pairs for its two interleaved walks
    for n in sorted({1, 2, max(1, k - 1), k, k + 1, 3 * k + 7, 1500, 5000}):
        x = np.cumsum(rng.standard_normal((2, n)), axis=-1).astype(dtype)
        ref = _medfilt_rows(x, k)
        for method in (3, 6):
            np.testing.assert_array_equal(_kernel_median(x, k, method), ref)
            np.testing.assert_array_equal(_kernel_median(x, k, method, True), x - ref)
    if k <= 401:
        x = np.cumsum(rng.standard_normal((3, 900)), axis=-1).astype(dtype)
        ref = _medfilt_rows(x, k)
        for method in (1, 2, 4, 5):
            np.testing.assert_array_equal(_kernel_median(x, k, method), ref)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [3, 33, 201, 401, 511])
def test_running_median_block_kernel_ties_infinities_signs(rng, dtype, k):
    # exact ties (across the two blocks of a pair as well), values equal to the
    # zero padding, +/-inf, negative numbers and -0.0 (keys order -0.0 below
    # +0.0; scipy treats them as equal, so the selected value compares equal)
    x = rng.integers(-3, 4, size=(5, 1300)).astype(dtype)
    x[1, ::7] = np.inf
    x[2, 3::11] = -np.inf
    x[3] = np.repeat(rng.integers(-2, 3, 130), 10)
    x[4, ::3] = -0.0
    x[4, 1::5] = rng.standard_normal(260) * 1e-30  # tiny values of both signs
    ref = _medfilt_rows(x, k)
    for method in (1, 3, 4, 5, 6):
        np.testing.assert_array_equal(_kernel_median(x, k, method), ref)


def test_running_median_long_window_public_api(rng):
    # k = 401 and 1001 take the block-sort path through the public functions,
    # including a NaN lead (NaN throughout) next to finite ones
    x = (np.cumsum(rng.standard_normal((3, 12, 2500)), axis=-1) * 0.01).astype(np.float32)
    x[1, 4, 2000] = np.nan
    ok = np.ones((3, 12), bool)
    ok[1, 4] = False
    for k in (401, 1001):
        y = S.running_median(x, k)
        assert np.isnan(y[1, 4]).all()
        np.testing.assert_array_equal(y[ok], _medfilt_rows(x[ok], k))
    y = S.median_baseline(x[0], 500, 1.0)  # k = 501
    np.testing.assert_array_equal(y, x[0] - _medfilt_rows(x[0], 501))


def test_running_median_kernel_method_errors(rng):
    from ecgcore._kernels import medfilt as _mf
    x = rng.standard_normal((2, 50))
    with pytest.raises(ValueError):
        _mf.running_median(x, 5, False, 8)
    with pytest.raises(ValueError):
        _mf.running_median(x, 4, False, 3)
