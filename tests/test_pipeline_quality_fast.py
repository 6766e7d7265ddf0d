"""The pipeline's basic quality flags (NaN and flat leads) from the one-pass kernel.

``worker._quality`` computes each lead's peak-to-peak with
``ecgcore._kernels.norm.ptp_rows`` (min, max and NaN test in one pass) for
C-contiguous float32 input; these tests hold it to numpy's two reductions
(the reference rule: max - min, NaN when the lead holds a NaN, flat below
1 µV) on seeded random batches with NaN, infinite, constant and tiny leads.
"""

from __future__ import annotations

import numpy as np
import pytest

from ecgcore._kernels import norm
from ecgcore.pipeline import worker

LEADS = [f"L{i}" for i in range(12)]


def _reference_flags(x, leads):
    with np.errstate(invalid="ignore"):
        ptp = x.max(axis=-1) - x.min(axis=-1)
    out = []
    for i in range(x.shape[0]):
        f = [f"nan:{leads[j]}" for j in range(x.shape[1]) if np.isnan(ptp[i, j])]
        f += [f"flat:{leads[j]}" for j in range(x.shape[1])
              if not np.isnan(ptp[i, j]) and ptp[i, j] < np.float32(1e-3)]
        out.append(";".join(f))
    return out


def _batch(rng, n, leads, t):
    x = (rng.standard_normal((n, leads, t)) * rng.choice([1e-5, 3e-4, 1.0])).astype(np.float32)
    for _ in range(int(rng.integers(0, 6))):
        i, j = int(rng.integers(n)), int(rng.integers(leads))
        kind = int(rng.integers(5))
        if kind == 0:
            x[i, j, int(rng.integers(t))] = np.nan
        elif kind == 1:
            x[i, j] = rng.choice([0.0, 0.25, np.inf])
        elif kind == 2:
            x[i, j, int(rng.integers(t))] = rng.choice([np.inf, -np.inf])
        elif kind == 3:
            ramp = np.arange(t, dtype=np.float32) / max(t - 1, 1)
            x[i, j] = np.float32(rng.uniform(0, 2e-3)) * ramp  # near the 1 µV threshold
        else:
            x[i, j, 0] = np.nan  # NaN in the first sample (the kernel's starting value)
    return x


def test_flags_match_the_numpy_rule_on_random_batches():
    rng = np.random.default_rng(7)
    flagged = 0
    for _ in range(300):
        n, t = int(rng.integers(1, 5)), int(rng.choice([1, 7, 16, 33, 500, 5000]))
        x = _batch(rng, n, 12, t)
        got = worker._quality(x, LEADS)
        assert got == _reference_flags(x, LEADS)
        flagged += sum(bool(g) for g in got)
    assert flagged > 50  # the batches do exercise the flags


def test_non_contiguous_and_float64_inputs_take_the_numpy_route_with_the_same_result():
    rng = np.random.default_rng(8)
    x = _batch(rng, 3, 12, 1000)
    x[1, 4] = 0.5
    x[2, 7, 10] = np.nan
    view = x[:, :, 100:900]  # not C-contiguous
    assert worker._quality(view, LEADS) == _reference_flags(view, LEADS)
    x64 = x.astype(np.float64)
    assert worker._quality(x64, LEADS) == worker._quality(x, LEADS)
    assert "flat:L4" in worker._quality(x, LEADS)[1]
    assert "nan:L7" in worker._quality(x, LEADS)[2]


def test_ptp_rows_equals_max_minus_min_to_the_bit():
    rng = np.random.default_rng(9)
    for _ in range(500):
        r, n = int(rng.integers(1, 20)), int(rng.integers(1, 300))
        x = _batch(rng, 1, r, n)[0]
        out = np.empty(r, np.float32)
        low = norm.ptp_rows(x, np.float32(1e-3), out)
        with np.errstate(invalid="ignore"):
            ref = x.max(axis=-1) - x.min(axis=-1)
            assert low == int((~(ref >= np.float32(1e-3))).sum())
        assert np.array_equal(out, ref, equal_nan=True)
    with pytest.raises(ValueError):
        norm.ptp_rows(np.zeros((2, 3), np.float32), 1e-3, np.empty(3, np.float32))
