"""Plain arrays: NumPy ``.npy``/``.npz`` and CSV, plus the ``.npy`` writer.

An array carries no sampling rate, lead names or units, so they come from, in
order: the reader's arguments, a sidecar JSON next to the file
(``path + ".json"``, what :func:`write_npy` writes), or, for ``.npz``, the
keys ``fs``/``leads``/``units`` stored beside ``signal``. A missing sampling
rate is an error that says how to pass it: guessing 500 Hz would silently
mistime every interval.

Orientation: ecgcore arrays are (n_leads, n_samples). A (n_samples, n_leads)
array is accepted when the lead count is known (``leads=`` or sidecar) or
when one axis has at most 16 entries and the other at least 8 times as many;
anything else is ambiguous and refused.

Units default to mV; ``units="uV"`` (or ``"V"``) rescales. The sanity gate on
``record.quality`` flags an array whose amplitudes are off by a unit factor.
"""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np

from .._atomic import atomic_open
from ..errors import ReadError, WriteError
from ..record import STANDARD_12, STANDARD_8, Record

__all__ = ["read", "read_npy", "read_npz", "read_csv", "write_npy", "SIDE_CAR_SUFFIX"]

SIDE_CAR_SUFFIX = ".json"
_UNITS = {"mv": 1.0, "millivolt": 1.0, "millivolts": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3,
          "microvolt": 1e-3, "microvolts": 1e-3, "v": 1e3, "volt": 1e3, "volts": 1e3,
          "nv": 1e-6}
_TIME_COLS = {"time": 1.0, "t": 1.0, "time_s": 1.0, "seconds": 1.0, "sec": 1.0, "s": 1.0,
              "time_ms": 1e-3, "ms": 1e-3, "t_ms": 1e-3, "time (s)": 1.0, "time (ms)": 1e-3}
_MAX_LEADS = 16
_SIDECAR_VERSION = 1


def _unit_scale(units, path) -> float:
    key = str(units).strip().lower()
    if key not in _UNITS:
        raise ReadError(f"unknown units {units!r}; use 'mV', 'uV' or 'V'", path)
    return _UNITS[key]


def _default_leads(n: int):
    if n == 12:
        return STANDARD_12
    if n == 8:
        return STANDARD_8
    return tuple(f"ch{i + 1}" for i in range(n))


def _sidecar(path) -> dict:
    side = path + SIDE_CAR_SUFFIX
    if not os.path.isfile(side):
        return {}
    try:
        with open(side, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReadError(f"sidecar {os.path.basename(side)} is not valid JSON ({exc})", path) from None
    if not isinstance(data, dict):
        raise ReadError(f"sidecar {os.path.basename(side)} is not a JSON object", path)
    return data


def _orient(arr: np.ndarray, n_leads: int | None, layout: str | None, path) -> np.ndarray:
    """Return (n_leads, n_samples)."""
    if arr.ndim == 1:
        return arr[None, :]
    if arr.ndim != 2:
        raise ReadError(f"array has shape {arr.shape}; expected (n_leads, n_samples)", path)
    if layout in ("leads_x_samples", "leads_first"):
        return arr
    if layout in ("samples_x_leads", "samples_first"):
        return arr.T
    if layout is not None:
        raise ReadError(f"unknown layout {layout!r}", path)
    r, c = arr.shape
    if n_leads is not None:
        if r == n_leads and c != n_leads:
            return arr
        if c == n_leads and r != n_leads:
            return arr.T
        if r == c == n_leads:
            return arr
        raise ReadError(f"array shape {arr.shape} has no axis of {n_leads} leads", path)
    if r <= _MAX_LEADS and c >= 8 * r:
        return arr
    if c <= _MAX_LEADS and r >= 8 * c:
        return arr.T
    raise ReadError(f"cannot tell leads from samples in shape {arr.shape}; pass leads=[...] "
                    "or write a sidecar JSON with 'leads'", path)


def _need_fs(fs, path):
    if fs is None:
        side = os.path.basename(os.fspath(path)) + SIDE_CAR_SUFFIX
        raise ReadError("the sampling rate is unknown: put a sidecar JSON beside it "
                        f"({side}, e.g. {{\"fs\": 500, \"leads\": [\"I\", \"II\", ...]}}; "
                        "what every ecgcore command then reads), or in Python pass fs=... (Hz), "
                        "e.g. ecgcore.read(path, fs=500)", path)
    try:
        fs = float(fs)
    except (TypeError, ValueError):
        raise ReadError(f"sampling rate {fs!r} is not a number", path) from None
    if not (np.isfinite(fs) and fs > 0):
        raise ReadError(f"sampling rate {fs!r} must be positive", path)
    return fs


def _build(arr, fs, leads, units, path, layout=None, meta=None, derived=()):
    if arr.dtype.kind not in "fiub":
        raise ReadError(f"array dtype {arr.dtype} is not numeric", path)
    n_leads = len(leads) if leads is not None else None
    sig = _orient(arr, n_leads, layout, path)
    if sig.shape[1] == 0:
        raise ReadError("array holds no samples", path)
    fs = _need_fs(fs, path)
    scale = _unit_scale(units or "mV", path)
    sig = sig.astype(np.float32) if scale == 1.0 else (sig.astype(np.float64) * scale).astype(np.float32)
    names = list(leads) if leads is not None else list(_default_leads(sig.shape[0]))
    if len(names) != sig.shape[0]:
        raise ReadError(f"{len(names)} lead names for {sig.shape[0]} rows", path)
    if any(not isinstance(n, str) for n in names):
        raise ReadError("lead names must be strings", path)
    return Record(sig, fs, names, meta=meta or {}, source=path,
                  derived=[d for d in derived if d in names])


def read_npy(path: "str | os.PathLike", fs: float | None = None, leads=None, *,
             units: str | None = None, layout: str | None = None) -> Record:
    """Read a ``.npy`` array (no pickles) into a Record.

    Parameters
    ----------
    path : path-like
    fs : float, optional
        Sampling rate, Hz; required unless the sidecar JSON gives it.
    leads : sequence of str, optional
        Lead names; default from the sidecar, else the standard 12 or 8 leads
        by count, else ``ch1, ch2, ...``.
    units : str, optional
        ``"mV"`` (default), ``"uV"`` or ``"V"``.
    layout : {"leads_x_samples", "samples_x_leads"}, optional
        Overrides the orientation guess.

    Raises
    ------
    ReadError
        Not a valid ``.npy`` file, object arrays, an unknown sampling rate,
        an orientation that cannot be decided.
    """
    path = os.fspath(path)
    side = _sidecar(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except MemoryError:
        raise ReadError("the .npy header declares an array too large to load", path) from None
    except Exception as exc:  # noqa: BLE001 - np.load's header parser raises
        # SyntaxError, tokenize.TokenError, ValueError, EOFError... on damaged headers
        raise ReadError(f"not a readable .npy file ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(arr, np.ndarray):
        raise ReadError("not a .npy array file", path)
    meta = {"format": "npy"}
    for key in ("source", "format_origin", "meta"):
        if key in side:
            meta[f"sidecar_{key}"] = side[key]
    return _build(arr, fs if fs is not None else side.get("fs"),
                  leads if leads is not None else side.get("leads"),
                  units if units is not None else side.get("units"), path,
                  layout if layout is not None else side.get("layout"), meta,
                  side.get("derived") or ())


def read_npz(path: "str | os.PathLike", fs: float | None = None, leads=None, *,
             units: str | None = None, layout: str | None = None, key: str | None = None) -> Record:
    """Read a ``.npz`` archive with keys ``signal`` (required), ``fs``, ``leads``, ``units``.

    ``key`` names the signal array when it is not called ``signal`` (``"x"``,
    ``"ecg"`` and ``"data"`` are tried too). Arguments override stored keys.
    """
    path = os.fspath(path)
    side = _sidecar(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            pick = key or next((k for k in ("signal", "x", "ecg", "data") if k in names), None)
            if pick is None or pick not in names:
                raise ReadError(f".npz has no signal array (keys: {', '.join(names) or 'none'}); "
                                "store it as 'signal' or pass key=", path)
            arr = z[pick]
            stored = {k: z[k] for k in ("fs", "leads", "units", "layout") if k in names}
    except ReadError:
        raise
    except MemoryError:
        raise ReadError("the .npz member declares an array too large to load", path) from None
    except Exception as exc:  # noqa: BLE001 - zipfile/np.load raise many types on damage
        raise ReadError(f"not a readable .npz file ({type(exc).__name__}: {exc})", path) from None

    def scalar(v):
        v = np.asarray(v)
        if v.size != 1:
            raise ReadError(f".npz key holds {v.size} values where one was expected", path)
        return v.reshape(()).item()

    s_fs = scalar(stored["fs"]) if "fs" in stored else side.get("fs")
    s_leads = [str(x) for x in np.asarray(stored["leads"]).ravel()] if "leads" in stored \
        else side.get("leads")
    s_units = str(scalar(stored["units"])) if "units" in stored else side.get("units")
    s_layout = str(scalar(stored["layout"])) if "layout" in stored else side.get("layout")
    return _build(arr, fs if fs is not None else s_fs, leads if leads is not None else s_leads,
                  units if units is not None else s_units, path,
                  layout if layout is not None else s_layout, {"format": "npz"})


def read_csv(path: "str | os.PathLike", fs: float | None = None, leads=None, *,
             units: str | None = None, time_column: str | None = None) -> Record:
    """Read a CSV file with one column per lead and a header row of lead names.

    A time column (``time``, ``t``, ``time_s``, ``time_ms``...) is used for
    ``fs`` (from the median sample interval) when ``fs`` is not given, and is
    otherwise dropped. ``,``, ``;`` and tab delimiters are recognised. Units
    default to mV.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ReadError(f"cannot open: {exc.strerror or exc}", path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if "\x00" in text:
        raise ReadError("CSV contains NUL bytes (binary data?)", path)
    lines = text.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    if len(lines) < 2:
        raise ReadError("CSV needs a header row and at least one data row", path)
    head = lines[0]
    delim = max((",", ";", "\t"), key=head.count)
    if head.count(delim) == 0 and len(head.split()) > 1:
        delim = None  # whitespace separated
    try:
        header = next(csv.reader([head], delimiter=delim or " ", skipinitialspace=True))
    except csv.Error as exc:
        raise ReadError(f"CSV header is unreadable ({exc})", path) from None
    header = [h.strip().strip('"') for h in header if h.strip() != "" or delim]
    has_header = any(h and not _is_number(h) for h in header)
    body = lines[1:] if has_header else lines
    try:
        data = np.loadtxt(io.StringIO("\n".join(body)), delimiter=delim, dtype=np.float64,
                          ndmin=2, comments="#")
    except ValueError as exc:
        raise ReadError(f"CSV data are not all numbers ({exc})", path) from None
    if data.size == 0:
        raise ReadError("CSV holds no samples", path)
    if has_header and len(header) != data.shape[1]:
        raise ReadError(f"CSV header names {len(header)} columns, rows have {data.shape[1]}", path)
    names = header if has_header else [f"ch{i + 1}" for i in range(data.shape[1])]
    tcol = None
    if time_column is not None:
        if time_column not in names:
            raise ReadError(f"no column {time_column!r} in the CSV header", path)
        tcol = names.index(time_column)
    else:
        for i, nm in enumerate(names):
            if nm.strip().lower() in _TIME_COLS:
                tcol = i
                break
    meta = {"format": "csv"}
    if tcol is not None:
        t = data[:, tcol] * _TIME_COLS.get(names[tcol].strip().lower(), 1.0)
        if fs is None:
            if t.size < 2:
                raise ReadError("cannot infer fs from a time column with one row; pass fs=", path)
            dt = np.diff(t)
            step = float(np.median(dt))
            if not (np.isfinite(step) and step > 0):
                raise ReadError("time column is not increasing; pass fs=", path)
            if np.max(np.abs(dt - step)) > 0.01 * step:
                raise ReadError("time column is not uniformly sampled; pass fs=", path)
            fs = 1.0 / step
            # A rounded time column (e.g. ms at 3 decimals) gives fs like 499.9998.
            if abs(fs - round(fs)) < 1e-3 * fs:
                fs = float(round(fs))
        meta["time_start_s"] = float(t[0])
        data = np.delete(data, tcol, axis=1)
        names = [n for i, n in enumerate(names) if i != tcol]
    if data.shape[1] == 0:
        raise ReadError("CSV has no signal columns", path)
    return _build(data.T, fs, leads if leads is not None else names, units, path,
                  "leads_x_samples", meta)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def read(path: "str | os.PathLike", fs: float | None = None, leads=None, **kwargs) -> Record:
    """Read ``.npy``, ``.npz`` or CSV, deciding by content (see :mod:`ecgcore.io.sniff`)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ReadError(f"cannot open: {exc.strerror or exc}", path) from None
    if head.startswith(b"\x93NUMPY"):
        return read_npy(path, fs, leads, **kwargs)
    if head.startswith(b"PK"):
        return read_npz(path, fs, leads, **kwargs)
    return read_csv(path, fs, leads, **kwargs)


def write_npy(record: Record, path: "str | os.PathLike") -> str:
    """Write ``record.signal`` as float32 ``.npy`` plus a sidecar JSON, atomically.

    The array is (n_leads, n_samples) in mV; the sidecar ``path + ".json"``
    records ``fs``, ``leads``, ``units``, ``layout``, ``derived`` and
    ``source`` so that :func:`read_npy` round-trips the record without
    arguments. Each file is written to a temporary name in the same folder and
    renamed into place, so a reader never sees a half-written file.

    Returns
    -------
    str
        The ``.npy`` path written (``.npy`` is appended when missing).
    """
    path = os.fspath(path)
    if not path.endswith(".npy"):
        path += ".npy"
    if not isinstance(record, Record):
        raise WriteError(f"expected a Record, got {type(record).__name__}", path)
    sig = np.ascontiguousarray(record.signal, dtype=np.float32)
    side = {"ecgcore_npy": _SIDECAR_VERSION, "fs": float(record.fs), "leads": list(record.leads),
            "units": record.units, "layout": "leads_x_samples", "shape": list(sig.shape),
            "derived": sorted(record.derived), "source": record.source,
            "format_origin": record.meta.get("format")}
    try:
        # exported arrays are often the only copy: fsync before the move
        with atomic_open(path, "wb", fsync=True) as fh:
            np.save(fh, sig, allow_pickle=False)
        with atomic_open(path + SIDE_CAR_SUFFIX, "wb", fsync=True) as fh:
            fh.write(json.dumps(side, indent=1).encode("utf-8"))
    except OSError as exc:
        raise WriteError(f"cannot write: {exc.strerror or exc}", path) from None
    return path
