"""The fused z-score + segment kernel's constant-lead test
(ecgcore.signal.normalize.zscore_segments, formerly numba in ecgcore.pipeline._fused).

These cases put constant leads of awkward values (inexact reciprocals, huge,
subnormal, negative zero, one step away from constant) against the generic
ecgcore.signal route (zscore then segment). The fused kernel sums as
ecgcore.signal.zscore does, so with eps = 0 the two agree bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

import ecgcore.signal as S

from ecgcore.signal.normalize import zscore_segments


def _awkward(rng, T, dtype):
    vals = [0.1, 1 / 3, -0.0, 0.0, 3.0e38, -1.0e-45, 1.0e-38, 7.0, -123.456]
    x = (rng.standard_normal((len(vals) + 3, 12, T)) * 0.5).astype(dtype)
    for i, v in enumerate(vals):
        x[i, 2 * (i % 6)] = dtype(v)  # one constant lead per record
    k = len(vals)
    x[k] = dtype(0.1)  # a constant record
    x[k + 1, 4] = dtype(0.3)  # one float32 step away from constant
    # (a float32 step also in float64: ecgcore.signal.zscore calls a float64 lead
    # constant when its std is below a tolerance, the fused kernel when exactly constant)
    x[k + 1, 4, T // 2] = np.nextafter(np.float32(0.3), np.float32(1))
    x[k + 2, 7] = np.inf  # an infinite constant lead counts as constant
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scope", ["lead", "record"])
@pytest.mark.parametrize("constant", ["zero", "nan", "keep"])
def test_constant_rows_match_signal_kernels(rng, dtype, scope, constant):
    for T in (5000, 6727, 2503):
        x = _awkward(rng, T, dtype)
        got = zscore_segments(x, 2500, scope, constant)
        with np.errstate(invalid="ignore"):
            ref = S.segment(S.zscore(x, scope=scope, constant=constant), 2500)
        assert got.shape == ref.shape and got.dtype == np.float32
        ok = np.isfinite(ref)
        # the same leads are constant (zeros, NaN or kept) and the rest agree
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        atol = 2e-6 * max(1.0, float(np.abs(ref[ok]).max()))
        np.testing.assert_allclose(got[ok], ref[ok], rtol=0, atol=atol)
        # the same sums in the same order: identical, not just close
        np.testing.assert_array_equal(got, ref.astype(np.float32))
        if constant == "zero" and scope == "lead":
            for i in range(9):
                assert not got[i, :, 2 * (i % 6)].any()
            assert not got[11, :, 7].any()
            assert got[10, :, 4].any()  # one step off constant: standardised, not zeroed


@pytest.mark.parametrize("scope", ["lead", "record"])
@pytest.mark.parametrize("constant", ["zero", "nan", "keep"])
def test_float64_lead_whose_std_underflows(rng, scope, constant):
    """Samples a subnormal apart: not exactly constant, but the std underflows to 0;
    the generic route treats the lead as constant, and so does the fused kernel
    (the numba kernel once raised ZeroDivisionError)."""
    x = np.zeros((2, 3, 5000))
    x[0, 1, 17] = 5e-324
    x[1] = rng.standard_normal((3, 5000))
    x[1, 2] = 0.0
    x[1, 2, 4000] = -5e-324
    got = zscore_segments(x, 2500, scope, constant)
    ref = S.segment(S.zscore(x, scope=scope, constant=constant), 2500).astype(np.float32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(np.nan_to_num(got), np.nan_to_num(ref), rtol=0, atol=2e-6)
    np.testing.assert_array_equal(got, ref)
