"""One record per call against the same record inside a batch, at every SIMD level.

A record of up to 16 leads runs in the chain kernel's narrow blocks: on AVX-512 one
16-lane block (its resampler sums eight outputs per sweep), on AVX2 an 8-lane block
plus a 4-lane one for a 12-lead record (csrc/chain_body.hpp, run_rows_x). Lanes
are independent, so a record's result must be bit for bit the
result of the same rows inside a batch (which runs in the wide 32-lane blocks) and
must match scipy within the float32 contract. Each SIMD level needs a fresh
interpreter (``ECGCORE_SIMD`` is read once), so a subprocess computes both and this
process compares them.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss

from _signal_helpers import run_at_simd_level

FS = 500.0
ROWS = (1, 3, 4, 5, 8, 9, 12, 13, 16)
LENGTHS = (5000, 2501)

_CHILD = r"""
import sys
import numpy as np
import ecgcore.signal as S
from ecgcore import presets as PR
STEPS = [("bandpass", {"low": 0.5, "high": 40.0}), ("notch", {"freq": 50.0}),
         ("resample", {"fs_out": 250.0})]
ZSTEPS = STEPS + [("zscore", {"scope": "lead"}), ("segment", {"length_s": 5.0})]
# a stage whose two float64 sections pass DC (0.4 Hz low-pass, then a 40 Hz float32
# section), so that every section starts from a non-zero state: the skewed lanes'
# first and last steps then show in the result (a band-pass starts its later
# sections from rest); the high-pass makes the plan eligible for the mixed block
import scipy.signal as ss
LP = np.concatenate([ss.butter(4, 0.4, "lowpass", fs=500.0, output="sos"),
                     ss.butter(2, 40.0, "lowpass", fs=500.0, output="sos")])
LSTEPS = [("sosfiltfilt", {"sos": LP}), ("highpass", {"cutoff": 0.5, "order": 2})]
rng = np.random.default_rng(11)
out = {}
for n in %(lengths)r:
    # a DC offset per lead: the mixed-precision block subtracts each lane's first sample
    big = (np.cumsum(rng.standard_normal((40, n)), axis=1) * 0.05
           + rng.standard_normal((40, 1)) * 100).astype(np.float32)
    out["x_%%d" %% n] = big
    out["batch_%%d" %% n] = S.chain(big, 500.0, STEPS)
    out["lbatch_%%d" %% n] = S.chain(big, 500.0, LSTEPS)
    for r in %(rows)r:
        out["one_%%d_%%d" %% (n, r)] = S.chain(big[:r], 500.0, STEPS)
        out["lone_%%d_%%d" %% (n, r)] = S.chain(big[:r], 500.0, LSTEPS)
    # fused z-score + windows of 12-lead records: one call per record vs a 3-record batch
    if n >= 2500:
        rec = big[:36].reshape(3, 12, n)
        out["zbatch_%%d" %% n] = S.chain(rec, 500.0, ZSTEPS)
        out["zone_%%d" %% n] = np.stack([S.chain(r, 500.0, ZSTEPS) for r in rec])
# the ecgfounder preset's filters (notch + (b, a) band-pass as sections)
steps = [s for s in PR._resolve("ecgfounder")["steps"] if s["op"] in ("notch", "bandpass")]
rec = out["x_5000"][:36].reshape(3, 12, 5000)
out["efbatch"] = PR._apply_filters(rec, 500.0, steps)
out["efone"] = np.stack([PR._apply_filters(r[None], 500.0, steps)[0] for r in rec])
np.savez(sys.argv[1], **out)
"""


def _run(level, path):
    return run_at_simd_level(_CHILD % {"rows": ROWS, "lengths": LENGTHS}, path, level)


def _scipy_chain(x):
    sos = ss.butter(4, [0.5, 40.0], "bandpass", fs=FS, output="sos")
    nb, na = ss.iirnotch(50.0, 30.0, fs=FS)
    y = ss.filtfilt(nb, na, ss.sosfiltfilt(sos, x.astype(np.float64), axis=-1), axis=-1)
    return ss.resample_poly(y, 1, 2, axis=-1)


@pytest.mark.parametrize("level", [None, 1, 0], ids=["auto", "avx2", "portable"])
def test_one_record_equals_its_rows_in_a_batch(tmp_path, level):
    out = _run(level, tmp_path / "narrow.npz")
    for n in LENGTHS:
        batch = out[f"batch_{n}"]
        for r in ROWS:
            one = out[f"one_{n}_{r}"]
            assert one.shape == (r, batch.shape[1])
            np.testing.assert_array_equal(one, batch[:r], err_msg=f"{r} rows of {n} samples")
            np.testing.assert_array_equal(out[f"lone_{n}_{r}"], out[f"lbatch_{n}"][:r],
                                          err_msg=f"low-pass plan, {r} rows of {n} samples")
        if f"zbatch_{n}" in out:
            np.testing.assert_array_equal(out[f"zone_{n}"], out[f"zbatch_{n}"])
    np.testing.assert_array_equal(out["efone"], out["efbatch"])


@pytest.mark.parametrize("level", [None, 1], ids=["auto", "avx2"])
def test_narrow_blocks_equal_scipy(tmp_path, level):
    out = _run(level, tmp_path / "narrow.npz")
    for n in LENGTHS:
        x = out[f"x_{n}"]
        for r in (3, 12):
            ref = _scipy_chain(x[:r])
            got = out[f"one_{n}_{r}"].astype(np.float64)
            span = np.ptp(ref, axis=-1, keepdims=True)
            # the float32 contract of the issue: within 1e-4 of each lead's output range
            assert np.all(np.abs(got - ref) <= 1e-4 * span), (n, r, float(np.max(np.abs(got - ref) / span)))
