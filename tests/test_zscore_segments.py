"""ecgcore.signal.normalize.zscore_segments: the fused z-score + segment kernel (C++).

Compared with a plain numpy reference (float64 statistics, population std) and
with the generic ecgcore.signal route; the constant-lead corner cases live in
tests/test_pipeline_fused.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import ecgcore.signal as S
from ecgcore.errors import PreprocessError
from ecgcore.signal.normalize import zscore_segments


def _numpy_ref(x, length, scope, eps):
    x64 = np.asarray(x, np.float64)
    ax = (1, 2) if scope == "record" else (2,)
    mean = x64.mean(axis=ax, keepdims=True)
    std = x64.std(axis=ax, keepdims=True)
    z = (x64 - mean) / (std + eps)
    n, L, T = x64.shape
    k = T // length
    return z[..., :k * length].reshape(n, L, k, length).transpose(0, 2, 1, 3)


def _records(rng, dtype, n=5, L=12, T=5300):
    return (rng.standard_normal((n, L, T)) * rng.uniform(0.05, 3, (n, L, 1))
            + rng.uniform(-2, 2, (n, L, 1))).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scope", ["lead", "record"])
@pytest.mark.parametrize("eps", [0.0, 1e-8, 0.5])
def test_matches_numpy_and_signal_route(rng, dtype, scope, eps):
    x = _records(rng, dtype)
    got = zscore_segments(x, 2500, scope, "zero", eps)
    assert got.shape == (5, 2, 12, 2500) and got.dtype == np.float32
    ref = _numpy_ref(x, 2500, scope, eps)
    # numpy sums pairwise, the kernel with 8 accumulators: float64 rounding only
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-6)
    sig = S.segment(S.zscore(x, scope=scope, eps=eps), 2500).astype(np.float32)
    np.testing.assert_array_equal(got, sig)


def test_nan_lead_and_constant_record(rng):
    x = _records(rng, np.float32, n=4)
    x[1, 3] = 0.7
    x[2] = -0.25
    x[3, 5, 17] = np.nan
    for scope in ("lead", "record"):
        for constant, fill in (("zero", 0.0), ("nan", np.nan)):
            got = zscore_segments(x, 1000, scope, constant)
            assert np.isnan(got[3, :, 5]).all()  # NaN in a lead: NaN statistics and output
            np.testing.assert_array_equal(got[2], np.full_like(got[2], fill))
            if scope == "lead":
                np.testing.assert_array_equal(got[1, :, 3], np.full_like(got[1, :, 3], fill))
            else:
                assert np.isnan(got[3]).all()
        kept = zscore_segments(x, 1000, scope, "keep")
        np.testing.assert_array_equal(kept[2], np.float32(-0.25))


def test_std_underflow_with_eps_divides_by_eps():
    # samples a subnormal apart: std underflows to 0; with eps > 0 the lead is
    # not exactly constant and std + eps != 0, so it is standardised by eps
    x = np.zeros((1, 1, 4000))
    x[0, 0, 5] = 5e-324
    got = zscore_segments(x, 2000, eps=1e-8)
    mean = 5e-324 / 4000  # rounds to 0
    np.testing.assert_array_equal(got[0, 0, 0], ((x[0, 0, :2000] - mean) / 1e-8).astype(np.float32))


def test_other_dtypes_layouts_and_short_records(rng):
    xi = rng.integers(-2000, 2000, (3, 12, 5000)).astype(np.int16)
    got = zscore_segments(xi, 2500)
    np.testing.assert_array_equal(got, zscore_segments(xi.astype(np.float64), 2500))
    xf = _records(rng, np.float32, n=3, T=5000)
    nc = np.asfortranarray(xf)[:, ::-1, :]  # neither C- nor F-contiguous
    np.testing.assert_array_equal(zscore_segments(nc, 2500),
                                  zscore_segments(np.ascontiguousarray(nc), 2500))
    ro = xf.copy()
    ro.flags.writeable = False  # e.g. an array from pandas 3
    np.testing.assert_array_equal(zscore_segments(ro, 2500), zscore_segments(xf, 2500))
    assert zscore_segments(xf, 6000).shape == (3, 0, 12, 6000)  # shorter than one window
    assert zscore_segments(xf[:0], 2500).shape == (0, 2, 12, 2500)
    assert zscore_segments(xf, 5000).shape == (3, 1, 12, 5000)


@pytest.mark.parametrize("kwargs, word", [
    ({"length": 0}, "length"), ({"length": 2.5}, "length"), ({"length": True}, "length"),
    ({"length": "2500"}, "length"), ({"length": float("inf")}, "length"),
    ({"scope": "batch"}, "scope"), ({"constant": "drop"}, "constant"),
    ({"eps": -1.0}, "eps"), ({"eps": float("nan")}, "eps"),
])
def test_bad_arguments_raise(rng, kwargs, word):
    x = _records(rng, np.float32, n=1, T=3000)
    args = {"length": 1000, **kwargs}
    with pytest.raises(PreprocessError, match=word):
        zscore_segments(x, **args)


def test_bad_shape_raises(rng):
    with pytest.raises(PreprocessError, match="3-D"):
        zscore_segments(np.zeros((12, 5000), np.float32), 2500)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_pass_statistics_match_two_pass(rng, dtype):
    """The statistics take one pass around the row's first sample; a first sample far
    from the mean (a spike) or a large offset must still give numpy's two-pass std
    (the kernel then sums the squared deviations again around the mean)."""
    n = 5003  # a tail after the last 32-sample block
    x = rng.standard_normal((6, 3, n))
    x[0, 0, 0] = 1e6           # spike as the shift: the subtraction would lose ~24 bits
    x[1, 1, 0] = -3e4
    x[2] = x[2] * 1e-3 + 5e3   # large offset, tiny spread
    x[3, 2] = x[3, 2] * 1e-6 + 1.0
    x[4, 0, :] = np.inf; x[4, 0, 100] = 0.0
    x = x.astype(dtype)
    for scope in ("lead", "record"):
        z, mean, std = S.zscore(x, scope=scope, return_stats=True)
        axes = (-1,) if scope == "lead" else (-2, -1)
        x64 = x.astype(np.float64)
        with np.errstate(invalid="ignore"):
            ref_m, ref_s = x64.mean(axis=axes), x64.std(axis=axes)
        ok = np.isfinite(ref_s)
        # the mean's rounding is relative to the samples' magnitude (the spike rows' means
        # are small against the spike): float64 rounding of sums of n such samples
        scale = np.abs(np.where(np.isfinite(x64), x64, 0)).max(axis=axes)
        assert (np.abs(mean[ok] - ref_m[ok]) <= 1e-12 * np.abs(ref_m[ok]) + 1e-15 * scale[ok]).all()
        np.testing.assert_allclose(std[ok], ref_s[ok], rtol=1e-9, atol=0)
        assert np.isnan(std[~ok]).all()
        # and the fused kernel computes the same statistics
        got = zscore_segments(x, n, scope, "zero")
        np.testing.assert_array_equal(got[:, 0], z.astype(np.float32))
