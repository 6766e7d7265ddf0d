"""Fused z-score + segmentation for the ``ecgfm``-style presets (numba, compiled on first use).

The generic route (``ecgcore.signal.zscore`` then ``ecgcore.signal.segment``)
writes the standardised record and then copies it again into the window
layout. Here each (record, lead) row, 20 kB for 10 s at 500 Hz, is read once
from memory into cache for its statistics and written straight into its
windows: about the traffic of one memory copy.

Statistics are float64 with the population std (ddof 0), as fairseq-signals;
a lead is constant when its maximum equals its minimum (an exact test that
reassociated sums cannot blur).
"""

from __future__ import annotations

import numpy as np

__all__ = ["zscore_segment"]

import numba

# imported only on first use (ecgcore.presets imports this module lazily), and
# numba compiles on the first call, then loads from its on-disk cache
_FM = {"reassoc", "contract", "arcp"}


@numba.njit(cache=True, fastmath=_FM, boundscheck=False)
def _sum(row):
    acc = 0.0
    for t in range(row.shape[0]):
        acc += np.float64(row[t])
    return acc


@numba.njit(cache=True, fastmath=_FM, boundscheck=False)
def _ssd(row, mean):
    # sum of squared deviations, the second pass of the two-pass variance
    acc = 0.0
    for t in range(row.shape[0]):
        d = np.float64(row[t]) - mean
        acc += d * d
    return acc


@numba.njit(cache=True, fastmath=_FM, boundscheck=False)
def _n_diff(row, first):
    # samples that differ from ``first``: an integer, exact whatever the order
    n = 0
    for t in range(row.shape[0]):
        n += row[t] != first
    return n


@numba.njit(cache=True, boundscheck=False)
def _need_count(ss, mean, n, exact_sums):
    # Whether the constant test needs the exact count of differing samples.
    # For float32 input a constant row of value c sums exactly in float64 (n
    # copies of a 24-bit mantissa); the mean (a division that fastmath may turn
    # into a reciprocal multiply) is then c within 2**-51 relative, so the
    # squared deviations sum to at most n * mean**2 * 2**-100. A row whose
    # ``ss`` exceeds n * mean**2 * 2**-90 is therefore not constant, and the
    # counting pass (a third of the kernel's time) runs only for the others,
    # for infinite or NaN means and for float64 input: the test stays exact.
    return (not exact_sums) or not np.isfinite(mean) or ss <= mean * mean * (n * 2.0 ** -90)


@numba.njit(cache=True, fastmath=_FM, boundscheck=False)
def _write(row, orow, mean, inv):
    for t in range(orow.shape[0]):
        orow[t] = (np.float64(row[t]) - mean) * inv


@numba.njit(cache=True, fastmath=_FM, boundscheck=False)
def _zseg(x, out, length, n_seg, scope_record, constant, eps, exact_sums):
    # x (n, L, T) float32/float64 C-contiguous; out (n, n_seg, L, length) float32
    n, L, T = x.shape
    mean = 0.0
    std = 0.0
    nd = 0
    for r in range(n):
        if scope_record:
            s = 0.0
            for l in range(L):
                s += _sum(x[r, l])
            mean = s / (L * T)
            ss = 0.0
            for l in range(L):
                ss += _ssd(x[r, l], mean)
            std = np.sqrt(ss / (L * T))
            nd = 1
            if _need_count(ss, mean, L * T, exact_sums):
                nd = 0
                for l in range(L):
                    nd += _n_diff(x[r, l], x[r, l, 0]) + (x[r, l, 0] != x[r, 0, 0])
        for l in range(L):
            row = x[r, l]
            if not scope_record:
                mean = _sum(row) / T
                ss = _ssd(row, mean)
                std = np.sqrt(ss / T)
                nd = _n_diff(row, row[0]) if _need_count(ss, mean, T, exact_sums) else 1
            # constant lead / record; also a float64 one whose std underflows to 0
            # (samples a subnormal apart), which ecgcore.signal.zscore treats alike
            if (nd == 0 or std + eps == 0.0) and not np.isnan(mean):
                for k in range(n_seg):
                    orow = out[r, k, l]
                    if constant == 0:
                        orow[:] = 0.0
                    elif constant == 1:
                        orow[:] = np.nan
                    else:
                        orow[:] = row[k * length: (k + 1) * length]
            else:
                inv = 1.0 / (std + eps)
                for k in range(n_seg):
                    _write(row[k * length: (k + 1) * length], out[r, k, l], mean, inv)


def zscore_segment(x: np.ndarray, length: int, scope: str = "lead", constant: str = "zero",
                   eps: float = 0.0) -> np.ndarray:
    """Z-score each record (per lead or whole record) and cut non-overlapping windows.

    Parameters
    ----------
    x : ndarray, shape (n, leads, T)
    length : int
        Window length; ``T // length`` windows, the tail dropped.
    scope, constant, eps
        As :func:`ecgcore.signal.zscore`.

    Returns
    -------
    ndarray, float32, shape (n, T // length, leads, length)
    """
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    n, L, T = x.shape
    k = T // length
    out = np.empty((n, k, L, length), np.float32)
    if n and k:
        # exact float64 sums of a constant row hold for float32 rows up to 2**29 samples
        _zseg(x, out, int(length), int(k), scope == "record",
              {"zero": 0, "nan": 1, "keep": 2}[constant], float(eps),
              x.dtype == np.float32 and x.shape[1] * T < (1 << 29))
    return out
