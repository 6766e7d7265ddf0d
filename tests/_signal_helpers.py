"""Helpers shared by the signal-kernel tests: the issue's tolerance rule, real records and
kernels run at a capped vector level."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import SHARED

DTYPE_TOL = {np.float64: 1e-6, np.float32: 1e-4}


def assert_close_range(actual, expected, dtype):
    """|actual - expected| within the dtype tolerance times the reference's range."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    rng = float(np.ptp(expected)) if expected.size else 0.0
    err = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
    assert err <= DTYPE_TOL[dtype] * max(rng, 1e-12), f"max error {err:.3g} vs range {rng:.3g}"


def real_signals(n_max=3):
    wfdb = pytest.importorskip("wfdb")
    heads = sorted(glob.glob(str(SHARED / "data" / "ptbxl" / "**" / "*.hea"), recursive=True))[:2]
    heads += sorted(glob.glob(str(SHARED / "data" / "ludb" / "**" / "*.hea"), recursive=True))[:1]
    if not heads:
        pytest.skip(f"no PTB-XL / LUDB records under {SHARED / 'data'}")
    out = []
    for h in heads[:n_max]:
        rec = wfdb.rdrecord(h[:-4])
        out.append((np.nan_to_num(rec.p_signal.T.astype(np.float64)), float(rec.fs)))
    return out


def run_at_simd_level(code: str, path, level=None) -> dict:
    """Run ``code`` (a script that saves its outputs with ``np.savez(sys.argv[1], ...)``)
    in a fresh interpreter whose kernels are capped at vector level ``level`` (0 portable,
    1 AVX2, 2 AVX-512; None: the machine's own), and return what it saved.

    ``ECGCORE_SIMD`` is read when a kernel module first dispatches, so each level needs
    its own process.
    """
    env = dict(os.environ)
    env.pop("ECGCORE_SIMD", None)
    if level is not None:
        env["ECGCORE_SIMD"] = str(level)
    res = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
