"""Per-lead signal-quality measures, vectorised over any leading shape."""

from __future__ import annotations

import numpy as np

from ecgcore.signal._validate import check_fs, to_rows

__all__ = ["quality"]


def quality(x, fs, axis: int = -1, powerline=(50.0, 60.0), flat_mv: float = 1e-3,
            wander_hz: float = 0.5) -> dict:
    """Quality measures for each lead.

    Parameters
    ----------
    x : array_like
        Signal in millivolts, time on ``axis``.
    fs : float
        Sampling frequency, Hz.
    powerline : tuple of float
        Mains frequencies checked, Hz.
    flat_mv : float
        Peak-to-peak below which a lead is flat (1 µV, as ``Record.quality``).
    wander_hz : float
        Upper edge of the baseline-wander band, Hz.

    Returns
    -------
    dict of ndarray, each with the leading shape of ``x``
        ``nan_fraction``; ``flat`` (peak-to-peak < ``flat_mv`` or all NaN);
        ``clipping_fraction`` (fraction of samples on the lead's minimum or maximum;
        above ~0.01 means saturation); ``amplitude`` (robust peak-to-peak, 0.1 to
        99.9 percentile, mV); ``powerline_ratio`` (power within ±1 Hz of the mains
        frequencies, worst of them, over total power without DC); ``wander_ratio``
        (power in (0, ``wander_hz``] Hz over total power without DC). NaNs are
        replaced by the lead mean before the spectra.
    """
    fs = check_fs(fs)
    rows, lead_shape, _ = to_rows(x, axis)
    r = rows.astype(np.float64)
    n = r.shape[1]
    nan = np.isnan(r)
    out = {}
    with np.errstate(all="ignore"):
        nan_fraction = nan.mean(axis=1) if n else np.ones(r.shape[0])
        all_nan = nan.all(axis=1) if n else np.ones(r.shape[0], bool)
        filled = np.where(nan, np.nanmean(np.where(all_nan[:, None], 0.0, r), axis=1, keepdims=True), r)
        filled = np.where(all_nan[:, None], 0.0, filled)
        if n:
            lo, hi = filled.min(axis=1), filled.max(axis=1)
            q = np.percentile(filled, [0.1, 99.9], axis=1)
            amp = q[1] - q[0]
            at_ext = ((filled == lo[:, None]) | (filled == hi[:, None])) & ~nan
            clip = at_ext.mean(axis=1)
        else:
            lo = hi = amp = clip = np.zeros(r.shape[0])
        flat = all_nan | ((hi - lo) < flat_mv)
        clip = np.where(flat, 0.0, clip)
        if n >= 4:
            spec = np.abs(np.fft.rfft(filled - filled.mean(axis=1, keepdims=True), axis=1)) ** 2
            f = np.fft.rfftfreq(n, 1.0 / fs)
            total = spec[:, 1:].sum(axis=1)
            pl = np.zeros(r.shape[0])
            for f0 in powerline:
                if f0 + 1.0 < fs / 2:
                    band = (f >= f0 - 1.0) & (f <= f0 + 1.0)
                    pl = np.maximum(pl, spec[:, band].sum(axis=1))
            wband = (f > 0) & (f <= wander_hz)
            wander = spec[:, wband].sum(axis=1)
            safe = np.where(total > 0, total, 1.0)
            pl_ratio = np.where(total > 0, pl / safe, 0.0)
            wander_ratio = np.where(total > 0, wander / safe, 0.0)
        else:
            pl_ratio = wander_ratio = np.zeros(r.shape[0])
    out["nan_fraction"] = nan_fraction
    out["flat"] = flat
    out["clipping_fraction"] = clip
    out["amplitude"] = np.where(flat, 0.0, amp)
    out["powerline_ratio"] = pl_ratio
    out["wander_ratio"] = wander_ratio
    shape = tuple(lead_shape)
    return {k: np.asarray(v).reshape(shape) for k, v in out.items()}
