"""The AVX2 and portable kernels against scipy, on whatever machine runs the tests.

The compiled kernels pick AVX-512, AVX2 or portable code at run time; CI machines
have AVX-512, users' laptops (and every ARM machine) get the others. The variable
``ECGCORE_SIMD`` caps the level when a kernel module loads, so each capped run
needs a fresh interpreter: a subprocess computes the filters, the chain and the
running median on seeded data, and this process compares them with scipy.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss

from _signal_helpers import assert_close_range, run_at_simd_level

FS = 500.0
KS = (7, 31, 129, 201, 301)

_CHILD = r"""
import sys
import numpy as np
import ecgcore.signal as S
from ecgcore._kernels import medfilt as mf
rng = np.random.default_rng(7)
x64 = np.cumsum(rng.standard_normal((13, 3001)), axis=1) * 0.05 + rng.standard_normal((13, 3001))
out = {"x64": x64}
for dt in ("float32", "float64"):
    x = x64.astype(dt)
    out["bp_" + dt] = S.bandpass(x, 500.0, 0.5, 40.0)
    out["chain_" + dt] = S.chain(x, 500.0, [("bandpass", {"low": 0.5, "high": 40.0}),
                                            ("notch", {"freq": 50.0}),
                                            ("resample", {"fs_out": 250.0})])
    for k in %(ks)r:
        out["med%%d_%%s" %% (k, dt)] = S.running_median(x, k)
np.savez(sys.argv[1], **out)
"""


def _run_capped(level, path):
    return run_at_simd_level(_CHILD % {"ks": KS}, path, level)


@pytest.mark.parametrize("level", [0, 1])
def test_capped_kernels_equal_scipy(tmp_path, level):
    out = _run_capped(level, tmp_path / f"simd{level}.npz")
    x64 = out["x64"]
    sos = ss.butter(4, [0.5, 40.0], "bandpass", fs=FS, output="sos")
    nb, na = ss.iirnotch(50.0, 30.0, fs=FS)
    for dt in (np.float32, np.float64):
        name = np.dtype(dt).name
        x = x64.astype(dt).astype(np.float64)
        bp = ss.sosfiltfilt(sos, x, axis=-1)
        assert_close_range(out["bp_" + name], bp, dt)
        ref = ss.resample_poly(ss.filtfilt(nb, na, bp, axis=-1), 1, 2, axis=-1)
        assert_close_range(out["chain_" + name], ref, dt)
        for k in KS:
            med = np.stack([ss.medfilt(r, k) for r in x])
            assert_close_range(out[f"med{k}_{name}"], med, dt)


# The mixed-precision chain (float32 rows, float64 state only for the sections with
# poles near z = 1) runs on AVX-512 and AVX2; the portable kernels keep the float64
# path. The capped child reports which plans take the mixed block, the parent checks
# that against the design's split and every output against scipy in float64.
MIXED_CASES = [  # (filter step, whether the mixed block takes it on AVX2 / AVX-512)
    (("bandpass", {"low": 0.5, "high": 40.0, "order": 4}), True),    # 2 float32 + 2 float64 sections
    (("bandpass", {"low": 0.5, "high": 40.0, "order": 2}), True),    # 1 + 1
    (("highpass", {"cutoff": 0.5, "order": 4}), True),               # 0 + 2
    (("highpass", {"cutoff": 0.5, "order": 2}), True),               # 0 + 1
    (("bandpass", {"low": 0.05, "high": 150.0, "order": 3}), False),  # a [1, 0, -1] section: float64 path
    (("bandpass", {"low": 0.67, "high": 40.0, "order": 6}), False),  # 3 + 3: float64 path
]
MIXED_TAIL = [("notch", {"freq": 50.0}), ("lowpass", {"cutoff": 100.0}), ("resample", {"fs_out": 250.0}),
              ("zscore", {})]

_MIXED_CHILD = r"""
import sys
import numpy as np
import ecgcore.signal as S
from ecgcore._kernels import chain as K
from ecgcore.signal.filters import butter_stage, notch_stage
from ecgcore.signal.resample import resample_plan
cases, tail = %(cases)r, %(tail)r
rng = np.random.default_rng(11)
t = np.arange(4000) / 500.0
x = (np.cumsum(rng.standard_normal((40, 4000)), axis=1) * 0.02 + 0.3 * rng.standard_normal((40, 4000))
     + np.sin(2 * np.pi * 1.2 * t) ** 15 * 2.0)
x += np.array([0.0, 300.0, 1e3, 1e5])[np.arange(40) %% 4, None]   # DC offsets up to 1e5
x = x.astype(np.float32)
out = {"x": x, "level": K.simd_level()}
for i, ((name, kw), _) in enumerate(cases):
    out["y40_%%d" %% i] = S.chain(x, 500.0, [(name, kw)] + tail)
    out["y12_%%d" %% i] = S.chain(x[:12], 500.0, [(name, kw)] + tail)   # one record, a part block
    out["f12_%%d" %% i] = S.chain(x[:12], 500.0, [(name, kw)])           # no resampler, no z-score
    order = kw["order"]
    wn = (kw["low"], kw["high"]) if name == "bandpass" else kw["cutoff"]
    stages = [butter_stage(500.0, name, wn, order), notch_stage(500.0, 50.0, 30.0)]
    plan = K.prepare(True, 4000, stages, resample_plan(4000, 500.0, 250.0, "poly", np.float32), True)
    out["mixed_%%d" %% i] = K.plan_is_mixed(plan)
    out["mixed64_%%d" %% i] = K.plan_is_mixed(K.prepare(False, 4000, stages, None, True))
z = x[:4].copy()
z[0, 0] = np.nan   # the whole lane NaN, as scipy
z[1, 2000] = np.nan
z[2] = 3.0         # constant lane: filters to exact zeros in the mixed block
out["nan"] = S.chain(z, 500.0, [("bandpass", {"low": 0.5, "high": 40.0}), ("notch", {"freq": 50.0})])
out["zconst"] = S.chain(z, 500.0, [("bandpass", {"low": 0.5, "high": 40.0}), ("notch", {"freq": 50.0}),
                                   ("zscore", {"constant": "zero"})])
np.savez(sys.argv[1], **out)
"""


def _scipy_mixed_ref(x64, name, kw, resample=True):
    wn = [kw["low"], kw["high"]] if name == "bandpass" else kw["cutoff"]
    y = ss.sosfiltfilt(ss.butter(kw["order"], wn, name, fs=FS, output="sos"), x64, axis=-1)
    if not resample:
        return y
    nb, na = ss.iirnotch(50.0, 30.0, fs=FS)
    y = ss.sosfiltfilt(ss.butter(4, 100.0, "lowpass", fs=FS, output="sos"), ss.filtfilt(nb, na, y, axis=-1),
                       axis=-1)
    y = ss.resample_poly(y, 1, 2, axis=-1)
    return (y - y.mean(-1, keepdims=True)) / y.std(-1, keepdims=True)


@pytest.mark.parametrize("level", [0, 1])
def test_capped_mixed_precision_chain_equals_scipy(tmp_path, level):
    path = tmp_path / f"mixed{level}.npz"
    run_at_simd_level(_MIXED_CHILD % {"cases": MIXED_CASES, "tail": MIXED_TAIL}, path, level)
    out = np.load(path)
    if int(out["level"]) != level:  # CI (AVX-512) runs both levels
        pytest.skip(f"this machine has no SIMD level {level} (ECGCORE_SIMD only lowers the level)")
    x64 = out["x"].astype(np.float64)
    for i, ((name, kw), mixed) in enumerate(MIXED_CASES):
        assert bool(out[f"mixed_{i}"]) == (mixed and level >= 1), (level, name, kw)
        assert not bool(out[f"mixed64_{i}"])  # float64 rows never take the mixed block
        ref = _scipy_mixed_ref(x64, name, kw)
        assert_close_range(out[f"y40_{i}"], ref, np.float32)
        assert_close_range(out[f"y12_{i}"], ref[:12], np.float32)
        f = _scipy_mixed_ref(x64[:12], name, kw, resample=False)
        # per row: the DC offsets (up to 1e5) must not leak into the float32 rounding
        err = np.max(np.abs(out[f"f12_{i}"] - f), axis=-1) / np.ptp(f, axis=-1)
        assert float(err.max()) <= 1e-5, (name, kw, err.max())
    nb, na = ss.iirnotch(50.0, 30.0, fs=FS)
    sos = ss.butter(4, [0.5, 40.0], "bandpass", fs=FS, output="sos")
    z = x64[:4].copy()
    z[0, 0] = np.nan
    z[1, 2000] = np.nan
    z[2] = 3.0
    r = ss.filtfilt(nb, na, ss.sosfiltfilt(sos, z, axis=-1), axis=-1)
    np.testing.assert_array_equal(np.isnan(out["nan"]), np.isnan(r))
    assert_close_range(out["nan"][3], r[3], np.float32)
    assert float(np.max(np.abs(out["nan"][2]))) <= 1e-4 * 3.0
    if level >= 1:
        assert np.all(out["zconst"][2] == 0.0)
