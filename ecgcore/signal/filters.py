"""Butterworth and notch filters: designed with scipy, run by a C++ kernel.

Zero-phase filtering reproduces scipy exactly in method (not merely in spirit):

* ``form="sos"`` equals :func:`scipy.signal.sosfiltfilt` with its default
  padding: odd extension of ``3 * (2 * n_sections + 1 - min(#(b2 == 0), #(a2 == 0)))``
  samples on each side, forward pass started from ``sosfilt_zi(sos) * x[0]`` of the
  extended signal, backward pass started from ``sosfilt_zi(sos) * y[-1]``.
* ``form="ba"`` equals :func:`scipy.signal.filtfilt` (``method="pad"``, default
  padding ``3 * max(len(a), len(b))``, ``lfilter_zi`` initial conditions). This is
  the form ECGFounder's official chain uses for its 8th-order band-pass
  (facts/ecgfounder_ccta.md §1.4); at low cut-offs the single high-order (b, a)
  recursion is numerically worse than SOS, so prefer ``"sos"`` unless parity with
  such a chain is the point.
* ``form="ba_sos"`` (:func:`butter_stage`; the presets' ``form: ba``): the
  ``"ba"`` filter with ``filtfilt``'s padding and initial conditions, run as the
  design's second-order sections when the rounded (b, a) realises the design.
* :func:`notch` equals ``filtfilt(*iirnotch(freq, q, fs), x)``; a second-order
  notch is one section, so its (b, a) and SOS forms are the same recursion.
* ``zero_phase=False`` equals :func:`scipy.signal.sosfilt` / ``lfilter`` from rest.

Signals not longer than the padding raise :class:`~ecgcore.errors.PreprocessError`
where scipy raises ``ValueError``; there is no silent fallback.

NaN and inf propagate as in scipy: a NaN anywhere in a lead makes the zero-phase
output of that lead NaN from that point on in both directions.

float32 input returns float32. The recursion runs in float64 for float32 input by
default (scipy also filters float32 in float64). On AVX-512 machines a stage set
that contains a high-pass or band-pass (numerator zeros at z = 1) runs mixed:
float64 only for the sections whose poles sit near z = 1, float32 for the others
(see ``ecgcore.signal.chain``), within ~2e-6 of the output range.
``fast_float32=True`` keeps the whole recursion in float32, twice as wide per
vector; it stays within ~1e-5 of the range for ECG band-passes of zero-mean
signals but loses ~1e-4 of it on a DC offset of a few times the signal's swing.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from ecgcore.signal._validate import scipy_signal as _ss

from ecgcore.errors import PreprocessError
from ecgcore.signal._validate import check_fs, from_rows, to_rows

__all__ = ["bandpass", "highpass", "lowpass", "notch", "sosfilt", "sosfiltfilt", "filtfilt",
           "butter_stage", "notch_stage", "sos_stage", "ba_stage", "apply_stages"]

_MAX_STATES = 64


def _readonly(*arrays):
    for a in arrays:
        a.setflags(write=False)
    return arrays


@lru_cache(maxsize=512)
def _sos_stage_cached(sos_bytes: bytes, nsec: int, zero_phase: bool, padlen):
    sos = np.frombuffer(sos_bytes, dtype=np.float64).reshape(nsec, 6)
    if not np.all(sos[:, 3] == 1.0):
        raise PreprocessError("sos[:, 3] must be all ones (normalised second-order sections)")
    if nsec > _MAX_STATES // 2:
        raise PreprocessError(f"at most {_MAX_STATES // 2} second-order sections are supported, got {nsec}")
    if padlen is None:
        ntaps = 2 * nsec + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
        padlen = 3 * ntaps
    b = np.ascontiguousarray(sos[:, :3])
    a = np.ascontiguousarray(sos[:, 3:])
    zi = np.ascontiguousarray(_ss.sosfilt_zi(sos))
    _readonly(b, a, zi)
    return (2, b, a, zi, int(padlen), bool(zero_phase))


def sos_stage(sos, zero_phase: bool = True, padlen=None) -> tuple:
    """Kernel stage for second-order sections ``sos`` (shape (n_sections, 6)).

    ``padlen=None`` is scipy.signal.sosfiltfilt's default padding.
    """
    sos = np.ascontiguousarray(np.asarray(sos, dtype=np.float64))
    if sos.ndim != 2 or sos.shape[1] != 6 or sos.shape[0] < 1:
        raise PreprocessError(f"sos must have shape (n_sections, 6), got {sos.shape}")
    if padlen is not None and (int(padlen) != padlen or padlen < 0):
        raise PreprocessError(f"padlen must be a non-negative integer, got {padlen!r}")
    return _sos_stage_cached(sos.tobytes(), sos.shape[0], bool(zero_phase),
                             None if padlen is None else int(padlen))


@lru_cache(maxsize=512)
def _ba_stage_cached(b_bytes: bytes, a_bytes: bytes, zero_phase: bool, padlen):
    b = np.frombuffer(b_bytes, dtype=np.float64)
    a = np.frombuffer(a_bytes, dtype=np.float64)
    if a[0] == 0:
        raise PreprocessError("a[0] must be non-zero")
    if padlen is None:
        padlen = 3 * max(len(a), len(b))
    n = max(len(a), len(b))
    if n - 1 > _MAX_STATES:
        raise PreprocessError(f"filter order {n - 1} is above the supported {_MAX_STATES}")
    if n == 1:
        # a pure gain: express it as one section with zero feedback
        n = 2
    bb = np.zeros(n)
    aa = np.zeros(n)
    bb[:len(b)] = b / a[0]
    aa[:len(a)] = a / a[0]
    zi = _ss.lfilter_zi(bb, aa)
    bb, aa, zi = (np.ascontiguousarray(v[None, :]) for v in (bb, aa, zi))
    _readonly(bb, aa, zi)
    return (n - 1, bb, aa, zi, int(padlen), bool(zero_phase))


def ba_stage(b, a, zero_phase: bool = True, padlen=None) -> tuple:
    """Kernel stage for a transfer function (b, a): scipy.signal.filtfilt / lfilter semantics."""
    b = np.atleast_1d(np.asarray(b, dtype=np.float64))
    a = np.atleast_1d(np.asarray(a, dtype=np.float64))
    if b.ndim != 1 or a.ndim != 1 or b.size == 0 or a.size == 0:
        raise PreprocessError("b and a must be non-empty 1-D coefficient arrays")
    return _ba_stage_cached(b.tobytes(), a.tobytes(), bool(zero_phase),
                            None if padlen is None else int(padlen))


def _check_band(fs, low=None, high=None):
    nyq = fs / 2.0
    for name, v in (("low", low), ("high", high)):
        if v is not None and not (0 < float(v) < nyq):
            raise PreprocessError(f"{name} cut-off {v} Hz must lie strictly between 0 and fs/2 = {nyq} Hz")
    if low is not None and high is not None and not float(low) < float(high):
        raise PreprocessError(f"band-pass needs low < high, got low={low} Hz, high={high} Hz")


@lru_cache(maxsize=256)
def _butter(order: int, wn, btype: str, fs: float, form: str):
    if form == "sos":
        return sos_stage_design(_ss.butter(order, wn, btype=btype, fs=fs, output="sos"))
    b, a = _ss.butter(order, wn, btype=btype, fs=fs, output="ba")
    return (b, a)


# Impulse-response probe of the "ba_sos" form: the (b, a) recursion and the
# sections must agree within this fraction of the response's peak over this
# many samples (float64), else the (b, a) recursion is kept.
_BA_SOS_PROBE = 1 << 14
_BA_SOS_TOL = 1e-6


@lru_cache(maxsize=64)
def _ba_realises_sos(order: int, wn, btype: str, fs: float) -> bool:
    """Whether the rounded (b, a) of a Butterworth design behaves as its sections.

    ``butter(output="ba")`` rounds the expanded polynomials to float64; for high
    orders and cut-offs far below fs / 2 that moves the poles (clustered near
    z = 1) and can make the recursion unstable, so the (b, a) filter is then not
    the designed one. The probe compares the two impulse responses
    (``lfilter`` and ``sosfilt``, float64) over ``_BA_SOS_PROBE`` samples. For
    ECGFounder's 4th-order 0.67-40 Hz band-pass at 500 Hz they differ by
    8e-8 of the peak; for 0.05-40 Hz by 2e-4 (its rounded (b, a) is unstable).
    """
    b, a = _butter(order, wn, btype, fs, "ba")
    sos = _butter(order, wn, btype, fs, "sos")
    imp = np.zeros(_BA_SOS_PROBE)
    imp[0] = 1.0
    h_ba = _ss.lfilter(b, a, imp)
    h_sos = _ss.sosfilt(np.array(sos), imp)  # scipy needs a writable array
    peak = float(np.max(np.abs(h_sos)))
    err = float(np.max(np.abs(h_ba - h_sos)))
    return bool(np.isfinite(err) and peak > 0 and err <= _BA_SOS_TOL * peak)


def sos_stage_design(sos):
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    sos.setflags(write=False)
    return sos


def butter_stage(fs, btype: str, cutoff, order: int = 4, zero_phase: bool = True, form: str = "sos",
                 padlen=None) -> tuple:
    """Kernel stage of a Butterworth filter designed by ``scipy.signal.butter(..., fs=fs)``.

    ``cutoff`` is a number (low/high-pass) or a (low, high) pair (band-pass), in Hz.
    ``form`` is ``"sos"``, ``"ba"`` (see the module notes) or ``"ba_sos"``: the
    filter and the ``filtfilt`` semantics of ``"ba"`` (default padding
    ``3 * max(len(a), len(b))``, steady-state initial conditions, which are the
    same state whatever the realisation) computed as the design's second-order
    sections. In exact arithmetic that is the same output; in float64 it avoids
    the rounding noise of one high-order recursion (which is what ``"ba"``
    reproduces) and lets float32 input take the mixed-precision kernel. It is
    used only when the rounded (b, a) realises the design (their impulse
    responses agree within 1e-6 of the peak over 16384 samples, float64);
    otherwise ``"ba_sos"`` is ``"ba"``. For ECGFounder's 0.67-40 Hz band-pass the
    two forms differ by 3e-7 of the output range on ECGs, 1.5-1.7e-6 with DC
    offsets of 1e3 (numpy 2.4.6, scipy 1.17.1): the rounded polynomials are a
    filter of their own (``scipy.signal.sosfiltfilt`` differs from ``filtfilt``
    by as much), which a long-double run of the same (b, a) confirms; its float64
    rounding noise is 3-4e-7.
    """
    fs = check_fs(fs)
    if int(order) != order or order < 1:
        raise PreprocessError(f"order must be a positive integer, got {order!r}")
    if form not in ("sos", "ba", "ba_sos"):
        raise PreprocessError(f"form must be 'sos', 'ba' or 'ba_sos', got {form!r}")
    if btype == "bandpass":
        low, high = cutoff
        _check_band(fs, low, high)
        wn = (float(low), float(high))
    else:
        _check_band(fs, low=cutoff)
        wn = float(cutoff)
    if form == "ba_sos":
        if _ba_realises_sos(int(order), wn, btype, fs):
            if padlen is None:  # filtfilt's default for the (b, a) form
                b, a = _butter(int(order), wn, btype, fs, "ba")
                padlen = 3 * max(len(a), len(b))
            return sos_stage(_butter(int(order), wn, btype, fs, "sos"), zero_phase, padlen)
        form = "ba"
    design = _butter(int(order), wn, btype, fs, form)
    if form == "sos":
        return sos_stage(design, zero_phase, padlen)
    return ba_stage(design[0], design[1], zero_phase, padlen)


def notch_stage(fs, freq: float = 50.0, q: float = 30.0, zero_phase: bool = True, padlen=None) -> tuple:
    """Kernel stage of ``scipy.signal.iirnotch(freq, q, fs=fs)`` with filtfilt semantics."""
    fs = check_fs(fs)
    _check_band(fs, low=freq)
    if not q > 0:
        raise PreprocessError(f"quality factor q must be positive, got {q!r}")
    b, a = _iirnotch(float(freq), float(q), fs)
    return ba_stage(b, a, zero_phase, padlen)


@lru_cache(maxsize=64)
def _iirnotch(freq, q, fs):
    return _ss.iirnotch(freq, q, fs=fs)


def apply_stages(x, stages, axis: int = -1, fast_float32: bool = False, out=None) -> np.ndarray:
    """Run a sequence of kernel stages over ``x`` in one fused pass per block of leads.

    ``out`` (optional): a writeable C-contiguous array of ``x``'s shape and dtype
    (float32 or float64, time on the last axis), not overlapping ``x``, that
    receives the result and is returned. A caller that reuses one buffer for an
    intermediate result saves the page faults of a fresh output.
    """
    from ecgcore._kernels import chain as _chain

    if out is not None:
        a = np.asarray(x)
        if (not isinstance(out, np.ndarray) or out.shape != a.shape or out.dtype != a.dtype
                or a.dtype not in (np.float32, np.float64) or not out.flags.c_contiguous
                or not out.flags.writeable or a.ndim == 0 or axis not in (-1, a.ndim - 1)):
            raise PreprocessError("out must be a writeable C-contiguous float32/float64 array of "
                                  "x's shape and dtype, with time on the last axis")
        if np.may_share_memory(out, a):
            raise PreprocessError("out must not overlap x")
    rows, lead_shape, axis = to_rows(x, axis)
    n = rows.shape[1]
    for st in stages:
        if st[5] and n <= st[4]:
            raise PreprocessError(
                f"signal of {n} samples is too short for zero-phase filtering: it must be longer than "
                f"the padding of {st[4]} samples (scipy raises ValueError here)")
        if not st[5] and n == 0:
            raise PreprocessError("cannot filter an empty signal")
    if out is not None:
        if rows.shape[0] == 0 or not stages:
            np.copyto(out, np.asarray(x))
            return out
        _chain.run(rows, list(stages), None, not fast_float32, None, None, out.reshape(rows.shape))
        return out
    if rows.shape[0] == 0 or not stages:
        return from_rows(rows.copy(), lead_shape, axis)
    y = _chain.run(rows, list(stages), None, not fast_float32)
    return from_rows(y, lead_shape, axis)


def bandpass(x, fs, low, high, order: int = 4, zero_phase: bool = True, axis: int = -1, *,
             form: str = "sos", padlen=None, fast_float32: bool = False) -> np.ndarray:
    """Butterworth band-pass filter.

    Parameters
    ----------
    x : array_like
        Signal, any leading shape; float32 or float64 (other real dtypes become float64).
    fs : float
        Sampling frequency, Hz.
    low, high : float
        Pass-band edges, Hz, ``0 < low < high < fs / 2``.
    order : int
        Butterworth order N (``scipy.signal.butter``); a band-pass has 2N poles.
    zero_phase : bool
        True: forward-backward filtering equal to ``scipy.signal.sosfiltfilt`` (or
        ``filtfilt`` for ``form="ba"``) with default padding. False: one causal pass
        from rest (``sosfilt`` / ``lfilter``).
    axis : int
        Time axis.
    form : {"sos", "ba", "ba_sos"}
        Design output and recursion form; see the module notes and :func:`butter_stage`.
    padlen : int, optional
        Odd-extension length; None is scipy's default.
    fast_float32 : bool
        Run the recursion in float32 for float32 input.

    Returns
    -------
    ndarray
        Same shape and dtype as ``x`` (float32 stays float32).

    Raises
    ------
    PreprocessError
        Bad cut-offs, or a signal not longer than the padding when ``zero_phase``.
    """
    st = butter_stage(fs, "bandpass", (low, high), order, zero_phase, form, padlen)
    return apply_stages(x, [st], axis, fast_float32)


def highpass(x, fs, cutoff, order: int = 4, zero_phase: bool = True, axis: int = -1, *,
             form: str = "sos", padlen=None, fast_float32: bool = False) -> np.ndarray:
    """Butterworth high-pass filter (``cutoff`` in Hz); see :func:`bandpass` for the parameters."""
    st = butter_stage(fs, "highpass", cutoff, order, zero_phase, form, padlen)
    return apply_stages(x, [st], axis, fast_float32)


def lowpass(x, fs, cutoff, order: int = 4, zero_phase: bool = True, axis: int = -1, *,
            form: str = "sos", padlen=None, fast_float32: bool = False) -> np.ndarray:
    """Butterworth low-pass filter (``cutoff`` in Hz); see :func:`bandpass` for the parameters."""
    st = butter_stage(fs, "lowpass", cutoff, order, zero_phase, form, padlen)
    return apply_stages(x, [st], axis, fast_float32)


def notch(x, fs, freq: float = 50.0, q: float = 30.0, zero_phase: bool = True, axis: int = -1, *,
          padlen=None, fast_float32: bool = False) -> np.ndarray:
    """Second-order IIR notch (``scipy.signal.iirnotch``) at ``freq`` Hz with quality factor ``q``.

    ``zero_phase=True`` equals ``scipy.signal.filtfilt(b, a, x)`` with its default
    padding of 9 samples, as in ECGFounder's official chain (facts/ecgfounder_ccta.md §1.4).
    """
    st = notch_stage(fs, freq, q, zero_phase, padlen)
    return apply_stages(x, [st], axis, fast_float32)


def sosfilt(sos, x, axis: int = -1) -> np.ndarray:
    """Causal SOS filtering from rest, equal to ``scipy.signal.sosfilt(sos, x, axis)`` (dtype kept)."""
    return apply_stages(x, [sos_stage(sos, zero_phase=False)], axis)


def sosfiltfilt(sos, x, axis: int = -1, padlen=None) -> np.ndarray:
    """Zero-phase SOS filtering, equal to ``scipy.signal.sosfiltfilt(sos, x, axis, padlen=padlen)``."""
    return apply_stages(x, [sos_stage(sos, True, padlen)], axis)


def filtfilt(b, a, x, axis: int = -1, padlen=None) -> np.ndarray:
    """Zero-phase (b, a) filtering, equal to ``scipy.signal.filtfilt(b, a, x, axis, padlen=padlen)``."""
    return apply_stages(x, [ba_stage(b, a, True, padlen)], axis)
