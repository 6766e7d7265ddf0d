"""QRS detection: one lead or many leads fused into one detection function.

Planning only; the sample loops live in :mod:`._qrs_kernels` (numba).
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
from scipy import signal as _sps

from ..errors import ECGError
from . import _qrs_kernels as _k

__all__ = ["detect_qrs"]

# Records longer than this are processed in overlapping chunks, so memory stays
# bounded (a 24-h Holter never materialises more than a few chunk-sized buffers).
CHUNK_S = 300.0
OVERLAP_S = 5.0
# Below 25 Hz a QRS complex spans two or three samples and its energy lies above the
# Nyquist rate: on 8 LUDB records resampled (scipy resample_poly) to 20 Hz the detector
# found Se 81 % / PPV 70 % (25 Hz: 98 / 93, 40 Hz: 99 / 98, 50 Hz: 100 / 100). Rather than
# wrong beats, no beats are reported there (``delineate`` flags it).
MIN_FS = 25.0
REFRACTORY_S = 0.25


@lru_cache(maxsize=32)
def _lowpass_sos(fs: float, fc: float = 25.0, order: int = 4) -> np.ndarray:
    fc = min(fc, 0.45 * fs)
    return np.ascontiguousarray(_sps.butter(order, fc, btype="low", fs=fs, output="sos"))


@lru_cache(maxsize=8)
def _all_leads(n_leads: int) -> np.ndarray:
    """All-True ``usable`` for ``n_leads`` leads, shared between calls: the detector only
    reads it (it works on a copy), and a new array per call costs about 1 % of a
    single-lead detection. Writeable, as the kernels are compiled for (a read-only
    array would compile them again)."""
    return np.ones(n_leads, np.bool_)


def _clean_rows(x: np.ndarray):
    """float64 C- or Fortran-contiguous array, NaN/inf replaced by the lead median; a
    lead is usable when it is not flat and not mostly missing.

    Finite contiguous float64 input is returned as it is, not copied (the result is
    only read; records loaded as ``p_signal.T`` are Fortran-ordered, and the kernels
    read that order as fast as a transposed copy would be); anything else is a C copy."""
    x = np.asarray(x)
    if x.ndim == 2 and x.dtype == np.float64 and x.size and x.flags.f_contiguous and not x.flags.c_contiguous:
        nbad, lo, hi = _k.scan_cols(x.T)
        if not nbad.any():
            return x, (hi - lo) > 1e-6
    x = np.array(x, dtype=np.float64, order="C", copy=not (x.dtype == np.float64 and x.flags.c_contiguous))
    usable = np.ones(x.shape[0], np.bool_)
    if x.size == 0:
        return x, usable
    # one fused pass (non-finite count, range) decides whether the slow path is needed
    nbad, lo, hi = _k.scan_rows(x)
    if not nbad.any():
        usable &= (hi - lo) > 1e-6
        return x, usable
    bad = ~np.isfinite(x)
    frac = bad.mean(axis=1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN leads are expected here
        fill = np.nanmedian(np.where(bad, np.nan, x), axis=1)
    fill = np.where(np.isfinite(fill), fill, 0.0)
    x = np.where(bad, fill[:, None], x)
    usable &= frac < 0.5
    usable &= (x.max(axis=1) - x.min(axis=1)) > 1e-6
    return np.ascontiguousarray(x), usable


def _as_2d(x) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ECGError(f"detect_qrs expects one lead or (n_leads, n_samples), got shape {a.shape}")
    # the kind test first: issubdtype alone costs about 1 % of a single-lead detection
    if a.dtype.kind not in "fiu" and not np.issubdtype(a.dtype, np.number):
        raise ECGError(f"detect_qrs expects numbers, got dtype {a.dtype}")
    return a


def _detect_block(a: np.ndarray, leads_usable, fs: float) -> np.ndarray:
    """R peaks of one block (``_k.detect``: scan, feature, peaks, refinement); clean
    float64 C-contiguous input is read in place, anything else is copied to that first;
    blocks with NaN/inf are cleaned (filled, unusable leads dropped) and run again."""
    sos = _lowpass_sos(fs)
    if a.dtype != np.float64 or not a.flags.c_contiguous or not a.flags.writeable:
        a = np.array(a, dtype=np.float64, order="C")
    u = _all_leads(a.shape[0]) if leads_usable is None else leads_usable
    r, nbad = _k.detect(a, u, fs, sos, REFRACTORY_S, 0.08)
    if nbad == 0:
        return r
    xc, usable = _clean_rows(a)
    if leads_usable is not None:
        usable &= leads_usable
    return _k.detect(xc, usable, fs, sos, REFRACTORY_S, 0.08)[0]


def _detect_clean(xc: np.ndarray, usable: np.ndarray, fs: float) -> np.ndarray:
    """:func:`detect_qrs` for the output of :func:`_clean_rows` (finite, float64,
    C-contiguous; ``usable`` already excludes flat leads): no second scan of the
    samples. Same R indices as ``detect_qrs(xc, fs, usable)``."""
    if xc.shape[1] > int(CHUNK_S * fs) + int(OVERLAP_S * fs):
        return detect_qrs(xc, fs, leads_usable=usable)
    return _k.detect_clean(xc, np.ascontiguousarray(usable, dtype=np.bool_), float(fs),
                           _lowpass_sos(float(fs)), REFRACTORY_S, 0.08)


def _detect_clean_cols(xt: np.ndarray, usable: np.ndarray, fs: float) -> np.ndarray:
    """:func:`_detect_clean` of ``xt.T`` for a finite, C-contiguous float64 (samples,
    leads) array ``xt`` (a Fortran-ordered record read in memory order, not copied) no
    longer than one detection chunk: the same R indices."""
    if xt.shape[0] > int(CHUNK_S * fs) + int(OVERLAP_S * fs):
        return _detect_clean(np.ascontiguousarray(xt.T), usable, fs)
    return _k.detect_clean_cols(xt, np.ascontiguousarray(usable, dtype=np.bool_), float(fs),
                                _lowpass_sos(float(fs)), REFRACTORY_S, 0.08)


def detect_qrs(x, fs: float, leads_usable=None) -> np.ndarray:
    """Detect QRS complexes and return their R fiducials.

    Each lead is low-passed (4th-order Butterworth, 25 Hz), differentiated over
    16 ms, squared and normalised to its own typical QRS energy; the leads are
    summed (multi-lead fusion: a lead that is flat, missing or noisy weighs no
    more than any other, and a single lead's artefact is clipped), integrated
    over 100 ms, and peaks are picked with adaptive signal/noise levels,
    search-back and T-wave rejection (after Pan & Tompkins 1985).

    Parameters
    ----------
    x : array_like, shape (n_samples,) or (n_leads, n_samples)
        ECG in any unit (mV expected); NaN samples are tolerated.
    fs : float
        Sampling rate, Hz.
    leads_usable : array_like of bool, optional
        Leads to ignore (False), e.g. from a quality report.

    Returns
    -------
    ndarray of int64
        Sample indices of the R fiducials (the sample of largest summed,
        normalised deflection), sorted. Empty for flat lines, pure noise
        without QRS-like structure, records shorter than 0.5 s, or sampling
        rates below 25 Hz (``MIN_FS``; with a ``RuntimeWarning``), where QRS
        complexes are not resolved.

    References
    ----------
    Pan J, Tompkins WJ. A real-time QRS detection algorithm. IEEE TBME 32(3), 1985.
    """
    try:
        fs = float(fs)
    except (TypeError, ValueError):
        raise ECGError(f"sampling rate must be a number, got {fs!r}") from None
    if not math.isfinite(fs) or fs <= 0:       # math: a Python float here (np.isfinite is slower)
        raise ECGError(f"sampling rate must be positive, got {fs}")
    a = _as_2d(x)
    if fs < MIN_FS:
        warnings.warn(f"sampling rate {fs:g} Hz is below {MIN_FS:g} Hz: QRS complexes are not "
                      "resolved, no beats reported", RuntimeWarning, stacklevel=2)
        return np.empty(0, np.int64)
    n_leads, n = a.shape
    lu = None
    if leads_usable is not None:
        lu = np.array(leads_usable, np.bool_).reshape(-1)   # a private, writeable copy
        if lu.shape[0] == 1 and n_leads != 1:
            lu = np.full(n_leads, lu[0])
        if lu.shape[0] != n_leads:
            raise ECGError(f"leads_usable has {lu.shape[0]} entries for {n_leads} leads")
    chunk = int(CHUNK_S * fs)
    if n <= chunk + int(OVERLAP_S * fs):
        return _detect_block(a, lu, fs)
    ov = int(OVERLAP_S * fs)
    out = []
    start = 0
    while start < n:
        a0 = max(0, start - ov)
        z0 = min(n, start + chunk + ov)
        r = _detect_block(a[:, a0:z0], lu, fs) + a0
        # keep the beats that belong to this chunk's core (half-open)
        out.append(r[(r >= start) & (r < min(n, start + chunk))])
        start += chunk
    r = np.concatenate(out) if out else np.zeros(0, np.int64)
    if r.size > 1:
        keep = np.concatenate(([True], np.diff(r) >= int(REFRACTORY_S * fs * 0.8)))
        r = r[keep]
    return r.astype(np.int64)
