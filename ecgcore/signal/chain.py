"""Run a sequence of signal steps with the IIR filters and resampling fused.

``chain(x, fs, steps)`` applies the steps in order. Consecutive filter steps
(``bandpass``, ``highpass``, ``lowpass``, ``notch``, ``sosfiltfilt``) followed by an
optional ``resample`` (poly or linear) run in one C++ call: each block of leads is
transposed once, filtered stage by stage and resampled in cache, and written back
once. The result equals calling the individual functions one after the other
(each filter keeps its own scipy padding and initial conditions).

Steps are ``(name, params)`` pairs, e.g.::

    [("bandpass", {"low": 0.5, "high": 40}), ("notch", {"freq": 50}),
     ("resample", {"fs_out": 250}), ("zscore", {"scope": "lead"}),
     ("segment", {"length_s": 5})]

``segment`` takes ``length`` (samples) or ``length_s`` (seconds, at the current rate).
"""

from __future__ import annotations

import numpy as np

from ecgcore.errors import PreprocessError
from ecgcore.signal import baseline as _bl
from ecgcore.signal import filters as _f
from ecgcore.signal import normalize as _nz
from ecgcore.signal import resample as _rs
from ecgcore.signal import segment as _sg
from ecgcore.signal._validate import check_fs, from_rows, to_rows

__all__ = ["chain"]

_FILTERS = {"bandpass", "highpass", "lowpass", "notch", "sosfiltfilt"}


def _stage(name, fs, p):
    p = dict(p)
    zp = p.pop("zero_phase", True)
    form = p.pop("form", "sos")
    padlen = p.pop("padlen", None)
    order = p.pop("order", 4)
    if name == "bandpass":
        st = _f.butter_stage(fs, "bandpass", (p.pop("low"), p.pop("high")), order, zp, form, padlen)
    elif name in ("highpass", "lowpass"):
        st = _f.butter_stage(fs, name, p.pop("cutoff"), order, zp, form, padlen)
    elif name == "notch":
        st = _f.notch_stage(fs, p.pop("freq", 50.0), p.pop("q", 30.0), zp, padlen)
    else:
        st = _f.sos_stage(p.pop("sos"), zp, padlen)
    if p:
        raise PreprocessError(f"unknown parameter(s) for {name}: {sorted(p)}")
    return st


def _window_length(params, fs):
    return int(params["length"]) if "length" in params else int(round(params["length_s"] * fs))


def _plain_windows(y, axis, params, fs) -> bool:
    """True when segment(**params) is a plain reshape: stride == length, whole windows only."""
    y = np.asarray(y)
    if set(params) - {"length", "length_s", "stride", "drop_last"} or len(set(params) & {"length", "length_s"}) != 1:
        return False
    if not params.get("drop_last", True) or y.ndim < 2 or y.dtype.kind != "f" or axis % y.ndim != y.ndim - 1:
        return False
    try:
        L = _window_length(params, fs)
    except (TypeError, ValueError):
        return False
    if "length" in params and L != params["length"]:
        return False
    return L >= 1 and params.get("stride", L) == L and y.shape[-1] >= L


def chain(x, fs, steps, axis: int = -1):
    """Apply ``steps`` to ``x`` sampled at ``fs`` Hz; see the module notes.

    Returns
    -------
    ndarray
        The processed array (time last once a ``segment`` step has run).
    """
    from ecgcore._kernels import chain as _chain

    fs = check_fs(fs)
    y = x
    i = 0
    steps = list(steps)
    while i < len(steps):
        name, params = steps[i]
        params = dict(params or {})
        if name in _FILTERS or (name == "resample" and params.get("method", "poly") != "fft"):
            stages, plan = [], None
            while i < len(steps) and steps[i][0] in _FILTERS:
                stages.append(_stage(steps[i][0], fs, steps[i][1] or {}))
                i += 1
            rows, lead_shape, ax = to_rows(y, axis)
            n = rows.shape[1]
            for st in stages:
                if st[5] and n <= st[4]:
                    raise PreprocessError(
                        f"signal of {n} samples is too short for zero-phase filtering: it must be "
                        f"longer than the padding of {st[4]} samples")
            fs_new = fs
            if i < len(steps) and steps[i][0] == "resample":
                rp = dict(steps[i][1] or {})
                method = rp.get("method", "poly")
                if method != "fft":
                    fs_new = check_fs(rp["fs_out"], "fs_out")
                    if fs_new != fs:
                        plan = _rs.resample_plan(n, fs, fs_new, method, rows.dtype)
                    i += 1
            if rows.shape[0] == 0 or (not stages and plan is None):
                out = rows.copy()
            else:
                out = _chain.run(rows, stages, plan, True)
            y = from_rows(out, lead_shape, ax)
            fs = fs_new
            continue
        if name == "resample":
            fs_out = params.pop("fs_out")
            y = _rs.resample(y, fs, fs_out, axis=axis, **params)
            fs = check_fs(fs_out)
        elif name == "zscore":
            y = _nz.zscore(y, axis=axis, **params)
        elif name == "median_baseline":
            y = _bl.median_baseline(y, fs, axis=axis, **params)
        elif name == "segment" and _plain_windows(y, axis, params, fs):
            # non-overlapping whole windows of a C-ordered (..., leads, n) array are a
            # reshape plus one copy; segment() gives the same array with more checks
            L = _window_length(params, fs)
            k = y.shape[-1] // L
            win = y[..., :k * L].reshape(y.shape[:-1] + (k, L))
            y = np.ascontiguousarray(np.moveaxis(win, -2, -3))
            axis = -1
        elif name == "segment":
            if "length_s" in params:
                params["length"] = int(round(params.pop("length_s") * fs))
            if "stride_s" in params:
                params["stride"] = int(round(params.pop("stride_s") * fs))
            y = _sg.segment(y, axis=axis, **params)
            axis = -1
        else:
            raise PreprocessError(f"unknown signal step {name!r}")
        i += 1
    return np.asarray(y)
