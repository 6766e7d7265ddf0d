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
def _stats(row, mean_in, use_mean):
    # sum (or sum of squared deviations) and the count of samples that differ
    # from the first: an integer, so exact whatever the summation order
    n = row.shape[0]
    acc = 0.0
    diff = 0
    first = row[0]
    if use_mean:
        for t in range(n):
            d = np.float64(row[t]) - mean_in
            acc += d * d
    else:
        for t in range(n):
            acc += np.float64(row[t])
            diff += row[t] != first
    return acc, diff


@numba.njit(cache=True, fastmath=_FM, boundscheck=False)
def _write(row, orow, mean, inv):
    for t in range(orow.shape[0]):
        orow[t] = (np.float64(row[t]) - mean) * inv


@numba.njit(cache=True, fastmath=_FM, boundscheck=False)
def _zseg(x, out, length, n_seg, scope_record, constant, eps):
    # x (n, L, T) float32/float64 C-contiguous; out (n, n_seg, L, length) float32
    n, L, T = x.shape
    mean = 0.0
    std = 0.0
    nd = 0
    for r in range(n):
        if scope_record:
            s = 0.0
            nd = 0
            for l in range(L):
                a, d = _stats(x[r, l], 0.0, False)
                s += a
                nd += d + (x[r, l, 0] != x[r, 0, 0])
            mean = s / (L * T)
            ss = 0.0
            for l in range(L):
                ss += _stats(x[r, l], mean, True)[0]
            std = np.sqrt(ss / (L * T))
        for l in range(L):
            row = x[r, l]
            if not scope_record:
                s, nd = _stats(row, 0.0, False)
                mean = s / T
                std = np.sqrt(_stats(row, mean, True)[0] / T)
            if nd == 0 and not np.isnan(mean):  # constant lead / record
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
        _zseg(x, out, int(length), int(k), scope == "record",
                  {"zero": 0, "nan": 1, "keep": 2}[constant], float(eps))
    return out
