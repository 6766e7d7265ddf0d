"""The chain kernel's fast paths against scipy: 8 x 8 float transposes, the
low-latency single-section recursion and the memoised one-record plan.

* float32 rows go in and out of the time-major block buffer through 8 x 8
  transposes (AVX-512 builds) in groups of 8 rows and 8 samples, with zero rows
  for a partly filled group and scalar code for the last ``n % 8`` samples; the
  row counts and lengths below hit every group fill and every remainder, for
  16-, 24-, 8- and 4-lane blocks.
* a lone unit section (the notch) runs as a second-order recursion on z0 whose
  critical path is one FMA per sample; it must still equal ``filtfilt`` /
  ``lfilter`` and ``sosfiltfilt`` with one section, including signals barely
  longer than the padding.
* ``chain`` memoises the whole plan of a one-record call; its result must equal
  the general step loop and scipy's chain, and errors must be the same.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss

import ecgcore.signal as S
from ecgcore.errors import PreprocessError

from _signal_helpers import assert_close_range, real_signals  # noqa: E402

FS = 500.0
SOS = ss.butter(4, [0.5, 40], "bandpass", fs=FS, output="sos")
NB, NA = ss.iirnotch(50, 30, fs=FS)
STEPS = [("bandpass", {"low": 0.5, "high": 40}), ("notch", {"freq": 50}), ("resample", {"fs_out": 250})]


def _ecg_like(rng, shape, fs=FS):
    n = shape[-1]
    t = np.arange(n) / fs
    base = 0.3 * np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 6, shape[:-1] + (1,))) + 2.0
    beats = np.exp(-((t % 0.8) - 0.4) ** 2 / 2e-4)
    return base + beats + 0.05 * np.sin(2 * np.pi * 50 * t) + 0.05 * rng.standard_normal(shape)


def _scipy_chain(x):
    y = ss.filtfilt(NB, NA, ss.sosfiltfilt(SOS, x.astype(np.float64), axis=-1), axis=-1)
    return ss.resample_poly(y, 1, 2, axis=-1)


@pytest.mark.parametrize("rows", [1, 5, 8, 9, 12, 13, 15, 16, 17, 20, 24, 25, 33, 41])
def test_float32_transposes_every_group_fill_and_remainder(rng, rows):
    for n in range(97, 105):  # n % 8 = 1 .. 7, 0; the resampled length also varies
        x = _ecg_like(rng, (rows, n)).astype(np.float32)
        y = S.chain(x, FS, STEPS)
        assert y.dtype == np.float32
        assert_close_range(y, _scipy_chain(x), np.float32)
        # filter only: the transpose out reads the filter buffer (n samples)
        assert_close_range(S.sosfiltfilt(SOS, x), ss.sosfiltfilt(SOS, x.astype(np.float64), axis=-1),
                           np.float32)


@pytest.mark.parametrize("rows", [3, 12, 16, 29])
def test_float32_state_through_8x8_transposes(rng, rows):
    # fast_float32: float buffer, so the 8 x 8 transposes store 8-float vectors.
    # White noise here: the all-float32 band-pass recursion (opt-in) loses ~1e-4
    # of the range on baseline wander or a DC offset, whatever the transposes do.
    x = rng.standard_normal((rows, 1003)).astype(np.float32)
    y = S.bandpass(x, FS, 0.5, 40, fast_float32=True)
    assert_close_range(y, ss.sosfiltfilt(SOS, x.astype(np.float64), axis=-1), np.float32)
    y = S.notch(x, FS, fast_float32=True)
    assert_close_range(y, ss.filtfilt(NB, NA, x.astype(np.float64), axis=-1), np.float32)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [10, 11, 64, 999, 5000])
@pytest.mark.parametrize("rows", [1, 12, 30])
def test_lone_section_fast_recursion(rng, dtype, n, rows):
    # n = 10 is one sample above the notch's padding of 9
    x = (_ecg_like(rng, (rows, n)) + rng.standard_normal((rows, n))).astype(dtype)
    x64 = x.astype(np.float64)
    assert_close_range(S.notch(x, FS), ss.filtfilt(NB, NA, x64, axis=-1), dtype)
    assert_close_range(S.notch(x, FS, zero_phase=False), ss.lfilter(NB, NA, x64, axis=-1), dtype)
    sos1 = ss.butter(2, 40, "lowpass", fs=FS, output="sos")  # one section, [1, 2, 1] numerator
    if n > 9:
        assert_close_range(S.sosfiltfilt(sos1, x), ss.sosfiltfilt(sos1, x64, axis=-1), dtype)
    hp1 = ss.butter(2, 0.5, "highpass", fs=FS, output="sos")  # pole radius 0.996
    assert_close_range(S.sosfilt(hp1, x), ss.sosfilt(hp1, x64, axis=-1), dtype)


def test_lone_section_float64_is_tight(rng):
    # the reformulated recursion changes rounding only: far inside the 1e-6 contract
    x = _ecg_like(rng, (12, 5000))
    y = S.notch(x, FS)
    r = ss.filtfilt(NB, NA, x, axis=-1)
    assert float(np.max(np.abs(y - r))) <= 1e-11 * float(np.ptp(r))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_memoised_plan_equals_general_loop(rng, dtype):
    steps = STEPS + [("zscore", {"scope": "lead"}), ("segment", {"length_s": 2.0})]
    x = _ecg_like(rng, (12, 5000)).astype(dtype)
    fast = [S.chain(x, FS, steps) for _ in range(2)]  # compile, then reuse the plan
    # a non-contiguous view and an explicit time axis take the general loop
    xt = np.ascontiguousarray(x.T).T
    general = S.chain(xt, FS, steps, axis=1)
    for y in fast:
        assert y.dtype == dtype and y.shape == (5, 12, 500)
        np.testing.assert_array_equal(y, general)
    r = _scipy_chain(x)
    r = (r - r.mean(-1, keepdims=True)) / r.std(-1, keepdims=True)
    r = np.moveaxis(r.reshape(12, 5, 500), 1, 0)
    assert_close_range(fast[0], r, dtype)
    # several records, float64 and float32: the kernel writes (records, windows, leads, L)
    xb = _ecg_like(rng, (3, 5, 1001)).astype(dtype)
    steps_b = STEPS + [("segment", {"length": 100})]
    yb = S.chain(xb, FS, steps_b)
    assert yb.shape == (3, 5, 5, 100)
    np.testing.assert_array_equal(yb, S.chain(np.ascontiguousarray(xb.transpose(0, 2, 1)), FS, steps_b, axis=1))
    np.testing.assert_array_equal(yb, S.segment(S.chain(xb, FS, STEPS), 100))
    # steps given as an iterator are read once
    np.testing.assert_array_equal(S.chain(x, FS, iter(steps)), fast[0])
    # another rate or length gets its own plan
    y = S.chain(x[:, :4001], 400.0, [("bandpass", {"low": 0.5, "high": 40}), ("resample", {"fs_out": 200})])
    ref = ss.resample_poly(ss.sosfiltfilt(ss.butter(4, [0.5, 40], "bandpass", fs=400, output="sos"),
                                          x[:, :4001].astype(np.float64), axis=-1), 1, 2, axis=-1)
    assert_close_range(y, ref, dtype)


def test_memoised_plan_errors_and_unhashable_steps(rng):
    x = _ecg_like(rng, (12, 20))
    with pytest.raises(PreprocessError, match="too short"):
        S.chain(x, FS, STEPS)
    with pytest.raises(PreprocessError, match="too short"):  # again, from the cache
        S.chain(x, FS, STEPS)
    with pytest.raises(PreprocessError):
        S.chain(_ecg_like(rng, (2, 500)), -1.0, STEPS)
    x = _ecg_like(rng, (3, 600))
    y = S.chain(x, FS, [("sosfiltfilt", {"sos": SOS})])  # an array parameter: not hashable
    assert_close_range(y, ss.sosfiltfilt(SOS, x, axis=-1), np.float64)
    # a segment that is not the last step, and one with overlap, take the general loop
    y = S.chain(x, FS, [("segment", {"length": 200, "stride": 100}), ("notch", {"freq": 50})])
    r = ss.filtfilt(NB, NA, np.stack([x[:, i:i + 200] for i in range(0, 401, 100)]), axis=-1)
    assert_close_range(y, r, np.float64)


def test_real_records_float32(shared):
    for x, fs in real_signals():
        x32 = x.astype(np.float32)
        sos = ss.butter(4, [0.5, 40], "bandpass", fs=fs, output="sos")
        steps = [("bandpass", {"low": 0.5, "high": 40}), ("resample", {"fs_out": fs / 2})]
        ref = ss.sosfiltfilt(sos, x32.astype(np.float64), axis=-1)
        if fs > 100:  # a 50 Hz notch needs fs / 2 > 50
            b, a = ss.iirnotch(50, 30, fs=fs)
            steps.insert(1, ("notch", {"freq": 50}))
            ref = ss.filtfilt(b, a, ref, axis=-1)
            assert_close_range(S.notch(x, fs), ss.filtfilt(b, a, x, axis=-1), np.float64)
        assert_close_range(S.chain(x32, fs, steps), ss.resample_poly(ref, 1, 2, axis=-1), np.float32)


# --- mixed precision (float32 rows, float64 state, AVX-512 or AVX2) ---------------------
# Sections with poles near z = 1 run in float64, the rest in float32; the stage's
# forward pass runs float32 -> float64 sections, the backward pass the reverse, with
# initial states recomputed for both orders. These designs give every supported
# split (float32, float64 section counts) and some that keep the float64 path.

MIXED_CASES = [
    ("bandpass", dict(low=0.5, high=40.0, order=4)),   # 2 + 2
    ("bandpass", dict(low=0.5, high=40.0, order=2)),   # 1 + 1
    ("bandpass", dict(low=0.05, high=150.0, order=3)),  # a [1, 0, -1] section: float64 path
    ("bandpass", dict(low=0.67, high=40.0, order=6)),  # 3 + 3: float64 path
    ("highpass", dict(cutoff=0.5, order=4)),            # 0 + 2
    ("highpass", dict(cutoff=0.5, order=2)),            # 0 + 1
    ("highpass", dict(cutoff=1.0, order=8)),            # 0 + 4: float64 path
]


@pytest.mark.parametrize("name,kw", MIXED_CASES)
@pytest.mark.parametrize("rows", [12, 40])
def test_mixed_precision_splits_equal_scipy(rng, name, kw, rows):
    kw = dict(kw)
    order = kw.pop("order")
    wn = [kw["low"], kw["high"]] if name == "bandpass" else kw["cutoff"]
    sos = ss.butter(order, wn, name, fs=FS, output="sos")
    x = (_ecg_like(rng, (rows, 3001)) * 50 + 300).astype(np.float32)  # a DC offset of 6 swings
    x64 = x.astype(np.float64)
    lp = ss.butter(4, 100, "lowpass", fs=FS, output="sos")
    steps = [(name, dict(kw, order=order)), ("notch", {"freq": 50}), ("lowpass", {"cutoff": 100}),
             ("resample", {"fs_out": 250}), ("zscore", {})]
    y = S.chain(x, FS, steps)
    r = ss.sosfiltfilt(lp, ss.filtfilt(NB, NA, ss.sosfiltfilt(sos, x64, axis=-1), axis=-1), axis=-1)
    r = ss.resample_poly(r, 1, 2, axis=-1)
    r = (r - r.mean(-1, keepdims=True)) / r.std(-1, keepdims=True)
    assert y.dtype == np.float32
    assert_close_range(y, r, np.float32)
    # the same stages one by one (the notch alone keeps the float64 path: no zero at DC)
    assert_close_range(S.sosfiltfilt(sos, x), ss.sosfiltfilt(sos, x64, axis=-1), np.float32)


def test_mixed_precision_error_is_small_whatever_the_offset(rng):
    # rounding is relative to the signal, not the DC offset: the first sample of each
    # lane is subtracted before the float32 sections
    sos = ss.butter(4, [0.5, 40], "bandpass", fs=FS, output="sos")
    for dc in (0.0, 1e3, 1e5):
        x = (_ecg_like(rng, (12, 5000)) + dc).astype(np.float32)
        r = _scipy_chain(x)
        y = S.chain(x, FS, STEPS)
        assert float(np.max(np.abs(y - r))) <= 1e-5 * float(np.ptp(r)), dc
        y = S.sosfiltfilt(sos, x)
        r = ss.sosfiltfilt(sos, x.astype(np.float64), axis=-1)
        assert float(np.max(np.abs(y - r))) <= 1e-5 * float(np.ptp(r)), dc


def test_mixed_precision_nan_and_constant_lanes(rng):
    x = _ecg_like(rng, (4, 1000)).astype(np.float32)
    x[0, 0] = np.nan   # first sample: the whole lane is NaN, as in scipy
    x[1, 500] = np.nan
    x[2] = 3.0         # constant lane
    y = S.chain(x, FS, STEPS[:2])
    r = ss.filtfilt(NB, NA, ss.sosfiltfilt(SOS, x.astype(np.float64), axis=-1), axis=-1)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(r))
    ok = ~np.isnan(r[3])
    assert_close_range(y[3][ok], r[3][ok], np.float32)
    assert float(np.max(np.abs(y[2]))) <= 1e-4 * 3.0
    from ecgcore._kernels import chain as K
    if K.simd_level() >= 1:
        # mixed path: the constant lane filters to exact zeros, so it z-scores to
        # zeros (the float64 path leaves ~1e-16 residue that zscore() standardises)
        z = S.chain(x, FS, STEPS + [("zscore", {"constant": "zero"})])
        assert np.all(z[2] == 0.0)


def test_prepared_plan_checks_its_input(rng):
    import importlib
    from ecgcore._kernels import chain as K
    F = importlib.import_module("ecgcore.signal.filters")
    R = importlib.import_module("ecgcore.signal.resample")
    stages = [F.butter_stage(FS, "bandpass", (0.5, 40.0)), F.notch_stage(FS, 50.0, 30.0)]
    x = _ecg_like(rng, (6, 1000)).astype(np.float32)
    plan = K.prepare(True, 1000, stages, R.resample_plan(1000, FS, 250.0, "poly", np.float32), True, None, 100)
    w = K.run_plan(x, plan, 3)  # two records of three leads, windows of 100 samples
    assert w.shape == (2, 5, 3, 100)
    np.testing.assert_array_equal(w.transpose(0, 2, 1, 3).reshape(6, 500),
                                  K.run(x, stages, R.resample_plan(1000, FS, 250.0, "poly", np.float32), True))
    for bad, leads in ((x.astype(np.float64), 3), (x[:, :999].copy(), 3), (x, 4), (x[0], 3)):
        with pytest.raises((ValueError, TypeError)):
            K.run_plan(bad, plan, leads)
    with pytest.raises(ValueError):
        K.prepare(True, 1000, stages, None, True, None, 1001)  # window longer than the output


@pytest.mark.parametrize("constant", ["zero", "nan", "keep"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_windows_written_by_the_kernel_with_constant_leads(rng, constant, dtype):
    # the kernel writes the windows itself (float32: straight from the 8 x 8
    # transposes, chunks that cross a window edge or pass the last window sample
    # by sample); constant leads are filled through the same mapping
    x = _ecg_like(rng, (2, 12, 1003)).astype(dtype)
    x[0, 3] = 1.5
    x[1, 11] = -2.0
    steps = STEPS + [("zscore", {"constant": constant}), ("segment", {"length": 93})]
    y = S.chain(x, FS, steps)
    r = S.chain(np.ascontiguousarray(x.transpose(0, 2, 1)), FS, steps, axis=1)  # general loop
    assert y.shape == r.shape == (2, 5, 12, 93)
    np.testing.assert_array_equal(y, r)
    for steps in (STEPS[:2] + [("segment", {"length": 250})], STEPS + [("segment", {"length": 7})]):
        np.testing.assert_array_equal(S.chain(x, FS, steps),
                                      S.chain(np.ascontiguousarray(x.transpose(0, 2, 1)), FS, steps, axis=1))


def test_threads_share_plans_but_not_scratch(rng):
    # the kernel runs without the GIL; block buffers and the window layout are per
    # thread, the memoised plans are shared
    from concurrent.futures import ThreadPoolExecutor
    xs = [_ecg_like(rng, (12, 2000)).astype(np.float32) for _ in range(8)]
    steps = [STEPS + [("zscore", {}), ("segment", {"length": 250})], STEPS]
    want = [[S.chain(x, FS, st) for st in steps] for x in xs]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda i: [S.chain(xs[i % 8], FS, st) for st in steps], range(64)))
    for i, g in enumerate(got):
        for a, b in zip(g, want[i % 8]):
            np.testing.assert_array_equal(a, b)
