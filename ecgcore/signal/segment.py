"""Cut signals into fixed-length windows."""

from __future__ import annotations

import numpy as np

from ecgcore.errors import PreprocessError
from ecgcore.signal._validate import to_rows

__all__ = ["segment", "n_segments"]


def n_segments(n: int, length: int, stride: int | None = None, drop_last: bool = True) -> int:
    """Number of windows :func:`segment` returns for ``n`` samples."""
    stride = length if stride is None else stride
    if drop_last:
        return 0 if n < length else (n - length) // stride + 1
    if n <= length:
        return 1 if n > 0 else 0
    return -(-(n - length) // stride) + 1


def segment(x, length: int, stride: int | None = None, drop_last: bool = True, axis: int = -1) -> np.ndarray:
    """Windows of ``length`` samples every ``stride`` samples, starting at sample 0.

    Parameters
    ----------
    x : array_like
        Signal with time on ``axis``.
    length : int
        Window length, samples.
    stride : int, optional
        Hop between window starts; default ``length`` (no overlap, as ECG-FM).
    drop_last : bool
        True: only whole windows (a signal shorter than ``length`` gives none, as
        fairseq-signals). False: the tail is zero-padded into one more window (and a
        short signal gives one zero-padded window).
    axis : int
        Time axis.

    Returns
    -------
    ndarray
        A new contiguous array. Time moves last and the window axis is inserted
        just before the lead axis: (leads, n) -> (n_segments, leads, length);
        (records, leads, n) -> (records, n_segments, leads, length); a 1-D signal
        (n,) -> (n_segments, length).
    """
    if int(length) != length or length < 1:
        raise PreprocessError(f"length must be a positive integer, got {length!r}")
    stride = int(length) if stride is None else stride
    if int(stride) != stride or stride < 1:
        raise PreprocessError(f"stride must be a positive integer, got {stride!r}")
    length, stride = int(length), int(stride)
    a = np.asarray(x)
    rows, lead_shape, _ = to_rows(a if a.dtype.kind == "f" else a.astype(np.float64), axis)
    n = rows.shape[1]
    k = n_segments(n, length, stride, drop_last)
    need = (k - 1) * stride + length if k else 0
    if need > n:
        padded = np.zeros((rows.shape[0], need), rows.dtype)
        padded[:, :n] = rows
        rows = padded
    if k:
        win = np.lib.stride_tricks.sliding_window_view(rows, length, axis=1)[:, ::stride][:, :k]
    else:
        win = np.zeros((rows.shape[0], 0, length), rows.dtype)
    win = win.reshape(tuple(lead_shape) + (k, length))
    if len(lead_shape) >= 1:
        # (..., leads, k, length) -> (..., k, leads, length)
        win = np.moveaxis(win, -2, -3)
    return np.ascontiguousarray(win)
