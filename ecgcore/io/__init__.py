"""Readers and writers: files of every vendor format to :class:`~ecgcore.Record`.

``read(path)`` sniffs the format from the file's content (never its suffix)
and dispatches to one module per format. Each format module exposes
``read(path, **kwargs) -> Record``; byte-level decoding lives in Cython
(``_wfdb.pyx``, ``_xli.pyx``, ``_scp.pyx``) behind those small readers.
"""

from __future__ import annotations

import importlib
import os
from typing import Iterable, Iterator

from ..errors import ConfigError, ReadError
from ..record import Record
from .sniff import sniff, FORMATS

__all__ = ["read", "read_many", "sniff", "FORMATS", "ReadFailure", "write", "list_records",
           "CONTAINER_SEP"]

#: Separates a container file from the record inside it: ``exams_part0.hdf5::1594286``.
CONTAINER_SEP = "::"
# container format -> the reader keyword that selects one record
_CONTAINER_KEYS = {"code15": "exam_id"}

# format name -> module implementing ``read(path, **kw)``; imported lazily so
# that ``import ecgcore`` stays fast and optional dependencies stay optional.
_READERS = {
    "wfdb": "ecgcore.io.wfdb",
    "ge_muse": "ecgcore.io.muse",
    "cardiosoft": "ecgcore.io.cardiosoft",
    "code15": "ecgcore.io.code15",
    "npy": "ecgcore.io.arrays",
    "npz": "ecgcore.io.arrays",
    "csv": "ecgcore.io.arrays",
    "hl7_aecg": "ecgcore.io.hl7",
    "philips": "ecgcore.io.philips",
    "dicom": "ecgcore.io.dicom",
    "scp": "ecgcore.io.scp",
    "edf": "ecgcore.io.edf",
    "bdf": "ecgcore.io.edf",
    "pdf": "ecgcore.digitization",
    "image": "ecgcore.digitization",
}


_READER_FNS: dict = {}


def _reader_for(fmt: str, path):
    fn = _READER_FNS.get(fmt)
    if fn is not None:
        return fn
    modname = _READERS.get(fmt)
    if modname is None:
        raise ReadError(f"no reader for format {fmt!r}", path)
    try:
        mod = importlib.import_module(modname)
    except ImportError as exc:
        raise ReadError(f"format {fmt!r} recognised but its reader is unavailable ({exc})",
                        path) from None
    fn = getattr(mod, "read_" + fmt, None) or getattr(mod, "read", None)
    if fn is None:
        raise ReadError(f"format {fmt!r} recognised but its reader is unavailable", path)
    _READER_FNS[fmt] = fn
    return fn


def read(path: "str | os.PathLike", format: str | None = None, **kwargs) -> Record:
    """Read one ECG file into a :class:`~ecgcore.Record` in millivolts.

    Parameters
    ----------
    path : str or path-like
        The file. A WFDB record may be named by its ``.hea`` file or by its
        path without suffix.
    format : str, optional
        Skip sniffing and use this reader (one of :data:`FORMATS`).
    **kwargs
        Passed to the format's reader.

    Returns
    -------
    Record

    Raises
    ------
    ReadError
        For any file that cannot be read: missing, empty, unknown format,
        truncated, corrupt or hostile. The message names the file and the problem.
    """
    path = address = os.fspath(path)
    if format is None and path.endswith(".hea") and CONTAINER_SEP not in path:
        # the biobank case: sniffing would only stat the header to answer "wfdb"
        try:
            return _call_reader(_reader_for("wfdb", path), "wfdb", path, address, kwargs)
        except ReadError:
            pass  # take the general route below, which raises exactly its own error
    if CONTAINER_SEP in path and not os.path.exists(path):
        base, key = path.rsplit(CONTAINER_SEP, 1)
        fmt = format or sniff(base)
        kw = _CONTAINER_KEYS.get(fmt)
        if kw is None:
            raise ReadError(f"{fmt} files hold one record; '{CONTAINER_SEP}{key}' selects nothing",
                            base)
        try:
            kwargs[kw] = int(key)
        except ValueError:
            raise ReadError(f"record key {key!r} is not an integer {kw}", base) from None
        path = base
    else:
        fmt = format or sniff(path)
    return _call_reader(_reader_for(fmt, path), fmt, path, address, kwargs)


def _call_reader(fn, fmt: str, path: str, address: str, kwargs: dict):
    try:
        rec = fn(path, **kwargs)
    except ReadError:
        raise
    except (MemoryError, RecursionError) as exc:
        raise ReadError(f"{fmt} file too large or too deeply nested to read ({type(exc).__name__})",
                        path) from None
    except Exception as exc:  # a reader bug must still surface as a named ReadError
        raise ReadError(f"could not read {fmt} file: {type(exc).__name__}: {exc}", path) from exc
    if isinstance(rec, Record):
        rec.meta.setdefault("format", fmt)
        if address != path:
            rec.source = address
    return rec


def list_records(path: "str | os.PathLike") -> list[str]:
    """The record addresses in a file: ``[path]``, or one ``path::key`` per record of a container.

    A CODE-15% HDF5 part file holds about 20,000 exams; each becomes
    ``path::exam_id`` (the all-zero dummy row excluded), which :func:`read`
    accepts. Other files hold one record and are returned unchanged.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
    except OSError:
        return [path]
    if magic != b"\x89HDF\r\n\x1a\n":
        return [path]
    from .code15 import exam_ids
    ids = exam_ids(path)
    if len(ids) == 1:
        return [path]
    return [f"{path}{CONTAINER_SEP}{int(i)}" for i in ids]


class ReadFailure:
    """Stands in for a record that could not be read (yielded by :func:`read_many`).

    Attributes
    ----------
    path : str
    error : Exception
    """

    __slots__ = ("path", "error")

    def __init__(self, path: str, error: Exception):
        self.path = path
        self.error = error

    def __bool__(self) -> bool:
        return False

    def to_dict(self) -> dict:
        return {"path": self.path, "error": type(self.error).__name__,
                "message": getattr(self.error, "reason", str(self.error))}

    def __repr__(self) -> str:
        return f"<ReadFailure {self.path!r}: {self.error}>"


def read_many(paths: Iterable["str | os.PathLike"], progress: bool = True,
              **kwargs) -> Iterator["Record | ReadFailure"]:
    """Read many files, yielding a Record or a :class:`ReadFailure` per path.

    A bad file never stops the iteration: its error is yielded as a value
    (falsy), so ``[r for r in read_many(p) if r]`` keeps the good records.

    Parameters
    ----------
    paths : iterable of path-like
    progress : bool
        Show a tqdm progress bar.
    **kwargs
        Passed to :func:`read`.
    """
    paths = list(paths)
    it = paths
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(paths, desc="reading", unit="rec")
    for p in it:
        try:
            yield read(p, **kwargs)
        except ReadError as exc:
            yield ReadFailure(os.fspath(p), exc)


def write(record: Record, path: "str | os.PathLike", format: str = "wfdb", **kwargs):
    """Write a record: ``format="wfdb"`` (format 16 or 212) or ``"npy"``."""
    if format == "wfdb":
        from .wfdb import write_wfdb
        return write_wfdb(record, path, **kwargs)
    if format == "npy":
        from .arrays import write_npy
        return write_npy(record, path, **kwargs)
    raise ConfigError(f"unknown output format {format!r}; use 'wfdb' or 'npy'")
