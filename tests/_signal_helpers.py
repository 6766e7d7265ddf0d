"""Helpers shared by the signal-kernel tests: the issue's tolerance rule and real records."""

import glob

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
