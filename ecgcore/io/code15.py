"""CODE-15% HDF5 reader (Zenodo 4916206; facts/formats.md §10).

A part file holds ``exam_id`` (int64, N) and ``tracings`` (float32,
N × 4096 × 12: samples × leads, DI, DII, DIII, AVR, AVL, AVF, V1–V6) at
400 Hz in mV. Two quirks are handled here, not left to the user:

* every part file ends with a **dummy row** (``exam_id`` 0, all zeros), which
  is skipped;
* the 7.3-s exams are **zero-padded symmetrically** to 4096 samples, so each
  exam is trimmed to the first and last sample that is non-zero in any lead
  (``meta["padding"]`` keeps the removed ``(left, right)`` counts).

A part file holds ~20,000 exams, so :func:`read` returns **one** exam and asks
for ``exam_id=`` or ``index=`` when the file holds several (returning the
first silently would hide the other 19,999); :func:`iter_code15` streams all
of them (or a chosen subset) in row chunks, never loading a whole part.

``exams_csv=`` joins the official ``exams.csv`` row (age, sex, the six
labels, ``normal_ecg``, ``death``, ``timey``) into ``meta``.
"""

from __future__ import annotations

import csv
import os
from typing import Iterable, Iterator

import numpy as np

from ..errors import ReadError
from ..record import STANDARD_12, Record

__all__ = ["read", "read_code15", "iter_code15", "read_code15_all", "exam_ids", "FS", "LEADS"]

#: Sampling rate of every CODE-15% tracing, Hz.
FS = 400.0
#: Lead order of the ``tracings`` last axis, in ecgcore names (file: DI, DII, DIII, AVR, ...).
LEADS = STANDARD_12
_LABELS = ("1dAVb", "RBBB", "LBBB", "SB", "ST", "AF")
# h5py/HDF5 report damaged files with any of these.
_H5_ERRORS = (OSError, KeyError, ValueError, RuntimeError, TypeError, IndexError, AttributeError)


def _open(path):
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is a hard dependency
        raise ReadError(f"h5py is needed to read CODE-15% HDF5 files ({exc})", path) from None
    try:
        return h5py.File(path, "r")
    except _H5_ERRORS as exc:
        raise ReadError(f"not a readable HDF5 file ({exc})", path) from None


def _datasets(f, path):
    """Validated (tracings, exam_id array or None)."""
    try:
        if "tracings" not in f:
            raise ReadError("HDF5 file has no 'tracings' dataset: not a CODE-15% part file "
                            f"(datasets: {', '.join(sorted(f.keys())) or 'none'})", path)
        tr = f["tracings"]
        shape, dtype = tr.shape, tr.dtype
    except ReadError:
        raise
    except _H5_ERRORS as exc:
        raise ReadError(f"cannot read the 'tracings' dataset ({exc})", path) from None
    if not hasattr(tr, "shape") or len(shape) != 3 or shape[2] != len(LEADS):
        raise ReadError(f"'tracings' has shape {shape}; CODE-15% stores (N, samples, 12)", path)
    if dtype.kind != "f":
        raise ReadError(f"'tracings' has dtype {dtype}; CODE-15% stores float32 mV", path)
    ids = None
    try:
        if "exam_id" in f:
            ids = np.asarray(f["exam_id"][()]).astype(np.int64, copy=False).ravel()
    except _H5_ERRORS as exc:
        raise ReadError(f"cannot read the 'exam_id' dataset ({exc})", path) from None
    if ids is not None and ids.shape[0] != shape[0]:
        raise ReadError(f"'exam_id' has {ids.shape[0]} entries for {shape[0]} tracings", path)
    return tr, ids


def _is_dummy(ids, row, block):
    return ids is not None and ids[row] == 0 and not (block != 0).any()


def _as_f32(a):
    # Official files are float32; a float64 variant is cast, out-of-range
    # values become inf and show up in record.quality rather than as warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(a, dtype=np.float32)


def _trim(x):
    """(samples, 12) -> trimmed (12, n) float32 and (left, right) padding."""
    live = np.flatnonzero(np.any(x != 0, axis=1))
    if live.size == 0:
        return np.ascontiguousarray(x.T), (0, 0)
    a, b = int(live[0]), int(live[-1]) + 1
    return np.ascontiguousarray(x[a:b].T), (a, x.shape[0] - b)


def _load_csv(exams_csv, path) -> dict:
    """exam_id -> row dict of an exams.csv file."""
    try:
        with open(exams_csv, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "exam_id" not in reader.fieldnames:
                raise ReadError("exams.csv has no 'exam_id' column", exams_csv)
            out = {}
            for row in reader:
                try:
                    out[int(row["exam_id"])] = row
                except (TypeError, ValueError):
                    continue
            return out
    except OSError as exc:
        raise ReadError(f"cannot open exams.csv: {exc.strerror or exc}", exams_csv) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ReadError(f"exams.csv is not readable CSV ({exc})", exams_csv) from None


def _csv_meta(row: dict) -> dict:
    def val(key):
        v = (row.get(key) or "").strip()
        if v == "":
            return None
        if v.lower() in ("true", "false"):
            return v.lower() == "true"
        try:
            f = float(v)
        except ValueError:
            return v
        return int(f) if f.is_integer() else f

    male = val("is_male")
    return {"patient": {"age": val("age"), "sex": None if male is None else ("M" if male else "F"),
                        "patient_id": val("patient_id")},
            "labels": {k: val(k) for k in (*_LABELS, "normal_ecg") if k in row},
            "outcome": {k: val(k) for k in ("death", "timey") if k in row},
            "nn_predicted_age": val("nn_predicted_age"),
            "trace_file": val("trace_file")}


def _record(block, row, ids, path, csv_rows):
    sig, pad = _trim(block)
    exam = int(ids[row]) if ids is not None else None
    meta = {"format": "code15", "exam_id": exam, "row": int(row), "padding": pad}
    if not (block != 0).any():
        meta["all_zero"] = True
        meta["quality_flags"] = {"all_zero_exam": True}
    if csv_rows is not None:
        if exam in csv_rows:
            meta.update(_csv_meta(csv_rows[exam]))
        else:
            meta["csv_missing"] = True
    return Record(sig, FS, LEADS, meta=meta, source=path)


def exam_ids(path: "str | os.PathLike") -> np.ndarray:
    """The real exam ids of a part file (dummy row excluded), in row order."""
    path = os.fspath(path)
    with _open(path) as f:
        _, ids = _datasets(f, path)
    if ids is None:
        raise ReadError("HDF5 file has no 'exam_id' dataset", path)
    return ids[ids != 0]


def read_code15(path: "str | os.PathLike", exam_id: int | None = None, index: int | None = None,
                *, exams_csv: "str | os.PathLike | None" = None) -> Record:
    """Read one exam of a CODE-15% HDF5 part file.

    Parameters
    ----------
    path : path-like
        An ``exams_part*.hdf5`` file.
    exam_id : int, optional
        The exam to read (value of the ``exam_id`` dataset).
    index : int, optional
        Or its row number (negative counts from the end, dummy row included).
        When neither is given the file must hold exactly one real exam.
    exams_csv : path-like, optional
        The official ``exams.csv``; its row is joined into ``meta``.

    Returns
    -------
    Record
        12 leads × trimmed length at 400 Hz in mV; ``meta`` holds ``exam_id``,
        ``row``, ``padding`` = (left, right) removed zeros, and with
        ``exams_csv`` ``patient`` (age, sex, patient_id), ``labels``, ``outcome``.

    Raises
    ------
    ReadError
        No ``tracings`` dataset, wrong shape, unknown exam id, the dummy row,
        or several exams and no ``exam_id``/``index`` given.
    """
    path = os.fspath(path)
    if exam_id is not None and index is not None:
        raise ReadError("give exam_id or index, not both", path)
    csv_rows = _load_csv(exams_csv, path) if exams_csv is not None else None
    try:
        with _open(path) as f:
            tr, ids = _datasets(f, path)
            n = tr.shape[0]
            if exam_id is not None:
                if ids is None:
                    raise ReadError("HDF5 file has no 'exam_id' dataset; use index=", path)
                hits = np.flatnonzero(ids == int(exam_id))
                if hits.size == 0 or int(exam_id) == 0:
                    raise ReadError(f"exam_id {exam_id} is not in this file", path)
                row = int(hits[0])
            elif index is not None:
                try:
                    row = int(index)
                except (TypeError, ValueError):
                    raise ReadError(f"index must be an integer, got {index!r}", path) from None
                if not -n <= row < n:
                    raise ReadError(f"index {index} out of range for {n} rows", path)
                row %= n
            else:
                real = np.arange(n) if ids is None else np.flatnonzero(ids != 0)
                if real.size != 1:
                    shown = ", ".join(str(int(ids[r])) for r in real[:5]) if ids is not None else ""
                    first = f"::{int(ids[real[0]])}" if ids is not None and real.size else "::EXAM_ID"
                    raise ReadError(f"file holds {real.size} exams; address one as PATH{first} (also on "
                                    f"the command line), pass exam_id=... (e.g. {shown}) or index=..., or "
                                    "iterate with ecgcore.io.code15.iter_code15()", path)
                row = int(real[0])
            try:
                block = _as_f32(tr[row])
            except _H5_ERRORS as exc:
                raise ReadError(f"cannot read tracing row {row} ({exc})", path) from None
    except ReadError:
        raise
    except _H5_ERRORS as exc:
        raise ReadError(f"damaged HDF5 file ({type(exc).__name__}: {exc})", path) from None
    if _is_dummy(ids, row, block):
        raise ReadError(f"row {row} is the all-zero dummy row (exam_id 0) every part file ends "
                        "with, not an exam", path)
    return _record(block, row, ids, path, csv_rows)


def iter_code15(path: "str | os.PathLike", exam_ids: Iterable[int] | None = None, *,
                exams_csv: "str | os.PathLike | None" = None,
                chunk: int = 64) -> Iterator[Record]:
    """Yield the exams of a part file as Records, reading ``chunk`` rows at a time.

    Parameters
    ----------
    path : path-like
    exam_ids : iterable of int, optional
        Only these exams (yielded in file order). Unknown ids raise ReadError
        before anything is read.
    exams_csv : path-like, optional
        Join the official metadata (see :func:`read_code15`).
    chunk : int
        Rows per HDF5 read; 64 rows are 12.6 MB of float32.

    Yields
    ------
    Record
        One per real exam; the trailing dummy row is skipped.
    """
    path = os.fspath(path)
    chunk = max(1, int(chunk))
    csv_rows = _load_csv(exams_csv, path) if exams_csv is not None else None
    try:
        with _open(path) as f:
            tr, ids = _datasets(f, path)
            n = tr.shape[0]
            if exam_ids is not None:
                if ids is None:
                    raise ReadError("HDF5 file has no 'exam_id' dataset to select by", path)
                want = np.asarray(list(exam_ids), dtype=np.int64)
                pos = {int(e): i for i, e in enumerate(ids) if e != 0}
                missing = [int(e) for e in want if int(e) not in pos]
                if missing:
                    raise ReadError(f"exam_id(s) not in this file: {missing[:10]}", path)
                rows = np.unique([pos[int(e)] for e in want])
            else:
                rows = np.arange(n)
            for start in range(0, rows.size, chunk):
                sel = rows[start:start + chunk]
                try:
                    if sel.size and sel[-1] - sel[0] + 1 == sel.size:
                        blocks = _as_f32(tr[int(sel[0]):int(sel[-1]) + 1])
                    else:
                        blocks = _as_f32(tr[sel.tolist()])
                except _H5_ERRORS as exc:
                    raise ReadError(f"cannot read tracing rows {int(sel[0])}..{int(sel[-1])} ({exc})",
                                    path) from None
                for row, block in zip(sel, blocks):
                    if _is_dummy(ids, int(row), block):
                        continue
                    yield _record(block, int(row), ids, path, csv_rows)
    except ReadError:
        raise
    except _H5_ERRORS as exc:
        raise ReadError(f"damaged HDF5 file ({type(exc).__name__}: {exc})", path) from None


def read_code15_all(path: "str | os.PathLike", **kwargs) -> list[Record]:
    """All exams of a part file as a list (see :func:`iter_code15`; mind the memory)."""
    return list(iter_code15(path, **kwargs))


read = read_code15
