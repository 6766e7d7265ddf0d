"""The row-statistics kernels (``ecgcore._kernels.norm``) give the same bits at every
vector level.

``zscore_segments`` and ``ptp_rows`` are compiled for AVX-512, AVX2 and portable code
and dispatched at run time; ``ECGCORE_SIMD`` caps the level when the module loads, so
each capped run is a fresh interpreter. The sums keep their order and fp-contract is
off, so the capped outputs must equal the uncapped ones to the bit, and each must
equal its numpy reference (the z-score within float rounding, the peak-to-peak to the
bit).
"""

from __future__ import annotations

import numpy as np
import pytest

from _signal_helpers import run_at_simd_level
from ecgcore._kernels import norm

_CHILD = r"""
import sys
import numpy as np
from ecgcore._kernels import norm
rng = np.random.default_rng(21)
x = (np.cumsum(rng.standard_normal((5, 12, 5003)), axis=-1) * 0.05 + rng.standard_normal((5, 12, 5003)))
x[0, 3] = 0.25           # constant lead
x[1, 5, 77] = np.nan     # NaN in one lead
x[2] += 1e4              # large offset (the shifted one-pass sums)
out = {"level": norm.simd_level()}
for dt in ("float32", "float64"):
    xd = np.ascontiguousarray(x.astype(dt))
    for scope in (False, True):
        for const in (0, 1, 2):
            out["z_%s_%d_%d" % (dt, scope, const)] = norm.zscore_segments(xd, 2500, scope, const, 0.0)
x32 = np.ascontiguousarray(x.astype(np.float32).reshape(-1, 5003))
for n in (1, 15, 16, 17, 5003):
    o = np.empty(x32.shape[0], np.float32)
    out["low_%d" % n] = norm.ptp_rows(np.ascontiguousarray(x32[:, :n]), np.float32(1e-3), o)
    out["ptp_%d" % n] = o
np.savez(sys.argv[1], **out)
"""


def _run(tmp_path, level):
    return run_at_simd_level(_CHILD, tmp_path / f"norm{level}.npz", level)


@pytest.fixture(scope="module")
def uncapped(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("norm"), None)


def test_uncapped_outputs_equal_numpy(uncapped):
    rng = np.random.default_rng(21)
    x = (np.cumsum(rng.standard_normal((5, 12, 5003)), axis=-1) * 0.05 + rng.standard_normal((5, 12, 5003)))
    x[0, 3] = 0.25
    x[1, 5, 77] = np.nan
    x[2] += 1e4
    for dt in (np.float32, np.float64):
        xd = x.astype(dt).astype(np.float64)
        # lead scope, constant lead -> zeros: numpy's z-score of each lead, windows of 2500
        with np.errstate(invalid="ignore", divide="ignore"):
            ref = (xd - xd.mean(-1, keepdims=True)) / xd.std(-1, keepdims=True)
        ref[0, 3] = 0.0
        ref = ref[..., :5000].reshape(5, 12, 2, 2500).transpose(0, 2, 1, 3)
        got = uncapped[f"z_{np.dtype(dt).name}_0_0"]
        assert got.shape == (5, 2, 12, 2500)
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5, equal_nan=True)
        assert np.isnan(got[1, :, 5]).all() and not np.isnan(np.delete(got[1], 5, axis=1)).any()
    x32 = x.astype(np.float32).reshape(-1, 5003)
    for n in (1, 15, 16, 17, 5003):
        with np.errstate(invalid="ignore"):
            ref = x32[:, :n].max(-1) - x32[:, :n].min(-1)
        assert np.array_equal(uncapped[f"ptp_{n}"], ref, equal_nan=True)
        assert int(uncapped[f"low_{n}"]) == int((~(ref >= np.float32(1e-3))).sum())


@pytest.mark.parametrize("level", [0, 1])
def test_capped_levels_give_the_same_bits(tmp_path, uncapped, level):
    got = _run(tmp_path, level)
    assert int(got["level"]) == min(level, int(uncapped["level"]))
    for k, v in uncapped.items():
        if k == "level":
            continue
        assert np.array_equal(got[k], v, equal_nan=True), k


def test_ptp_rows_rejects_what_it_cannot_write_back():
    x = np.random.default_rng(3).standard_normal((4, 40)).astype(np.float32)
    out = np.empty(4, np.float32)
    with pytest.raises(TypeError):          # a copy would take the results away
        norm.ptp_rows(x[:, ::2], 1e-3, out)
    with pytest.raises(TypeError):
        norm.ptp_rows(x, 1e-3, np.empty(8, np.float32)[::2])
    with pytest.raises(TypeError):
        norm.ptp_rows(x.astype(np.float64), 1e-3, out)
    ro = np.empty(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        norm.ptp_rows(x, 1e-3, ro)
    with pytest.raises(ValueError, match="one value per row"):
        norm.ptp_rows(x, 1e-3, np.empty(3, np.float32))
    with pytest.raises(ValueError, match="empty"):
        norm.ptp_rows(np.zeros((2, 0), np.float32), 1e-3, np.empty(2, np.float32))
    assert norm.ptp_rows(np.zeros((0, 5), np.float32), 1e-3, np.empty(0, np.float32)) == 0
