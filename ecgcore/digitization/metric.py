"""The PhysioNet/CinC Challenge 2024 digitization metric (SNR with alignment).

Re-implemented from the published description of the official scorer
(``physionetchallenges/evaluation-2024`` @ 9af7dfb; facts/digitization.md §2):

* per reference lead, the estimate may be shifted by up to ``round(0.5 fs)``
  samples and offset by up to 1 mV; the shift is found from the peak of the 2-D
  cross-correlation of the two signals drawn as 256-level binary images and
  blurred with a Gaussian of sigma 0.5;
* SNR = 10 log10(mean(ref^2) / mean((ref - est)^2)) over the samples finite in
  both, multiplied by the fraction of the reference's finite samples that the
  estimate recovers; 0 when nothing overlaps, NaN when either power is 0;
* the score is the nan-mean of those dB values over leads (and records).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["align_lead", "snr_lead", "challenge_snr", "challenge_score"]

_LEVELS = 256
_SIGMA = 0.5


def _as_1d(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ConfigError("expected a 1-D signal")
    return x


def _blurred_image(q: np.ndarray, n_levels: int) -> np.ndarray:
    """Binary ``n_levels x T`` image with one pixel per finite sample, Gaussian-blurred."""
    from scipy.ndimage import gaussian_filter

    img = np.zeros((n_levels, len(q)), dtype=np.float32)
    ok = q >= 0
    img[q[ok], np.flatnonzero(ok)] = 1.0
    return gaussian_filter(img, _SIGMA)


def align_lead(ref, est, fs: float, max_shift_s: float = 0.5, max_offset_mv: float = 1.0):
    """Align one estimated lead to its reference as the Challenge 2024 scorer does.

    Parameters
    ----------
    ref, est : array_like, 1-D
        Reference and estimate in mV; NaN marks missing samples. ``est`` is
        NaN-padded or truncated to ``len(ref)``.
    fs : float
        Sampling rate, Hz (sets the 0.5 s shift limit).
    max_shift_s, max_offset_mv : float
        Largest time shift (s) and amplitude offset (mV) that may be removed.

    Returns
    -------
    aligned : ndarray
        The estimate shifted (NaN-padded) and offset-corrected, same length as
        ``ref``; the unchanged estimate when the peak lies outside the limits.
    shift : int
        Samples by which the estimate was moved (positive: later).
    offset : float
        mV subtracted from the estimate.
    """
    ref = _as_1d(ref)
    est = _fit_length(_as_1d(est), len(ref))
    fr, fe = np.isfinite(ref), np.isfinite(est)
    if not fr.any() or not fe.any():
        return est, 0, 0.0
    lo = min(ref[fr].min(), est[fe].min())
    hi = max(ref[fr].max(), est[fe].max())
    span = hi - lo
    if not span > 0:
        return est, 0, 0.0
    step = span / (_LEVELS - 1)
    # Crop both to the span where either is finite: zero columns add nothing to the
    # correlation, and masked 2.5-s leads then cost a quarter of a full-length one.
    anyf = np.flatnonzero(fr | fe)
    c0, c1 = int(anyf[0]), int(anyf[-1]) + 1
    r_c, e_c = ref[c0:c1], est[c0:c1]
    qr = np.full(c1 - c0, -1, np.int64)
    qe = np.full(c1 - c0, -1, np.int64)
    qr[fr[c0:c1]] = np.rint((r_c[fr[c0:c1]] - lo) / step).astype(np.int64)
    qe[fe[c0:c1]] = np.rint((e_c[fe[c0:c1]] - lo) / step).astype(np.int64)
    a = _blurred_image(qr, _LEVELS)
    b = _blurred_image(qe, _LEVELS)
    # Full 2-D cross-correlation by FFT: corr[k] = sum_n a[n + k] b[n]. Zero lag sits at
    # index (rows-1, cols-1), which is where the reference's autocorrelation peaks.
    import scipy.fft as sfft

    n = c1 - c0
    shape = (sfft.next_fast_len(2 * _LEVELS - 1, True), sfft.next_fast_len(2 * n - 1, True))
    fa = sfft.rfft2(a, shape)
    fb = sfft.rfft2(b, shape)
    corr = sfft.irfft2(fa * np.conj(fb), shape)  # circular; lags wrap to negative indices
    iv, it = np.unravel_index(int(np.argmax(corr)), corr.shape)
    dv = int(iv) if iv < _LEVELS else int(iv) - shape[0]   # levels the reference sits above
    dt = int(it) if it < n else int(it) - shape[1]          # samples the reference lags
    offset = -dv * step
    if abs(dt) > int(round(max_shift_s * fs)) or abs(offset) > max_offset_mv:
        return est, 0, 0.0
    shifted = np.full(len(ref), np.nan)
    if dt >= 0:
        shifted[dt:] = est[:len(est) - dt]
    else:
        shifted[:dt] = est[-dt:]
    return shifted - offset, dt, float(offset)


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    if len(x) == n:
        return x
    if len(x) > n:
        return x[:n]
    return np.concatenate([x, np.full(n - len(x), np.nan)])


def snr_lead(ref, est) -> float:
    """SNR (dB) of one lead times the fraction of reference samples recovered.

    Over the samples finite in both: ``10 log10(mean(ref^2) / mean((ref - est)^2))``,
    multiplied by ``n_both / n_ref_finite``. 0 when the estimate overlaps no
    finite reference sample; NaN when the reference is empty or either power is
    0 (a perfect lead is NaN, as in the official scorer).
    """
    ref = _as_1d(ref)
    est = _fit_length(_as_1d(est), len(ref))
    fr = np.isfinite(ref)
    both = fr & np.isfinite(est)
    n_ref, n_both = int(fr.sum()), int(both.sum())
    if n_ref == 0:
        return float("nan")
    if n_both == 0:
        return 0.0
    r, e = ref[both], est[both]
    ps = float(np.mean(r * r))
    pn = float(np.mean((r - e) ** 2))
    if not (ps > 0 and pn > 0):
        return float("nan")
    return 10.0 * np.log10(ps / pn) * (n_both / n_ref)


def challenge_snr(ref, est, fs: float, align: bool = True) -> np.ndarray:
    """Per-lead Challenge 2024 SNR (dB) of an estimate against a reference.

    Parameters
    ----------
    ref, est : Record or array_like (n_leads, n_samples)
        Reference and estimate in mV (NaN = not drawn / not recovered). With
        Records, the estimate's leads are matched to the reference's by name
        (case-insensitive); a missing lead is all-NaN.
    fs : float
        Sampling rate of both, Hz (ignored for Records, whose ``fs`` must agree).
    align : bool
        Apply the ±0.5 s / ±1 mV alignment (the scorer's default).

    Returns
    -------
    ndarray (n_leads,)
        dB per reference lead (NaN where undefined).
    """
    ref_arr, est_arr, fs = _pair(ref, est, fs)
    out = np.full(ref_arr.shape[0], np.nan)
    for j in range(ref_arr.shape[0]):
        e = est_arr[j]
        if align:
            e = align_lead(ref_arr[j], e, fs)[0]
        out[j] = snr_lead(ref_arr[j], e)
    return out


def challenge_score(refs, ests, fs: float | None = None, align: bool = True) -> float:
    """The Challenge 2024 score: nan-mean of per-lead SNR over all records and leads.

    ``refs``/``ests`` are one reference and estimate (Record or array) or
    equal-length sequences of them. A missing estimate (None) scores as all-NaN.
    """
    if not isinstance(refs, (list, tuple)):
        refs, ests = [refs], [ests]
    vals = []
    for r, e in zip(refs, ests):
        if e is None:
            shape = np.shape(r.signal if hasattr(r, "signal") else r)
            e = np.full(shape, np.nan)
        vals.append(challenge_snr(r, e, fs, align=align))
    v = np.concatenate(vals) if vals else np.array([np.nan])
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def _pair(ref, est, fs):
    if hasattr(ref, "signal"):
        fs = float(ref.fs)
        ref_arr = np.asarray(ref.signal, np.float64)
        if hasattr(est, "signal"):
            if abs(float(est.fs) - fs) > 1e-9:
                raise ConfigError(f"sampling rates differ: reference {fs} Hz, estimate {est.fs} Hz")
            names = {str(n).strip().casefold(): i for i, n in enumerate(est.leads)}
            est_arr = np.full(ref_arr.shape, np.nan)
            for j, name in enumerate(ref.leads):
                i = names.get(str(name).strip().casefold())
                if i is not None:
                    est_arr[j] = _fit_length(np.asarray(est.signal[i], np.float64),
                                             ref_arr.shape[1])
        else:
            est_arr = np.asarray(est, np.float64)
    else:
        ref_arr = np.atleast_2d(np.asarray(ref, np.float64))
        est_arr = np.atleast_2d(np.asarray(est, np.float64))
    if fs is None:
        raise ConfigError("fs is required for arrays")
    if est_arr.shape[0] != ref_arr.shape[0]:
        raise ConfigError("reference and estimate have different numbers of leads")
    est_arr = np.stack([_fit_length(e, ref_arr.shape[1]) for e in est_arr]) \
        if est_arr.shape[1] != ref_arr.shape[1] else est_arr
    return ref_arr, est_arr, float(fs)
