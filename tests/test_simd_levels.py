"""The AVX2 and portable kernels against scipy, on whatever machine runs the tests.

The compiled kernels pick AVX-512, AVX2 or portable code at run time; CI machines
have AVX-512, users' laptops (and every ARM machine) get the others. The variable
``ECGCORE_SIMD`` caps the level when a kernel module loads, so each capped run
needs a fresh interpreter: a subprocess computes the filters, the chain and the
running median on seeded data, and this process compares them with scipy.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.signal as ss

from _signal_helpers import assert_close_range

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
    env = dict(os.environ, ECGCORE_SIMD=str(level))
    res = subprocess.run([sys.executable, "-c", _CHILD % {"ks": KS}, str(path)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return np.load(path)


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
