"""Median (representative) beats: R-aligned, outlier beats excluded."""

from __future__ import annotations

from functools import lru_cache

import warnings

import numpy as np
from scipy import signal as _sps

from ..errors import ECGError
from ..record import Record
from . import _qrs_kernels as _qk
from .qrs import _clean_rows, detect_qrs
from .waves import _median_windows

__all__ = ["median_beats", "beat_windows"]


@lru_cache(maxsize=32)
def _highpass_sos(fs: float) -> np.ndarray:
    return np.ascontiguousarray(_sps.butter(1, 0.5, btype="high", fs=fs, output="sos"))


def beat_windows(x: np.ndarray, r: np.ndarray, before: int, length: int) -> np.ndarray:
    """(leads, n) -> (n_beats, leads, length) windows starting at r - before; samples
    outside the record are NaN."""
    idx = r[:, None] - before + np.arange(length)[None, :]
    valid = (idx >= 0) & (idx < x.shape[-1])
    w = x[:, np.clip(idx, 0, x.shape[-1] - 1)].transpose(1, 0, 2).astype(np.float64)
    w = np.where(valid[:, None, :], w, np.nan)
    return w


def median_beats(record, fs=None, length: int = 400, before: int = 150, min_beats: int = 2,
                 min_corr: float = 0.8, r_peaks=None) -> Record:
    """Aligned median beats of every lead.

    The record is high-passed (0.5 Hz, zero phase) to remove baseline wander, beats are
    cut around the R fiducials (:func:`detect_qrs` over all leads, or ``r_peaks``), the
    sample-wise median is taken, beats whose correlation with that median (over all
    leads) is below ``min_corr`` (ectopic or noisy beats) are dropped, and the median
    is taken again.

    Parameters
    ----------
    record : Record or array_like (n_leads, n_samples)
    fs : float, optional
        Sampling rate for arrays.
    length, before : int
        Window length and samples before R (defaults: the LVH model's 400 samples with
        R at sample 150 at 500 Hz). Given in samples of the record's rate.
    min_beats : int
        Fewer usable beats than this gives NaN beats and ``meta["reason"]``.

    Returns
    -------
    Record
        ``(n_leads, length)`` in the record's units, with ``meta``: ``n_beats`` (used),
        ``n_detected``, ``before`` (the R sample), ``beat_indices``, and ``reason``
        when the beats are NaN.
    """
    if isinstance(record, Record):
        x, fs, leads, source = record.signal, record.fs, record.leads, record.source
    else:
        if fs is None:
            raise ECGError("median_beats(array) needs fs=")
        x = np.atleast_2d(np.asarray(record, dtype=np.float64))
        fs, leads, source = float(fs), tuple(str(i) for i in range(x.shape[0])), None
    length, before = int(length), int(before)
    if length <= 0 or not 0 <= before < length:
        raise ECGError(f"median_beats needs 0 <= before < length, got before={before}, length={length}")
    xc, usable = _clean_rows(x)
    r = detect_qrs(xc, fs, leads_usable=usable) if r_peaks is None else np.asarray(r_peaks, np.int64)
    meta = {"n_detected": int(r.size), "before": before, "fs": fs}
    out = np.full((x.shape[0], length), np.nan)
    if r.size < min_beats or xc.shape[1] < 8:
        meta.update(n_beats=0, beat_indices=[], reason=f"{r.size} beats detected, {min_beats} needed")
        return Record(out, fs, leads, meta=meta, source=source)
    if xc.flags.f_contiguous and not xc.flags.c_contiguous:
        # a finite Fortran-ordered record, as ``_clean_rows`` returns it: read in memory
        # order (same values; the rows kernel would compile again for this layout)
        y = _qk.sos_filtfilt_cols(xc.T, _highpass_sos(fs), int(fs))
    else:
        y = _qk.sos_filtfilt_rows(xc, _highpass_sos(fs), int(fs))
    w = beat_windows(y, r, before, length)            # (beats, leads, length)
    # beats must lie fully inside the record
    full = np.isfinite(w).all(axis=(1, 2))
    all_leads = np.arange(x.shape[0], dtype=np.int64)

    def _median(w, r_used):
        # windows all inside the record: the sorting-network / incremental-sort kernels
        # of the delineator (same values as np.median); otherwise NaN-aware numpy
        if np.isfinite(w).all():
            return _median_windows(y, all_leads, (r[r_used] - before).astype(np.int64), length)
        with warnings.catch_warnings():   # samples no beat covers stay NaN, as documented
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(w, axis=0)

    if full.sum() >= min_beats:
        w, r_used = w[full], np.flatnonzero(full)
    else:
        r_used = np.arange(r.size)
    med = _median(w, r_used)
    if w.shape[0] >= 3:
        a = np.nan_to_num(w[:, usable] - np.nanmean(w[:, usable], axis=2, keepdims=True)).reshape(w.shape[0], -1)
        m = np.nan_to_num(med[usable] - np.nanmean(med[usable], axis=1, keepdims=True)).ravel()
        den = np.linalg.norm(a, axis=1) * np.linalg.norm(m)
        corr = np.where(den > 0, a @ m / np.where(den > 0, den, 1), 0.0)
        keep = corr >= min_corr
        if keep.sum() >= min_beats:
            w, r_used = w[keep], r_used[keep]
            med = _median(w, r_used)
    out[:] = med
    out[~usable] = np.nan
    meta.update(n_beats=int(w.shape[0]), beat_indices=r_used.tolist())
    return Record(out, fs, leads, meta=meta, source=source)
