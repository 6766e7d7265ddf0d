"""WFDB (MIT-format) annotation files: read, write, and LUDB per-lead waves.

The MIT format is a stream of little-endian 16-bit words, each a 6-bit code
and a 10-bit field (WFDB "annot(5)" manual page). Codes 1 to 49 are
annotation types whose field is the sample increment; 59 (SKIP) carries a
32-bit increment in the next two words; 60 (NUM), 61 (SUB), 62 (CHN) and 63
(AUX) attach a number, subtype, channel or text to the preceding annotation.
The word parser is in Cython (:func:`ecgcore.io._wfdb.parse_annotations`);
this module maps codes to symbols and handles the definition annotations
exactly as ``wfdb.rdann`` does, so ``sample``, ``symbol``, ``subtype``,
``chan``, ``num`` and ``aux_note`` agree with it.
"""

from __future__ import annotations

import os

import numpy as np

from .._atomic import atomic_open
from ..errors import ReadError, WriteError
from ..record import normalize_lead

__all__ = ["Annotation", "read_annotations", "write_annotations", "read_ludb_annotations",
           "ANN_SYMBOLS", "LUDB_EXTENSIONS"]

#: WFDB annotation code -> symbol (ecgcodes.h). Codes 15, 17 and 42-49 are undefined.
ANN_SYMBOLS = {
    0: " ", 1: "N", 2: "L", 3: "R", 4: "a", 5: "V", 6: "F", 7: "J", 8: "A", 9: "S", 10: "E",
    11: "j", 12: "/", 13: "Q", 14: "~", 16: "|", 18: "s", 19: "T", 20: "*", 21: "D",
    22: '"', 23: "=", 24: "p", 25: "B", 26: "^", 27: "t", 28: "+", 29: "u", 30: "?", 31: "!",
    32: "[", 33: "]", 34: "e", 35: "n", 36: "@", 37: "x", 38: "f", 39: "(", 40: ")", 41: "r",
}
_SYMBOL_CODES = {v: k for k, v in ANN_SYMBOLS.items() if k}

_NOTE = 22
_SKIP, _NUM, _SUB, _CHN, _AUX = 59, 60, 61, 62, 63

#: LUDB per-lead annotation extensions, in STANDARD_12 order.
LUDB_EXTENSIONS = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")


class Annotation:
    """Annotations of one file.

    Attributes
    ----------
    sample : ndarray of int64
        Sample index of each annotation.
    symbol : ndarray of str
        Annotation symbols (``"N"``, ``"("``, ...); an undefined code reads as
        ``"[code]"``.
    code : ndarray of int64
        The stored annotation codes (wfdb's ``label_store``).
    subtype, chan, num : ndarray of int64
    aux_note : list of str
        Auxiliary text (``""`` when absent), decoded byte per character.
    fs : float or None
        From the file's ``## time resolution`` note, else the record header.
    extension, record_name : str
    """

    __slots__ = ("sample", "symbol", "code", "subtype", "chan", "num", "aux_note", "fs",
                 "extension", "record_name")

    def __init__(self, sample, symbol, code=None, subtype=None, chan=None, num=None,
                 aux_note=None, fs=None, extension="", record_name=""):
        self.sample = np.asarray(sample, dtype=np.int64)
        n = len(self.sample)
        self.symbol = np.asarray(symbol, dtype=str) if n else np.zeros(0, dtype="<U1")
        z = np.zeros(n, np.int64)
        self.code = z.copy() if code is None else np.asarray(code, np.int64)
        self.subtype = z.copy() if subtype is None else np.asarray(subtype, np.int64)
        self.chan = z.copy() if chan is None else np.asarray(chan, np.int64)
        self.num = z.copy() if num is None else np.asarray(num, np.int64)
        self.aux_note = [""] * n if aux_note is None else list(aux_note)
        self.fs = fs
        self.extension = extension
        self.record_name = record_name

    def __len__(self):
        return len(self.sample)

    def __repr__(self):
        return f"<Annotation {self.record_name}.{self.extension}: {len(self)} marks, fs={self.fs}>"

    def to_dict(self) -> dict:
        """``{"sample", "symbol", "subtype", "chan", "num", "aux_note"}`` (for ``Record.annotations``)."""
        return {"sample": self.sample, "symbol": self.symbol, "subtype": self.subtype,
                "chan": self.chan, "num": self.num, "aux_note": self.aux_note}


def _stem(record_path) -> str:
    p = os.fspath(record_path)
    return p[:-4] if p.endswith(".hea") else p


def _header_fs(stem: str):
    """The record line's sampling rate, or None (cheap: reads the first lines only)."""
    try:
        with open(stem + ".hea", "rb") as f:
            head = f.read(4096).decode("latin-1")
    except OSError:
        return None
    for ln in head.splitlines():
        s = ln.strip()
        if not s or s[0] == "#":
            continue
        t = s.split()
        if len(t) < 3:
            return None
        try:
            fs = float(t[2].partition("/")[0])
        except ValueError:
            return None
        return int(fs) if fs.is_integer() else fs
    return None


def decode_annotations(data: bytes, path: str = "", extension: str = "",
                       record_name: str = "") -> Annotation:
    """Decode MIT-format annotation bytes (see :func:`read_annotations`)."""
    from . import _wfdb

    if len(data) % 2:
        raise ReadError(f"annotation file has an odd byte count ({len(data)}): truncated", path)
    sample, code, sub, chan, num, aux_pairs, complete = _wfdb.parse_annotations(data)
    if not complete:
        raise ReadError("annotation file ends inside a SKIP or AUX field: truncated", path)
    n = len(sample)
    aux = [""] * n
    for i, b in aux_pairs:
        aux[i] = b.decode("latin-1")
    # definition notes at sample 0 (time resolution, custom labels) and code-0
    # words are not annotations; wfdb.rdann drops them too.
    definitional = (sample == 0) & (code == _NOTE)
    fs = None
    custom = {}
    if definitional.any():
        in_defs = False
        for i in np.flatnonzero(definitional):
            note = aux[i]
            if note.startswith("## time resolution:") and fs is None:
                try:
                    v = float(note.split(":", 1)[1].split()[0])
                    fs = int(v) if v.is_integer() else v
                except (ValueError, IndexError):
                    pass
            elif note == "## annotation type definitions":
                in_defs = True
            elif note == "## end of definitions":
                in_defs = False
            elif in_defs:
                t = note.split(None, 2)
                if len(t) >= 2 and t[0].isdigit():
                    custom[int(t[0])] = t[1]
    keep = ~(definitional | (code == 0))
    if not keep.all():
        sample, code, sub, chan, num = sample[keep], code[keep], sub[keep], chan[keep], num[keep]
        aux = [a for a, k in zip(aux, keep) if k]
    table = ANN_SYMBOLS if not custom else {**ANN_SYMBOLS, **custom}
    # map codes via a lookup array: no Python loop over annotations
    lut = np.array([table.get(c, f"[{c}]") for c in range(64)])
    symbol = lut[code] if len(code) else np.zeros(0, dtype="<U1")
    return Annotation(sample, symbol, code, sub, chan, num, aux, fs, extension, record_name)


def read_annotations(record_path: "str | os.PathLike", extension: str = "atr") -> Annotation:
    """Read an MIT-format annotation file, as ``wfdb.rdann`` does.

    Parameters
    ----------
    record_path : str or path-like
        The record path without suffix (or its ``.hea`` file).
    extension : str
        Annotator name, e.g. ``"atr"``, ``"q1c"``, ``"pu"``, or a LUDB lead
        (``"i"``, ``"v1"``, ...).

    Returns
    -------
    Annotation

    Raises
    ------
    ReadError
        Missing or truncated annotation file.
    """
    stem = _stem(record_path)
    path = f"{stem}.{extension}"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ReadError("no such annotation file", path) from None
    except OSError as exc:
        raise ReadError(f"cannot open annotation file: {exc.strerror or exc}", path) from None
    ann = decode_annotations(data, path, extension, os.path.basename(stem))
    if ann.fs is None:
        ann.fs = _header_fs(stem)
    return ann


def read_ludb_annotations(record_path: "str | os.PathLike",
                          extensions=LUDB_EXTENSIONS) -> dict:
    """Read LUDB's twelve per-lead delineation files into wave boundaries.

    Each LUDB lead file marks every wave as ``(`` onset, a peak symbol
    (``p`` P wave, ``N`` QRS, ``t`` T wave) and ``)`` offset.

    Parameters
    ----------
    record_path : str or path-like
        Record path without suffix.
    extensions : sequence of str
        Annotation extensions to read (default the twelve LUDB leads).

    Returns
    -------
    dict
        ``{lead: {"P"|"QRS"|"T": {"onset", "peak", "offset"}}}``, lead names
        canonical (``"aVR"``, ``"V1"``); each value an int64 array of sample
        indices with one entry per wave, -1 where the wave lacks that mark.
    """
    out = {}
    for ext in extensions:
        ann = read_annotations(record_path, ext)
        out[normalize_lead(ext)] = waves_from_annotation(ann)
    return out


_WAVES = (("P", "p"), ("QRS", "N"), ("T", "t"))


def waves_from_annotation(ann: Annotation) -> dict:
    """Group ``(``, peak, ``)`` triplets of an annotation into per-wave arrays.

    A peak whose neighbour is not ``(`` (before) or ``)`` (after) gets -1
    for that boundary.
    """
    sym = ann.symbol
    smp = ann.sample
    n = len(sym)
    res = {}
    for wave, peak_sym in _WAVES:
        k = np.flatnonzero(sym == peak_sym)
        before = k - 1
        after = k + 1
        has_on = before >= 0
        has_on[has_on] = sym[before[has_on]] == "("
        has_off = after < n
        has_off[has_off] = sym[after[has_off]] == ")"
        onset = np.full(len(k), -1, np.int64)
        offset = np.full(len(k), -1, np.int64)
        onset[has_on] = smp[before[has_on]]
        offset[has_off] = smp[after[has_off]]
        res[wave] = {"onset": onset, "peak": smp[k].astype(np.int64), "offset": offset}
    return res


def _encode(sample, codes, subtype, chan, num, aux, fs) -> bytes:
    words: list[int] = []
    put = words.append
    prev = 0
    cur_chan = 0
    cur_num = 0
    if fs is not None:
        note = f"## time resolution: {fs:g}".encode("latin-1")
        put((_NOTE << 10) | 0)
        put((_AUX << 10) | len(note))
        padded = note + b"\x00" * (len(note) % 2)
        words.extend(np.frombuffer(padded, "<u2").tolist())
    for i in range(len(sample)):
        diff = int(sample[i]) - prev
        prev = int(sample[i])
        if diff < 0 or diff > 1023:
            u = diff & 0xFFFFFFFF
            put(_SKIP << 10)
            put(u >> 16)
            put(u & 0xFFFF)
            diff = 0
        put((int(codes[i]) << 10) | diff)
        if subtype[i]:
            put((_SUB << 10) | (int(subtype[i]) & 0xFF))
        if chan[i] != cur_chan:
            cur_chan = int(chan[i])
            put((_CHN << 10) | (cur_chan & 0xFF))
        if num[i] != cur_num:
            cur_num = int(num[i])
            put((_NUM << 10) | (cur_num & 0xFF))
        if aux[i]:
            b = aux[i].encode("latin-1")
            if len(b) > 255:
                raise WriteError(f"aux note {i} longer than 255 bytes")
            put((_AUX << 10) | len(b))
            b += b"\x00" * (len(b) % 2)
            words.extend(np.frombuffer(b, "<u2").tolist())
    put(0)
    return np.asarray(words, dtype="<u2").tobytes()


def write_annotations(record_path: "str | os.PathLike", extension: str, sample, symbol,
                      subtype=None, chan=None, num=None, aux_note=None, fs=None) -> str:
    """Write an MIT-format annotation file that ``wfdb.rdann`` reads back identically.

    Parameters
    ----------
    record_path : str or path-like
        Record path without suffix; the file written is ``record_path.extension``.
    extension : str
        Annotator name, e.g. ``"atr"`` or ``"ecg"``.
    sample : array_like of int
        Sample indices (non-decreasing is conventional; any order is encoded).
    symbol : sequence of str
        Standard WFDB symbols (``N``, ``V``, ``(``, ``)``, ``p``, ``t``, ...).
    subtype, chan, num : array_like of int, optional
    aux_note : sequence of str, optional
    fs : float, optional
        Written as a ``## time resolution`` note, as ``wfdb.wrann(write_fs=True)`` does.

    Returns
    -------
    str
        The path written (atomically, via a temporary file and ``os.replace``).
    """
    stem = _stem(record_path)
    path = f"{stem}.{extension}"
    sample = np.asarray(sample, dtype=np.int64).reshape(-1)
    symbol = [str(s) for s in np.asarray(symbol, dtype=object).reshape(-1)]
    n = len(sample)
    if len(symbol) != n:
        raise WriteError(f"{n} samples but {len(symbol)} symbols", path)
    if n and sample.min() < 0:
        raise WriteError("annotation samples must be non-negative", path)
    try:
        codes = [_SYMBOL_CODES[s] for s in symbol]
    except KeyError as exc:
        raise WriteError(f"unknown annotation symbol {exc.args[0]!r}", path) from None
    z = np.zeros(n, np.int64)
    subtype = z if subtype is None else np.asarray(subtype, np.int64)
    chan = z if chan is None else np.asarray(chan, np.int64)
    num = z if num is None else np.asarray(num, np.int64)
    aux = [""] * n if aux_note is None else ["" if a is None else str(a) for a in aux_note]
    data = _encode(sample, codes, subtype, chan, num, aux, fs)
    try:
        with atomic_open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise WriteError(f"cannot write annotation file: {exc.strerror or exc}", path) from None
    return path
