"""Run a sequence of signal steps with the IIR filters and resampling fused.

``chain(x, fs, steps)`` applies the steps in order. Consecutive filter steps
(``bandpass``, ``highpass``, ``lowpass``, ``notch``, ``sosfiltfilt``) followed by an
optional ``resample`` (poly or linear) run in one C++ call: each block of leads is
transposed once, filtered stage by stage and resampled in cache, and written back
once. The result equals calling the individual functions one after the other
(each filter keeps its own scipy padding and initial conditions).

A per-lead ``zscore`` step right after them runs in the same call: the kernel
takes the statistics (float64, mean then the sum of squared deviations; ``zscore()``
takes one pass around the lead's first sample, and the two agree to float64
rounding) from its block buffer and writes the standardised rows directly.
``scope="record"`` and ``return_stats`` are not fused. Plans are cached on
(fs, length, dtype, steps) when the step parameters are hashable; a chain that
is only fused kernel groups plus a final plain ``segment`` (the usual preset on a
C-contiguous array, time last) is memoised whole and runs without the step loop.

float32 input with a band-pass or high-pass among the fused filters runs the
kernel's mixed-precision path on AVX-512 and AVX2 machines: float64 only for the sections
with poles near z = 1, float32 for the rest, the resampler and the transposes
(see csrc/chain_body.hpp); the result stays within ~2e-6 of the output range of
the float64 computation. float64 input always computes in float64.

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


_ZS_CONSTANT = {"zero": 0, "nan": 1, "keep": 2}


def _fused_zscore(params):
    """(ddof, eps, constant code) when a ``zscore`` step can run inside the kernel, else None.

    Only per-lead z-scores with valid, plain parameters are fused; anything else
    (scope="record", return_stats, bad values) goes through ``zscore()``, which
    also raises the errors.
    """
    p = dict(params)
    if set(p) - {"scope", "constant", "ddof", "eps"} or p.get("scope", "lead") != "lead":
        return None
    constant, ddof, eps = p.get("constant", "zero"), p.get("ddof", 0), p.get("eps", 0.0)
    if not isinstance(constant, str) or constant not in _ZS_CONSTANT:
        return None
    try:
        if isinstance(ddof, bool) or int(ddof) != ddof or ddof < 0:
            return None
        eps = float(eps)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(eps) or eps < 0:
        return None
    return (int(ddof), eps, _ZS_CONSTANT[constant])


def _plan_group(steps, i, fs, n, dtype):
    """Kernel plan for the run of steps at ``i``: filters, then an optional resample
    (not fft) and an optional fusable zscore.

    Returns ``(stages, resample plan or None, zscore tuple or None, fs after, next i)``.
    """
    stages, plan = [], None
    while i < len(steps) and steps[i][0] in _FILTERS:
        stages.append(_stage(steps[i][0], fs, steps[i][1] or {}))
        i += 1
    for st in stages:
        if st[5] and n <= st[4]:
            raise PreprocessError(
                f"signal of {n} samples is too short for zero-phase filtering: it must be "
                f"longer than the padding of {st[4]} samples")
    fs_new = fs
    if i < len(steps) and steps[i][0] == "resample":
        rp = dict(steps[i][1] or {})
        if rp.get("method", "poly") != "fft":
            fs_new = check_fs(rp["fs_out"], "fs_out")
            if fs_new != fs:
                plan = _rs.resample_plan(n, fs, fs_new, rp.get("method", "poly"), dtype)
            i += 1
    zs = None
    if i < len(steps) and steps[i][0] == "zscore" and (stages or plan is not None):
        zs = _fused_zscore(steps[i][1] or {})
        n_out = n if plan is None else int(plan[1])
        if zs is not None and zs[0] >= n_out:
            zs = None  # zscore() raises the error
        if zs is not None:
            i += 1
    return stages, plan, zs, fs_new, i


_GROUP_CACHE: dict = {}


def _plan_group_cached(steps, i, fs, n, dtype):
    """``_plan_group`` memoised on (fs, n, dtype, the group's steps).

    Planning (filter design look-ups, argument checks, the resampling plan) cost
    about 40 us per call, a sixth of a 12 x 5000 record's whole chain; steps with
    unhashable parameters (e.g. an ``sos`` array) are planned every time.
    """
    j = i
    while j < len(steps) and steps[j][0] in _FILTERS:
        j += 1
    for name in ("resample", "zscore"):
        if j < len(steps) and steps[j][0] == name:
            j += 1
    try:
        key = (fs, n, np.dtype(dtype).char,
               tuple((steps[k][0], tuple(sorted((steps[k][1] or {}).items(), key=lambda kv: kv[0])))
                     for k in range(i, j)))
        hash(key)
    except (TypeError, AttributeError):
        return _plan_group(steps, i, fs, n, dtype)
    hit = _GROUP_CACHE.get(key)
    if hit is None:
        stages, plan, zs, fs_new, nxt = _plan_group(steps, i, fs, n, dtype)
        hit = (stages, plan, zs, fs_new, nxt - i)
        if len(_GROUP_CACHE) >= 256:
            _GROUP_CACHE.clear()
        _GROUP_CACHE[key] = hit
    return list(hit[0]), hit[1], hit[2], hit[3], i + hit[4]


_PROGRAM_CACHE: dict = {}


def _compile(fs, steps, n, dtype, ndim):
    """The steps as kernel calls plus an optional final plain ``segment``, or None.

    Only chains made of fused kernel groups and a last whole-window ``segment`` of a
    C-ordered array compile; anything else (and anything that raises while
    planning) takes the general loop in :func:`chain`, which also raises the errors.
    """
    ops, i, n0 = [], 0, n
    while i < len(steps):
        name, params = steps[i]
        params = params or {}
        if name in _FILTERS or (name == "resample" and params.get("method", "poly") != "fft"):
            stages, plan, zs, fs, i = _plan_group(steps, i, fs, n, dtype)
            if not stages and plan is None:
                ops.append(("copy",))
                continue
            ops.append(("run", stages, plan, zs))
            n = n if plan is None else int(plan[1])
            continue
        if name == "segment" and i == len(steps) - 1 and ndim >= 2:
            probe = np.lib.stride_tricks.as_strided(np.zeros(1, dtype), (1,) * (ndim - 1) + (n,), (0,) * ndim)
            if _plain_windows(probe, -1, dict(params), fs):
                ops.append(("segment", _window_length(params, fs)))
                i += 1
                continue
        return None
    seg = 0
    if len(ops) >= 2 and ops[-1][0] == "segment" and ops[-2][0] == "run":
        # the kernel writes the windows itself: no copy of its output
        seg = ops.pop()[1]
    # each kernel call as a plan parsed once (pybind11 plan objects)
    K = _kernel()
    out, m = [], n0
    for k, op in enumerate(ops):
        if op[0] != "run":
            out.append(op)
            continue
        L = seg if k == len(ops) - 1 else 0
        plan = K.prepare(np.dtype(dtype) == np.float32, m, op[1], op[2], True, op[3], L)
        out.append(("plan", plan, L))
        m = m if op[2] is None else int(op[2][1])
    return out


_KERNEL = []  # the compiled module, imported on first use


def _kernel():
    if not _KERNEL:
        from ecgcore._kernels import chain as _chain
        _KERNEL.append(_chain)
    return _KERNEL[0]


def _run_compiled(ops, x):
    _chain = _KERNEL[0] if _KERNEL else _kernel()
    lead = x.shape[:-1]
    rows = x.reshape(-1, x.shape[-1])
    for op in ops:
        if op[0] == "plan" and op[2]:  # filters ... + segment, fused
            w = _chain.run_plan(rows, op[1], lead[-1])
            return w.reshape(lead[:-1] + w.shape[1:])
        if op[0] == "plan":
            rows = _chain.run_plan(rows, op[1])
        elif op[0] == "copy":
            rows = rows.copy()
        else:
            L = op[1]
            k = rows.shape[1] // L
            win = rows.reshape(lead + (rows.shape[1],))[..., :k * L].reshape(lead + (k, L))
            return np.ascontiguousarray(np.swapaxes(win, -2, -3))
    return rows.reshape(lead + (rows.shape[1],))


def _fast_chain(x, fs, steps, axis):
    """``chain`` for the common case, with the whole plan memoised; None when it does not apply.

    One record per call is the usual way to run a preset, and there the general
    loop's Python (argument checks, per-group cache keys, reshapes) cost about a
    tenth of the kernel. Applies to a C-contiguous float32/float64 array with time
    last and hashable step parameters.
    """
    if type(x) is not np.ndarray or not x.ndim or not x.size or (axis != -1 and axis != x.ndim - 1):
        return None
    dt = x.dtype.char
    if (dt != "f" and dt != "d") or not x.flags.c_contiguous:
        return None
    try:
        key = (fs, x.ndim, x.shape[-1], dt,
               tuple([(name, tuple(params.items()) if params else ()) for name, params in steps]))
        ops = _PROGRAM_CACHE.get(key, False)
    except (TypeError, ValueError, AttributeError):
        return None
    if ops is False:
        try:
            ops = _compile(check_fs(fs), list(steps), x.shape[-1], x.dtype, x.ndim)
        except Exception:  # the general loop raises the proper error
            return None
        if len(_PROGRAM_CACHE) >= 256:
            _PROGRAM_CACHE.clear()
        _PROGRAM_CACHE[key] = ops
    return None if ops is None else _run_compiled(ops, x)


def chain(x, fs, steps, axis: int = -1):
    """Apply ``steps`` to ``x`` sampled at ``fs`` Hz; see the module notes.

    Returns
    -------
    ndarray
        The processed array (time last once a ``segment`` step has run).
    """
    if not isinstance(steps, (list, tuple)):
        steps = list(steps)  # an iterator is read once
    y = _fast_chain(x, fs, steps, axis)
    if y is not None:
        return y
    from ecgcore._kernels import chain as _chain

    fs = check_fs(fs)
    y = x
    i = 0
    steps = list(steps)
    while i < len(steps):
        name, params = steps[i]
        params = dict(params or {})
        if name in _FILTERS or (name == "resample" and params.get("method", "poly") != "fft"):
            rows, lead_shape, ax = to_rows(y, axis)
            stages, plan, zs, fs_new, i = _plan_group_cached(steps, i, fs, rows.shape[1], rows.dtype)
            fs = fs_new
            if not stages and plan is None:
                y = from_rows(rows.copy(), lead_shape, ax)
                continue
            if rows.shape[0] == 0:
                n_out = rows.shape[1] if plan is None else int(plan[1])
                y = from_rows(np.empty((0, n_out), rows.dtype), lead_shape, ax)
                continue
            if zs is not None:
                # the kernel z-scores each row from its float64 block buffer
                out = _chain.run(rows, stages, plan, True, zs)
            else:
                out = _chain.run(rows, stages, plan, True)
            y = from_rows(out, lead_shape, ax)
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
