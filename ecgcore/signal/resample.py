"""Resampling: polyphase (scipy.signal.resample_poly), linear (fairseq-signals), FFT.

* ``method="poly"`` equals ``scipy.signal.resample_poly(x, up, down)`` with
  ``up / down`` the reduced fraction ``fs_out / fs_in``, the default
  ``window=('kaiser', 5.0)`` and ``padtype='constant'`` (zeros outside the
  signal). The FIR is designed here with ``scipy.signal.firwin`` following
  resample_poly's rule (cut-off ``1 / max(up, down)``, ``20 * max(up, down) + 1``
  taps, gain ``up``, in the input dtype); the polyphase sum runs in C++. Output
  length ``ceil(n * up / down)``.
* ``method="linear"`` is the fairseq-signals / ECG-FM rule (facts/ecgfm.md §1.2):
  ``M = int(n * fs_out / fs_in)`` samples; the n input samples sit at
  ``linspace(0, M - 1, n)`` and the output is the linear interpolant at
  ``0, 1, ..., M - 1`` (``scipy.interpolate.interp1d(kind='linear')``), so the
  first and last samples are pinned and the effective ratio is (M-1)/(n-1).
* ``method="fft"`` is ``scipy.signal.resample`` with ``ceil(n * up / down)`` samples.

Equal rates return a copy for every method.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
from ecgcore.signal._validate import scipy_signal as _ss

from ecgcore.errors import PreprocessError
from ecgcore.signal._validate import check_fs, from_rows, to_rows

__all__ = ["resample", "rational_factors", "poly_plan", "linear_plan", "resample_length"]

_MAX_FACTOR = 10_000


def rational_factors(fs_in, fs_out) -> tuple[int, int]:
    """Reduced (up, down) with ``fs_out / fs_in == up / down``."""
    return _rational_factors(check_fs(fs_in, "fs_in"), check_fs(fs_out, "fs_out"))


@lru_cache(maxsize=256)
def _rational_factors(fs_in: float, fs_out: float) -> tuple[int, int]:
    # cached: Fraction arithmetic costs tens of microseconds, per record call
    frac = (Fraction(fs_out).limit_denominator(1_000_000) / Fraction(fs_in).limit_denominator(1_000_000))
    frac = frac.limit_denominator(_MAX_FACTOR)
    if frac <= 0:
        raise PreprocessError(f"cannot resample from {fs_in} Hz to {fs_out} Hz")
    return frac.numerator, frac.denominator


def resample_length(n: int, fs_in, fs_out, method: str = "poly") -> int:
    """Number of output samples ``resample`` produces for ``n`` input samples."""
    if method == "linear":
        if float(fs_in) == float(fs_out):
            return int(n)
        return int(n * float(fs_out) / float(fs_in))
    up, down = rational_factors(fs_in, fs_out)
    return -(-(n * up) // down)


@lru_cache(maxsize=64)
def poly_plan(n_in: int, up: int, down: int, dtype: str = "float64") -> tuple:
    """The polyphase plan the C++ kernel runs (see csrc/blockplan.hpp)."""
    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = _ss.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    h = np.asarray(h, dtype=dtype)  # resample_poly designs in the input dtype
    h = h * np.asarray(up, dtype=dtype)
    n_out = -(-(n_in * up) // down)
    n_pre_pad = down - half_len % down
    n_pre_remove = (half_len + n_pre_pad) // down
    hf = np.concatenate([np.zeros(n_pre_pad, dtype=h.dtype), h])
    # y[m] = sum_j hf[ph + j*up] * x[base - j], k = (m + n_pre_remove) * down
    k = (np.arange(n_out, dtype=np.int64) + n_pre_remove) * down
    phase = (k % up).astype(np.int32)
    base = k // up
    tiny = 1e-14 * float(np.max(np.abs(h)))
    offs, coefs, starts = [], [], [0]
    max_off = np.zeros(up, dtype=np.int64)
    min_off = np.zeros(up, dtype=np.int64)
    for ph in range(up):
        taps = hf[ph::up]
        # Zeros add nothing: the padding, and the half-band taps, which firwin
        # leaves as rounding residue (~1e-17 of the 0.5 peak for 500 -> 250 Hz).
        # Dropping residue below 1e-14 of the peak changes the sum by less than
        # the float64 rounding of scipy's own sum and halves the work at 2:1.
        nz = np.flatnonzero(np.abs(taps) > tiny)
        offs.append(nz.astype(np.int32))
        coefs.append(taps[nz])
        starts.append(starts[-1] + nz.size)
        if nz.size:
            max_off[ph], min_off[ph] = nz.max(), nz.min()
    off = np.concatenate(offs).astype(np.int32)
    coef = np.concatenate(coefs).astype(np.float64)
    zl = int(max(0, np.max(max_off[phase] - base))) if n_out else 0
    zr = int(max(0, np.max(base - min_off[phase]) - (n_in - 1))) if n_out else 0
    plan = ("poly", int(n_out), base, phase, np.asarray(starts, dtype=np.int32), off, coef,
            coef.astype(np.float32), zl, zr)
    for a in plan[2:8]:
        a.setflags(write=False)
    return plan


@lru_cache(maxsize=64)
def linear_plan(n_in: int, n_out: int) -> tuple:
    """Interpolation indices and weights of the fairseq-signals linear rule."""
    xs = np.linspace(0.0, n_out - 1, n_in)
    xn = np.arange(n_out, dtype=np.float64)
    hi = np.clip(np.searchsorted(xs, xn), 1, n_in - 1)  # as interp1d: left side, clipped
    lo = hi - 1
    w = (xn - xs[lo]) / (xs[hi] - xs[lo])
    lo = lo.astype(np.int64)
    lo.setflags(write=False)
    w.setflags(write=False)
    return ("linear", int(n_out), lo, w)


def resample(x, fs_in, fs_out, method: str = "poly", axis: int = -1) -> np.ndarray:
    """Change the sampling rate of ``x`` along ``axis``.

    Parameters
    ----------
    x : array_like
        Signal, any leading shape, float32 or float64 (dtype is kept).
    fs_in, fs_out : float
        Input and output sampling frequencies, Hz.
    method : {"poly", "linear", "fft"}
        See the module notes for the exact reference each one equals.
    axis : int
        Time axis.

    Returns
    -------
    ndarray
        The resampled signal; only the time axis changes length.

    Raises
    ------
    PreprocessError
        Bad rates, an unknown method, or too few samples (linear needs 2 in and 2 out).
    """
    from ecgcore._kernels import chain as _chain

    if method not in ("poly", "linear", "fft"):
        raise PreprocessError(f"method must be 'poly', 'linear' or 'fft', got {method!r}")
    rows, lead_shape, axis = to_rows(x, axis)
    n = rows.shape[1]
    fs_in = check_fs(fs_in, "fs_in")
    fs_out = check_fs(fs_out, "fs_out")
    if fs_in == fs_out:
        return from_rows(rows.copy(), lead_shape, axis)
    if n == 0:
        raise PreprocessError("cannot resample an empty signal")
    plan = resample_plan(n, fs_in, fs_out, method, rows.dtype)
    if plan is None:
        return from_rows(rows.copy(), lead_shape, axis)
    if method == "fft":
        y = _ss.resample(rows, plan, axis=-1).astype(rows.dtype, copy=False)
        return from_rows(np.ascontiguousarray(y), lead_shape, axis)
    if rows.shape[0] == 0:
        return from_rows(np.zeros((0, plan[1]), rows.dtype), lead_shape, axis)
    y = _chain.run(rows, [], plan, True)
    return from_rows(y, lead_shape, axis)


def resample_plan(n: int, fs_in: float, fs_out: float, method: str, dtype):
    """Plan for the kernel (a tuple), the output length for ``fft``, or None for a no-op."""
    if method == "linear":
        m = resample_length(n, fs_in, fs_out, "linear")
        if n < 2 or m < 2:
            raise PreprocessError(
                f"linear resampling needs at least 2 input and 2 output samples, got {n} -> {m}")
        return linear_plan(int(n), int(m))
    up, down = rational_factors(fs_in, fs_out)
    if up == down == 1:
        return None
    if method == "fft":
        return -(-(n * up) // down)
    return poly_plan(int(n), up, down, np.dtype(dtype).name)
