"""Standardisation (z-score) per lead or per record.

The statistics are float64 whatever the input dtype: mean, then the sum of squared
deviations from it (two passes), ``std = sqrt(ss / (n - ddof))``; the output is
``(x - mean) / (std + eps)`` in the input dtype.

Presets:

* ECG-FM / fairseq-signals (facts/ecgfm.md §1.3): ``scope="lead"``, ``ddof=0``,
  ``eps=0``, ``constant="zero"`` (population std, whole unsegmented record).
* ECGFounder official chain: ``scope="record"`` (one mean/std over the whole
  leads x time array), ``eps=1e-8``. CCTA: ``scope="lead"``, ``eps=1e-8``.

A lead (or record) is *constant* when all its samples are equal (its exact std is
0 even when rounding leaves a tiny value). ``constant`` then chooses: ``"zero"``
(fairseq's default), ``"nan"`` (fairseq's divide-by-zero) or ``"keep"`` (leave the
samples unchanged). NaN anywhere in a lead gives NaN statistics and output, as numpy.
"""

from __future__ import annotations

import numpy as np

from ecgcore.errors import PreprocessError
from ecgcore.signal._validate import from_rows, to_rows

__all__ = ["zscore", "zscore_segments"]

_CONSTANT = {"zero": 0, "nan": 1, "keep": 2}


def zscore(x, scope: str = "lead", constant: str = "zero", ddof: int = 0, axis: int = -1,
           eps: float = 0.0, return_stats: bool = False):
    """Standardise ``x`` per lead or per record.

    Parameters
    ----------
    x : array_like
        Signal with time on ``axis``; for ``scope="record"`` the axis just before the
        (moved-last) time axis is the lead axis, so ``x`` needs at least 2 dimensions.
    scope : {"lead", "record"}
        Statistics over time for each lead, or over leads and time for each record.
    constant : {"zero", "nan", "keep"}
        What a constant lead/record becomes.
    ddof : int
        Delta degrees of freedom of the std (0: population std, as fairseq-signals).
    axis : int
        Time axis.
    eps : float
        Added to the std before dividing (ECGFounder/CCTA: 1e-8).
    return_stats : bool
        Also return ``(mean, std)`` as float64 arrays of the statistics' shape
        (leading shape for ``"lead"``, leading shape without the lead axis for ``"record"``).

    Returns
    -------
    ndarray, or (ndarray, mean, std)
        Same shape and dtype as ``x``.
    """
    from ecgcore._kernels import norm as _norm

    if scope not in ("lead", "record"):
        raise PreprocessError(f"scope must be 'lead' or 'record', got {scope!r}")
    if constant not in _CONSTANT:
        raise PreprocessError(f"constant must be 'zero', 'nan' or 'keep', got {constant!r}")
    if int(ddof) != ddof or ddof < 0:
        raise PreprocessError(f"ddof must be a non-negative integer, got {ddof!r}")
    if not np.isfinite(eps) or eps < 0:
        raise PreprocessError(f"eps must be a non-negative number, got {eps!r}")
    rows, lead_shape, axis = to_rows(x, axis)
    n = rows.shape[1]
    if scope == "record":
        if len(lead_shape) < 1:
            raise PreprocessError("scope='record' needs an array with a lead axis and a time axis")
        stat_shape = lead_shape[:-1]
        flat = rows.reshape(-1, lead_shape[-1] * n)
    else:
        stat_shape = lead_shape
        flat = rows
    if flat.shape[1] <= ddof:
        raise PreprocessError(f"cannot standardise {flat.shape[1]} sample(s) with ddof={ddof}")
    y, mean, std, _ = _norm.zscore(flat, int(ddof), float(eps), _CONSTANT[constant])
    out = from_rows(y.reshape(rows.shape), lead_shape, axis)
    if return_stats:
        return out, mean.reshape(stat_shape), std.reshape(stat_shape)
    return out


def zscore_segments(x, length: int, scope: str = "lead", constant: str = "zero",
                    eps: float = 0.0, overwrite: bool = False) -> np.ndarray:
    """Z-score each record (per lead or per record) and cut non-overlapping windows, fused.

    Equals ``segment(zscore(x, scope, constant, ddof=0, eps=eps), length)`` cast to
    float32, in one pass: each lead is read once for its statistics and written
    straight into its windows (the ``ecgfm``-style presets' last two steps).
    Statistics are float64 over the whole unsegmented record (population std,
    ddof 0, as fairseq-signals). A lead (record) is constant when all its samples
    are equal, or when its float64 std underflows to 0 (samples a subnormal
    apart), unless its mean is NaN; ``constant`` then chooses its windows.

    Parameters
    ----------
    x : array_like, shape (n, leads, T)
        Records; float32 and float64 are read as they are, other dtypes as float64.
    length : int
        Window length in samples; ``T // length`` windows, the tail dropped.
    scope : {"lead", "record"}
        Statistics over time for each lead, or over leads and time for each record.
    constant : {"zero", "nan", "keep"}
        What a constant lead/record becomes (zeros, NaN, or its samples unchanged).
    eps : float
        Added to the std before dividing (ECGFounder/CCTA: 1e-8), in the signal's units.
    overwrite : bool
        Allow the result to be written over ``x``: when ``x`` is a writeable,
        C-contiguous float32 array and ``length == T``, ``x`` receives the
        z-scores and the result is a ``(n, 1, leads, T)`` view of it (saves
        writing a fresh output; same values). Otherwise ignored.

    Returns
    -------
    ndarray, float32, shape (n, T // length, leads, length)
        Dimensionless (standard deviations from the mean); no windows when
        ``T < length``.

    Raises
    ------
    PreprocessError
        When ``x`` is not 3-D or an argument is out of range.
    """
    from ecgcore._kernels import norm as _norm

    scope_record, code, eps = zscore_segments_args(scope, constant, eps, length)
    x = np.asarray(x)
    if x.ndim != 3:
        raise PreprocessError(f"x must be 3-D (records, leads, samples), got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    x = np.ascontiguousarray(x)
    return _norm.zscore_segments(x, int(length), scope_record, code, eps, bool(overwrite))


def zscore_segments_args(scope: str, constant: str, eps: float, length=None) -> tuple:
    """The ``ecgcore._kernels.norm.zscore_segments`` arguments ``(scope_record,
    constant_code, eps)`` for :func:`zscore_segments`' ``scope``, ``constant`` and
    ``eps``, checked as it checks them, ``length`` too when given (callers that run
    the kernel directly, e.g. a preset's cached schedule, check once).

    Raises
    ------
    PreprocessError
        When an argument is out of range.
    """
    if scope not in ("lead", "record"):
        raise PreprocessError(f"scope must be 'lead' or 'record', got {scope!r}")
    if constant not in _CONSTANT:
        raise PreprocessError(f"constant must be 'zero', 'nan' or 'keep', got {constant!r}")
    if length is not None and (
            isinstance(length, (bool, np.bool_)) or not isinstance(length, (int, np.integer, float))
            or not np.isfinite(length) or int(length) != length or length < 1):
        raise PreprocessError(f"length must be a positive integer (samples), got {length!r}")
    if not np.isfinite(eps) or eps < 0:
        raise PreprocessError(f"eps must be a non-negative number, got {eps!r}")
    return scope == "record", _CONSTANT[constant], float(eps)
