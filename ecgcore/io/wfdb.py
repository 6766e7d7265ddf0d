"""WFDB (PhysioNet) records: read ``.hea`` + signal files, write format 16 / 212.

The header grammar follows the WFDB "header(5)" manual page::

    record line:  name[/nseg] nsig [fs[/counterfreq[(base)]] [nsamp [HH:MM:SS [DD/MM/YYYY]]]]
    signal line:  file fmt[xspf][:skew][+offset] [gain[(baseline)][/units] [adcres [adczero
                  [initval [checksum [blocksize [description]]]]]]]
    segment line: segname seglen          (multi-segment records)

A missing or zero gain means 200 units per mV; a missing baseline equals
adczero. Physical value = (digital - baseline) / gain, in the header's units,
which ecgcore converts to millivolts. The most negative value of a format
(-32768 for 16, -2048 for 212, ...) marks an invalid sample and reads as NaN,
as in the ``wfdb`` package.

Header parsing is plain ``str.split``/``partition`` (no regular expression
per field) and the samples are decoded by one Cython pass per signal file
(:mod:`ecgcore.io._wfdb`) straight into the float32 output, because at
biobank scale the per-record Python overhead dominates the cost. Records
that share a header layout share a cached decoding plan; their plain-ASCII
headers are tokenised in C (``_wfdb.scan_header``), anything else by the
Python parser, with identical results.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .._atomic import atomic_open
from ..errors import ConfigError, ReadError, WriteError
from ..record import Record, normalize_leads
from . import _wfdb

__all__ = ["read", "read_wfdb", "read_header", "write_wfdb", "Header", "SignalSpec"]

_DEFGAIN = 200.0
_DEFFS = 250.0

# invalid-sample code of each format (wfdb INVALID_SAMPLE_VALUE); format 8 has none
_INVALID = {80: -128, 508: -128, 310: -512, 311: -512, 212: -2048, 16: -32768, 61: -32768,
            160: -32768, 516: -32768, 24: -(2 ** 23), 524: -(2 ** 23), 32: -(2 ** 31)}
_FLAC = (508, 516, 524)
# records made only of null signals or null segments hold no data to bound
# their size, so cap them (samples x signals)
_MAX_NULL = 200_000_000
_BINARY = (8, 16, 24, 32, 61, 80, 160, 212, 310, 311)
# bytes per sample of the byte-aligned formats
_BPS = {8: 1, 80: 1, 16: 2, 61: 2, 160: 2, 24: 3, 32: 4}

# units -> factor to millivolts (keys compared case-sensitively first, then lower-cased)
_TO_MV = {"mV": 1.0, "uV": 1e-3, "\u00b5V": 1e-3, "\u03bcV": 1e-3, "nV": 1e-6, "V": 1e3,
          "mv": 1.0, "uv": 1e-3, "microvolt": 1e-3, "millivolt": 1.0, "v": 1e3, "nv": 1e-6}


def _bytes_needed(fmt: int, n: int) -> int:
    """Bytes holding ``n`` flat samples of a format (what the decoder touches)."""
    if fmt == 212:
        return (3 * n + 1) // 2
    if fmt in (310, 311):
        q, r = divmod(n, 3)
        if r == 0:
            return 4 * q
        if r == 1:
            return 4 * q + 2
        return 4 * q + (4 if fmt == 310 else 3)
    return n * _BPS[fmt]


def _frames_in(fmt: int, nbytes: int, tspf: int) -> int:
    """Whole frames that fit in ``nbytes`` (used when the header omits the length)."""
    if fmt == 212:
        n = (2 * nbytes) // 3
    elif fmt in (310, 311):
        n = (3 * nbytes) // 4
    else:
        n = nbytes // _BPS[fmt]
    return n // tspf if tspf else 0


class SignalSpec:
    """One signal line of a header."""

    __slots__ = ("file", "fmt", "spf", "skew", "offset", "gain", "baseline", "units",
                 "adc_res", "adc_zero", "init", "checksum", "block_size", "name")

    def __repr__(self):
        return (f"<SignalSpec {self.name!r} file={self.file!r} fmt={self.fmt} gain={self.gain} "
                f"baseline={self.baseline} units={self.units!r}>")


class Header:
    """A parsed WFDB header.

    Attributes
    ----------
    name : str
    n_sig : int
    fs : float
    sig_len : int or None
        Samples per signal; None when the header omits it.
    base_time, base_date : str or None
    signals : list of SignalSpec
    segments : list of (name, length), or None for single-segment records
    comments : list of str
        Comment lines without the ``#``.
    """

    __slots__ = ("name", "n_sig", "fs", "counter_freq", "sig_len", "base_time", "base_date",
                 "signals", "segments", "comments", "path")


def _bad(path, msg):
    return ReadError(f"bad WFDB header: {msg}", path)


def _int(tok, what, path):
    try:
        return int(tok)
    except ValueError:
        raise _bad(path, f"{what} {tok!r} is not an integer") from None


def _float(tok, what, path):
    try:
        v = float(tok)
    except ValueError:
        raise _bad(path, f"{what} {tok!r} is not a number") from None
    if not math.isfinite(v):
        raise _bad(path, f"{what} {tok!r} is not finite")
    return v


_SPEC_CACHE: dict = {}
_GAIN_CACHE: dict = {}


def _remember(cache: dict, key, value):
    if len(cache) > 4096:  # bounded: hostile inputs cannot grow it forever
        cache.clear()
    cache[key] = value
    return value


def _parse_fmt_spec(tok: str, i: int, path):
    """``fmt[xspf][:skew][+offset]`` -> (fmt, offset, skew, spf)."""
    spec, _, off = tok.partition("+")
    spec, _, skew = spec.partition(":")
    spec, _, spf = spec.partition("x")
    fmt = _int(spec, "signal format", path)
    if fmt not in _BINARY and fmt not in _FLAC and fmt != 0:
        raise ReadError(f"unsupported WFDB signal format {fmt} (signal {i + 1})", path)
    offset = _int(off, "byte offset", path) if off else 0
    skew = _int(skew, "skew", path) if skew else 0
    spf = _int(spf, "samples per frame", path) if spf else 1
    if offset < 0 or skew < 0 or not 1 <= spf <= 1_000_000:
        raise _bad(path, f"signal {i + 1}: bad offset/skew/samples-per-frame in {tok!r}")
    return _remember(_SPEC_CACHE, tok, (fmt, offset, skew, spf))


def _parse_gain_spec(tok: str, i: int, path):
    """``gain[(baseline)][/units]`` -> (gain, baseline or None, units); gain 0 means 200."""
    g, _, units = tok.partition("/")
    g, paren, base = g.partition("(")
    baseline = None
    if paren:
        if not base.endswith(")"):
            raise _bad(path, f"signal {i + 1}: unclosed baseline in {tok!r}")
        baseline = _int(base[:-1], "baseline", path)
    gain = _float(g, "gain", path) if g else 0.0
    return _remember(_GAIN_CACHE, tok, (gain if gain != 0.0 else _DEFGAIN, baseline, units or "mV"))


def parse_header(text: str, path: str = "") -> Header:
    """Parse the text of a ``.hea`` file.

    Raises
    ------
    ReadError
        On any syntax error, naming ``path`` and the offending field.
    """
    comments = []
    lines = []
    for raw in text.splitlines():
        s = raw.strip()
        if not s:
            continue
        if s[0] == "#":
            comments.append(s[1:].strip())
            continue
        lines.append(s)
    if not lines:
        raise _bad(path, "no record line (empty or comments only)")
    h = Header()
    h.path = path
    h.comments = comments
    tok = lines[0].split()
    name, _, nseg = tok[0].partition("/")
    h.name = name
    if len(tok) < 2:
        raise _bad(path, "record line has no signal count")
    h.n_sig = _int(tok[1], "signal count", path)
    if h.n_sig < 0 or h.n_sig > 100000:
        raise _bad(path, f"implausible signal count {h.n_sig}")
    h.fs, h.counter_freq = _DEFFS, None
    if len(tok) > 2:
        fs_tok, _, cf = tok[2].partition("/")
        h.fs = _float(fs_tok, "sampling frequency", path)
        if h.fs <= 0:
            raise _bad(path, f"sampling frequency {fs_tok!r} is not positive")
        if cf:
            cf = cf.partition("(")[0]
            try:
                h.counter_freq = float(cf)
            except ValueError:
                h.counter_freq = None
    h.sig_len = None
    if len(tok) > 3:
        h.sig_len = _int(tok[3], "sample count", path)
        if h.sig_len < 0:
            raise _bad(path, f"negative sample count {h.sig_len}")
    h.base_time = tok[4] if len(tok) > 4 else None
    h.base_date = tok[5] if len(tok) > 5 else None
    h.segments = None
    body = lines[1:]
    if nseg:
        n = _int(nseg, "segment count", path)
        if n <= 0 or len(body) < n:
            raise _bad(path, f"{n} segments declared, {len(body)} segment lines found")
        segs = []
        for ln in body[:n]:
            t = ln.split()
            if len(t) < 2:
                raise _bad(path, f"segment line {ln!r} has no length")
            seglen = _int(t[1], "segment length", path)
            if seglen < 0:
                raise _bad(path, f"negative segment length in {ln!r}")
            segs.append((t[0], seglen))
        h.segments = segs
        h.signals = []
        return h
    if len(body) < h.n_sig:
        raise _bad(path, f"{h.n_sig} signals declared, {len(body)} signal lines found")
    sigs = []
    for i in range(h.n_sig):
        t = body[i].split(None, 8)
        if len(t) < 2:
            raise _bad(path, f"signal line {i + 1} has no format field")
        s = SignalSpec()
        s.file = t[0]
        # the format and gain fields repeat across signals and records: parse each spelling once
        spec = _SPEC_CACHE.get(t[1])
        if spec is None:
            spec = _parse_fmt_spec(t[1], i, path)
        s.fmt, s.offset, s.skew, s.spf = spec
        n = len(t)
        try:
            s.adc_res = int(t[3]) if n > 3 else 0
            s.adc_zero = int(t[4]) if n > 4 else 0
            s.init = int(t[5]) if n > 5 else s.adc_zero
            s.checksum = int(t[6]) if n > 6 else None
            s.block_size = int(t[7]) if n > 7 else 0
        except ValueError:
            raise _bad(path, f"signal {i + 1}: non-integer ADC resolution, zero, initial value, "
                             f"checksum or block size in {body[i]!r}") from None
        s.name = t[8].strip() if n > 8 else f"sig{i}"
        if n > 2:
            g = _GAIN_CACHE.get(t[2])
            if g is None:
                g = _parse_gain_spec(t[2], i, path)
            s.gain, base, s.units = g
            s.baseline = s.adc_zero if base is None else base
        else:
            s.gain, s.baseline, s.units = _DEFGAIN, s.adc_zero, "mV"
        sigs.append(s)
    h.signals = sigs
    return h


_HEADER_MAX = 1 << 20
_O_RDONLY = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _read_text(path: str) -> str:
    return _decode_text(_read_raw(path))


def _decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _read_raw(path: str) -> bytes:
    """The bytes of a header file, checked to be plausibly a header (not empty, < 1 MiB, no NUL)."""
    # os.open/os.read: one open and (for any real header) one read syscall,
    # without the buffered file object or a 1 MiB read buffer per call
    try:
        fd = os.open(path, _O_RDONLY)
    except FileNotFoundError:
        raise ReadError("no such WFDB header", path) from None
    except IsADirectoryError:
        raise ReadError("is a directory, not a WFDB header", path) from None
    except OSError as exc:
        raise ReadError(f"cannot open header: {exc.strerror or exc}", path) from None
    try:
        raw = os.read(fd, 65536)
        if len(raw) == 65536:
            parts = [raw]
            total = len(raw)
            while total < _HEADER_MAX:
                more = os.read(fd, _HEADER_MAX - total)
                if not more:
                    break
                parts.append(more)
                total += len(more)
            raw = b"".join(parts)
    except IsADirectoryError:
        raise ReadError("is a directory, not a WFDB header", path) from None
    except OSError as exc:
        raise ReadError(f"cannot open header: {exc.strerror or exc}", path) from None
    finally:
        os.close(fd)
    if not raw:
        raise ReadError("empty WFDB header", path)
    if len(raw) >= _HEADER_MAX:
        raise ReadError("WFDB header larger than 1 MiB: not a header", path)
    if b"\x00" in raw:
        raise ReadError("WFDB header contains NUL bytes: binary, not a header", path)
    return raw


def _read_bytes(fpath: str, fname: str, hea: str, offset: int, need: int, what: str = "") -> bytes:
    """``need`` bytes of a signal file from ``offset`` (one open, one pread)."""
    try:
        fd = os.open(fpath, _O_RDONLY)
    except FileNotFoundError:
        raise ReadError(f"signal file {fname!r} named in {os.path.basename(hea)} is missing",
                        fpath) from None
    except IsADirectoryError:
        raise ReadError(f"signal file {fname!r} is a directory", fpath) from None
    except OSError as exc:
        raise ReadError(f"cannot read signal file: {exc.strerror or exc}", fpath) from None
    try:
        buf = os.pread(fd, need, offset)
        while len(buf) < need:  # a short read is legal; stop only at end of file
            more = os.pread(fd, need - len(buf), offset + len(buf))
            if not more:
                break
            buf += more
    except IsADirectoryError:
        raise ReadError(f"signal file {fname!r} is a directory", fpath) from None
    except OSError as exc:
        raise ReadError(f"cannot read signal file: {exc.strerror or exc}", fpath) from None
    finally:
        os.close(fd)
    if len(buf) < need:
        raise ReadError(f"signal file truncated: {len(buf)} bytes after offset {offset}, "
                        f"the header {os.path.basename(hea)} needs {need}{what}", fpath)
    return buf


def _hea_path(path: str) -> str:
    path = os.fspath(path)
    if path.endswith(".hea"):
        return path
    if os.path.isfile(path + ".hea"):
        return path + ".hea"
    root, ext = os.path.splitext(path)
    if ext in (".dat", ".mat") and os.path.isfile(root + ".hea"):
        return root + ".hea"
    return path + ".hea"


def read_header(path: "str | os.PathLike") -> Header:
    """Parse the ``.hea`` file of a record named by header path or stem."""
    hea = _hea_path(os.fspath(path))
    return parse_header(_read_text(hea), hea)


# -- signal decoding -----------------------------------------------------------

def _unit_factor(units: str) -> float:
    f = _TO_MV.get(units)
    if f is None:
        f = _TO_MV.get(units.lower(), 1.0)
    return f


def _read_flac(fpath, fmt, n_sig, spf, offset, n_frames, hea):
    try:
        import soundfile
    except ImportError:  # pragma: no cover - soundfile is a dependency
        raise ReadError("FLAC signal files need the 'soundfile' package", fpath) from None
    try:
        with open(fpath, "rb") as fp:
            if fp.read(4) != b"fLaC":
                raise ReadError(f"format {fmt} signal file is not FLAC", fpath)
            fp.seek(0)
            with soundfile.SoundFile(fp) as sf:
                bits = {"PCM_S8": 8, "PCM_16": 16, "PCM_24": 24}.get(sf.subtype)
                if bits is None:
                    raise ReadError(f"unsupported FLAC sample type {sf.subtype}", fpath)
                if bits > fmt - 500:
                    raise ReadError(f"{bits}-bit FLAC in a format {fmt} signal", fpath)
                if sf.channels != n_sig:
                    raise ReadError(f"FLAC has {sf.channels} channels, header lists {n_sig}", fpath)
                want = n_frames * spf
                if sf.frames - offset < want:
                    raise ReadError(f"FLAC signal file holds {max(0, sf.frames - offset)} samples per "
                                    f"channel, the header {os.path.basename(hea)} needs {want}", fpath)
                if offset:
                    sf.seek(offset)
                data = sf.read(want, dtype="int32" if bits == 24 else "int16", always_2d=True)
    except ReadError:
        raise
    except (RuntimeError, OSError, ValueError) as exc:  # libsndfile errors on corrupt data
        raise ReadError(f"corrupt FLAC signal file: {exc}", fpath) from None
    if data.shape[0] < want:
        raise ReadError(f"FLAC signal file holds {data.shape[0]} samples per channel, the header "
                        f"{hea} needs {want}", fpath)
    d = data.astype(np.int32)
    if bits in (8, 24):
        # soundfile left-aligns 8- and 24-bit samples in the wider integer
        d >>= 8
    return np.ascontiguousarray(d.reshape(-1)).astype("<i4").view(np.uint8)


_LAYOUT_CACHE: dict = {}
_SPF_CACHE: dict = {}


def _spf_array(spf: tuple) -> np.ndarray:
    a = _SPF_CACHE.get(spf)
    if a is None:
        a = _remember(_SPF_CACHE, spf, np.asarray(spf, np.int32))
    return a


def _decode_signals(h: Header, hea: str, n_samples: int):
    """Decode every signal file of a single-segment header into (n_sig, n) float32 mV."""
    sigs = h.signals
    # group signals by file, in order of first appearance
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(sigs):
        groups.setdefault(s.file, []).append(i)
    d = os.path.dirname(hea)
    n_frames = h.sig_len if h.sig_len is not None else n_samples
    jobs = []
    null_rows = []
    # first read and validate every file, so that a header claiming more
    # samples than the files hold fails before the output is allocated
    for fname, idx in groups.items():
        first = sigs[idx[0]]
        fmt = first.fmt
        if fname == "~" or fmt == 0:
            null_rows.extend(idx)
            continue
        for j in idx:
            if sigs[j].fmt != fmt:
                raise _bad(hea, f"signal file {fname!r} is listed with formats {fmt} and {sigs[j].fmt}")
        spf = _spf_array(tuple(sigs[j].spf for j in idx))
        tspf = int(spf.sum())
        fpath = os.path.join(d, fname)
        if fmt in _FLAC:
            if np.any(spf != spf[0]):
                raise ReadError("FLAC signals of one file must share samples per frame", fpath)
            buf = _read_flac(fpath, fmt, len(idx), int(spf[0]), first.offset, n_frames, hea)
            dec_fmt = 32
        else:
            need = _bytes_needed(fmt, n_frames * tspf)
            buf = _read_bytes(fpath, fname, hea, first.offset, need,
                              f" for {n_frames} frames of {tspf} format-{fmt} samples")
            dec_fmt = fmt
            if fmt == 8:
                init = np.fromiter((sigs[j].init for j in idx), np.int_, len(idx))
                buf = _wfdb.first_differences(buf, n_frames, spf, init).view(np.uint8)
                dec_fmt = 32
        jobs.append((idx, fmt, dec_fmt, buf, spf, tspf))
    if null_rows and not jobs and n_samples * len(sigs) > _MAX_NULL:
        raise ReadError(f"{n_samples} samples of null signals only: implausibly large", hea)
    out = np.empty((len(sigs), n_samples), dtype=np.float32)
    if null_rows:
        out[null_rows] = np.nan
    for idx, fmt, dec_fmt, buf, spf, tspf in jobs:
        col, skew, baseline, scale, rows, gain = _layout(sigs, idx, spf, dec_fmt)
        inv = _INVALID.get(fmt)
        _wfdb.decode_into(buf, dec_fmt, n_frames, tspf, col, spf, skew, baseline, scale, rows,
                          inv if inv is not None else 0, inv is not None, out, gain)
    return out


# formats whose digital values fit in 16 bits (the decoder may scale them in float32 exactly)
_NARROW = (16, 212, 310, 311, 61, 160, 80)


def _layout(sigs, idx, spf, dec_fmt):
    """Decoder arrays of the signals ``idx`` of one file, cached per layout.

    Returns ``(col, skew, baseline, scale, rows, gain)``; ``gain`` is None
    unless the exact float32 route of :func:`ecgcore.io._wfdb.decode_into`
    applies: millivolt units, gains that float32 holds exactly, baselines
    below 2**23 and 16-bit samples, so that ``float32(d - baseline) /
    float32(gain)`` is exact up to one correctly rounded division.
    """
    key = (dec_fmt, tuple(idx), tuple((sigs[j].spf, sigs[j].skew, sigs[j].baseline,
                                       sigs[j].gain, sigs[j].units) for j in idx))
    lay = _LAYOUT_CACHE.get(key)
    if lay is not None:
        return lay
    i32 = np.int32
    n = len(idx)
    col = np.zeros(n, i32)
    if n > 1:
        np.cumsum(spf[:-1], out=col[1:])
    skew = np.fromiter((sigs[j].skew for j in idx), i32, n)
    baseline = np.fromiter((sigs[j].baseline for j in idx), np.float64, n)
    factor = [_unit_factor(sigs[j].units) for j in idx]
    gains = np.fromiter((sigs[j].gain for j in idx), np.float64, n)
    scale = np.asarray(factor, np.float64) / gains
    rows = np.asarray(idx, i32)
    with np.errstate(over="ignore"):
        f32_gains = gains.astype(np.float32).astype(np.float64)
    exact = (dec_fmt in _NARROW and all(f == 1.0 for f in factor)
             and bool(np.all(f32_gains == gains))
             and bool(np.all(np.abs(baseline) < 2.0 ** 23)))
    lay = (col, skew, baseline, scale, rows, gains if exact else None)
    return _remember(_LAYOUT_CACHE, key, lay)


def _infer_length(h: Header, hea: str) -> int:
    """Frames in the first signal file, for headers that omit the sample count."""
    s = h.signals[0]
    tspf = sum(t.spf for t in h.signals if t.file == s.file)
    fpath = os.path.join(os.path.dirname(hea), s.file)
    if s.file == "~" or s.fmt == 0:
        raise _bad(hea, "no sample count and no signal file to infer it from")
    if s.fmt in _FLAC:
        try:
            import soundfile
            return max(0, soundfile.info(fpath).frames - s.offset) // s.spf
        except Exception as exc:
            raise ReadError(f"cannot size FLAC signal file: {exc}", fpath) from None
    try:
        size = os.path.getsize(fpath)
    except OSError:
        raise ReadError(f"signal file {s.file!r} named in {os.path.basename(hea)} is missing",
                        fpath) from None
    return _frames_in(s.fmt, max(0, size - s.offset), tspf)


_SEX = {"m": "M", "male": "M", "f": "F", "female": "F", "w": "F"}


def _comment_meta(comments, meta):
    """Age, sex and ``key: value`` fields from header comments (``#Age:``, ``#<age>:``, MIT-BIH)."""
    fields = {}
    for c in comments:
        key, colon, val = c.partition(":")
        if colon and key and len(key) < 64:
            k = key.strip().strip("<>").strip().lower()
            if k and k not in fields:
                fields[k] = val.strip()
    meta["fields"] = fields
    age = fields.get("age")
    sex = fields.get("sex", fields.get("gender"))
    if age is None:
        # MIT-BIH style comment: "69 M 1085 1629 x1" (age, sex, ...)
        for c in comments:
            t = c.split(None, 2)
            if len(t) >= 2 and t[0].isdigit() and t[1].lower() in _SEX:
                age, sex = t[0], t[1]
                break
    if age is not None:
        try:
            a = float(age)
            meta["age"] = int(a) if a.is_integer() else a
        except ValueError:
            meta["age"] = None
    if sex is not None:
        meta["sex"] = _SEX.get(sex.strip().lower(), sex.strip() or None)
    dx = fields.get("dx")
    if dx is not None:
        meta["dx"] = dx
        meta["dx_codes"] = [x.strip() for x in dx.split(",") if x.strip()]


def _read_single(h: Header, hea: str):
    n = h.sig_len
    if n is None:
        n = _infer_length(h, hea) if h.signals else 0
        h.sig_len = n
    return _decode_signals(h, hea, n)


def _read_multi(h: Header, hea: str):
    """Concatenate the segments of a multi-segment record (fixed or variable layout)."""
    d = os.path.dirname(hea)
    segs = h.segments
    layout = None
    start = 0
    if segs and segs[0][1] == 0 and segs[0][0] != "~":
        layout = read_header(os.path.join(d, segs[0][0]))
        start = 1
    parts = []
    names = list(layout and [s.name for s in layout.signals] or [])
    units_meta = list(layout and [s.units for s in layout.signals] or [])
    for seg_name, seg_len in segs[start:]:
        if seg_name == "~":
            parts.append((None, seg_len, None))
            continue
        sh = read_header(os.path.join(d, seg_name))
        if sh.segments is not None:
            raise ReadError(f"segment {seg_name!r} is itself multi-segment", hea)
        if sh.sig_len is None:
            sh.sig_len = seg_len
        if sh.sig_len != seg_len:
            raise ReadError(f"segment {seg_name!r} has {sh.sig_len} samples, the master header "
                            f"says {seg_len}", hea)
        sig = _read_single(sh, sh.path)
        seg_names = [s.name for s in sh.signals]
        if layout is None and not names:
            names = seg_names
            units_meta = [s.units for s in sh.signals]
        parts.append((sig, seg_len, seg_names))
    total = sum(p[1] for p in parts)
    if total * max(1, len(names)) > _MAX_NULL and sum(p[1] for p in parts if p[0] is not None) < total // 2:
        raise ReadError(f"multi-segment record of {total} samples is mostly null: implausibly large", hea)
    out = np.full((len(names), total), np.nan, np.float32)
    pos = 0
    for sig, seg_len, seg_names in parts:
        if sig is not None:
            if layout is None:
                if seg_names != names:
                    raise ReadError("fixed-layout segments list different signals "
                                    f"({seg_names} vs {names})", hea)
                out[:, pos:pos + seg_len] = sig
            else:
                for k, nm in enumerate(seg_names):
                    if nm in names:
                        out[names.index(nm), pos:pos + seg_len] = sig[k]
        pos += seg_len
    if h.sig_len is not None and h.sig_len != total:
        raise ReadError(f"segments hold {total} samples, the record line says {h.sig_len}", hea)
    return out, names, units_meta


class _Plan:
    """What every record with one header layout shares, ready to decode.

    Biobank records repeat one layout: the headers differ only in the record
    and file names, the sample count, the initial values, the checksums,
    the base time/date and the comments. The plan holds the rest, derived
    once by the full :func:`parse_header` from the first header of the layout.
    """

    __slots__ = ("fs", "fmt", "offset", "tspf", "n_bytes", "dec", "inv", "check", "names",
                 "units", "gains", "baselines", "formats", "adc_zero", "leads")


_PLANS: dict = {}
_NO_PLAN = object()
# plans are for ECG-sized layouts; a header of thousands of signals takes the
# general route, so that the bounded cache also stays small in bytes
_PLAN_MAX_SIGNALS = 256


def _split_header(text: str):
    """(comments, non-comment lines), exactly as :func:`parse_header` splits them."""
    comments = []
    lines = []
    for raw in text.splitlines():
        s = raw.strip()
        if not s:
            continue
        if s[0] == "#":
            comments.append(s[1:].strip())
        else:
            lines.append(s)
    return comments, lines


def _make_plan(h: Header, hea: str):
    """A plan for a single-file, one-sample-per-frame, unskewed binary layout, else None."""
    sigs = h.signals
    if not sigs or h.segments is not None:
        return None
    first = sigs[0]
    fmt = first.fmt
    if (first.file == "~" or fmt not in _BINARY or fmt == 8
            or any(s.file != first.file or s.fmt != fmt or s.spf != 1 or s.skew != 0
                   or s.offset != first.offset for s in sigs)):
        return None
    idx = list(range(len(sigs)))
    spf = _spf_array((1,) * len(sigs))
    p = _Plan()
    p.fs = h.fs
    p.fmt = fmt
    p.offset = first.offset
    p.tspf = len(sigs)
    p.dec = (spf,) + _layout(sigs, idx, spf, fmt)
    inv = _INVALID.get(fmt)
    p.inv = inv if inv is not None else 0
    p.check = inv is not None
    p.names = tuple(s.name for s in sigs)
    p.leads = normalize_leads(p.names)  # what Record() would make of the names, once per layout
    p.units = tuple(s.units for s in sigs)
    p.gains = tuple(s.gain for s in sigs)
    p.baselines = tuple(s.baseline for s in sigs)
    p.formats = tuple(s.fmt for s in sigs)
    p.adc_zero = tuple(s.adc_zero for s in sigs)
    return p


def _plan_of(text: str, hea: str):
    """``(plan, record-line tokens, file name, sample count, comments)`` of a header
    that has a cached decoding plan, else None.

    The header is split into tokens; the tokens the plan depends on form the
    cache key, and the per-record ones (names, sample count, initial values,
    checksums) are checked here as :func:`parse_header` checks them. Anything
    unusual (several files, a missing field, a malformed per-record value)
    returns None and the caller takes the general route, which raises the
    precise error.
    """
    comments, lines = _split_header(text)
    if not lines:
        return None
    rl = lines[0].split()
    if len(rl) < 4 or "/" in rl[0]:
        return None
    try:
        n_sig = int(rl[1])
        n = int(rl[3])
    except ValueError:
        return None
    if n <= 0 or not 0 < n_sig < len(lines) or n_sig > _PLAN_MAX_SIGNALS:
        return None
    body = lines[1:n_sig + 1]
    toks = [ln.split(None, 8) for ln in body]
    fname = toks[0][0]
    key = [rl[1], rl[2]]
    try:
        for t in toks:
            if len(t) < 7 or t[0] != fname:
                return None
            int(t[5])  # initial value and checksum: per record, not part of the plan
            int(t[6])
            key += t[1:5]
            key += t[7:]
            key.append(len(t))  # separates the lines (block size, description optional)
    except ValueError:
        return None
    key = tuple(key)
    plan = _PLANS.get(key)
    if plan is None:
        h = parse_header(text, hea)
        plan = _remember(_PLANS, key, _make_plan(h, hea) or _NO_PLAN)
    if plan is _NO_PLAN:
        return None
    return plan, rl, fname, n, comments


def _read_planned(text: str, hea: str):
    """Read a record through its layout's cached plan (:func:`_plan_of`); None when it has none."""
    got = _plan_of(text, hea)
    if got is None:
        return None
    plan, rl, fname, n, comments = got
    return _decode_planned(plan, hea, fname, n, rl[0], comments,
                           rl[4] if len(rl) > 4 else None, rl[5] if len(rl) > 5 else None)


# plans by the byte key of _wfdb.scan_header (a different spelling of _PLANS' keys)
_FAST_PLANS: dict = {}


def _read_fast(raw: bytes, hea: str):
    """:func:`_read_planned` with the header tokenised in C; None where it does not apply.

    ``_wfdb.scan_header`` accepts the headers :func:`_plan_of` accepts, limited
    to plain ASCII and plain integers, and returns the plan's key as bytes; a
    key seen for the first time is resolved through :func:`_plan_of`, so
    both routes share one plan per layout. On 12-lead 10 s records the Python
    tokenising and the Record constructor were about 20 of the read's 80 µs.
    """
    got = _wfdb.scan_header(raw, _PLAN_MAX_SIGNALS)
    if got is None:
        return None
    name, n, fname, key, comments, base_time, base_date = got
    plan = _FAST_PLANS.get(key)
    if plan is None:
        slow = _plan_of(_decode_text(raw), hea)
        # scan_header passed the per-record checks, so None here means the layout
        # has no plan, which depends on the key alone
        plan = _remember(_FAST_PLANS, key, _NO_PLAN if slow is None else slow[0])
    if plan is _NO_PLAN:
        return None
    return _decode_planned(plan, hea, fname, n, name, comments, base_time, base_date)


_new_record = Record.__new__
# the constructor's own value for "no derived leads" (shared, immutable)
_NO_DERIVED = Record(np.zeros((1, 1), np.float32), 1.0, ("I",)).derived


def _decode_planned(plan, hea: str, fname: str, n: int, name: str, comments: list,
                    base_time, base_date) -> Record:
    """Read and decode the signal file of a planned record; build its Record."""
    fpath = os.path.join(os.path.dirname(hea), fname)
    need = _bytes_needed(plan.fmt, n * plan.tspf)
    buf = _read_bytes(fpath, fname, hea, plan.offset, need,
                      f" for {n} frames of {plan.tspf} format-{plan.fmt} samples")
    return _planned_record(plan, buf, hea, n, name, comments, base_time, base_date)


def _planned_record(plan, buf, hea: str, n: int, name: str, comments: list,
                    base_time, base_date) -> Record:
    """Decode the signal bytes of a planned record (``n`` frames) into its Record."""
    out = np.empty((plan.tspf, n), dtype=np.float32)
    spf, col, skew, baseline, scale, rows, gain = plan.dec
    _wfdb.decode_into(buf, plan.fmt, n, plan.tspf, col, spf, skew, baseline, scale, rows,
                      plan.inv, plan.check, out, gain)
    meta = {"format": "wfdb", "record_name": name, "units": list(plan.units),
            "gains": list(plan.gains), "baselines": list(plan.baselines),
            "formats": list(plan.formats), "adc_zero": list(plan.adc_zero),
            "comments": comments}
    if comments:
        _comment_meta(comments, meta)
    if base_time is not None:
        meta["base_time"] = base_time
        if base_date is not None:
            meta["base_date"] = base_date
    # What Record(out, plan.fs, plan.names, meta=meta, source=hea) builds, without
    # re-validating per record what the plan checked once: a C-contiguous float32
    # (n_leads, n) signal, a positive finite rate, normalised lead names (about
    # 10 µs a record). tests/test_io_wfdb_fast.py compares every slot with the constructor's.
    rec = _new_record(Record)
    rec.signal = out
    rec.fs = plan.fs
    rec.leads = plan.leads
    rec.meta = meta
    rec.median = None
    rec.source = hea
    rec.derived = _NO_DERIVED
    rec.units = "mV"
    rec.annotations = {}
    rec._quality = None
    return rec


def read(path: "str | os.PathLike", **kwargs) -> Record:
    """Read a WFDB record into a :class:`~ecgcore.Record` in millivolts.

    Parameters
    ----------
    path : str or path-like
        The ``.hea`` file, or the record path without suffix.

    Returns
    -------
    Record
        ``signal`` in mV (float32, NaN where the file holds the invalid-sample
        code), ``fs``, normalised lead names, ``source`` (the header path) and
        ``meta`` with ``record_name``, ``units`` (as written in the header),
        ``gains``, ``baselines``, ``formats``, ``comments``, ``fields`` (the
        ``key: value`` comments, lower-cased keys), ``age``/``sex``/``dx`` where
        the comments give them, and ``base_time``/``base_date`` where the
        record line has them. Annotation files are not loaded.

    Raises
    ------
    ReadError
        Missing, empty or malformed header; missing or truncated signal files;
        unsupported formats. The message names the file and the problem.

    Notes
    -----
    Physical values equal ``wfdb.rdrecord(...).p_signal`` converted to mV,
    rounded to float32: for millivolt signals of up to 16 bits with gains
    that float32 holds exactly (nearly every ECG record) the decoder divides
    in float32, which gives the correctly rounded float32 of the exact
    ``(digital - baseline) / gain``; otherwise it computes in float64.

    Records that share a header layout (as a biobank's records do) share a
    cached decoding plan, so after the first record a read costs one header
    read and tokenisation, one signal-file read and the decoding pass. Multi-segment records are
    concatenated; null segments (``~``) and signals absent from a segment read
    as NaN.
    """
    hea = _hea_path(os.fspath(path))
    raw = _read_raw(hea)
    rec = _read_fast(raw, hea)
    if rec is not None:
        return rec
    text = _decode_text(raw)
    rec = _read_planned(text, hea)
    if rec is not None:
        return rec
    h = parse_header(text, hea)
    meta = {"format": "wfdb", "record_name": h.name}
    if h.segments is not None:
        sig, names, units = _read_multi(h, hea)
        meta["n_segments"] = len(h.segments)
        meta["units"] = units
    else:
        sig = _read_single(h, hea)
        sigs = h.signals
        names = [s.name for s in sigs]
        meta["units"] = [s.units for s in sigs]
        meta["gains"] = [s.gain for s in sigs]
        meta["baselines"] = [s.baseline for s in sigs]
        meta["formats"] = [s.fmt for s in sigs]
        meta["adc_zero"] = [s.adc_zero for s in sigs]
    meta["comments"] = h.comments
    if h.comments:
        _comment_meta(h.comments, meta)
    if h.base_time is not None:
        meta["base_time"] = h.base_time
    if h.base_date is not None:
        meta["base_date"] = h.base_date
    return Record(sig, h.fs, names, meta=meta, source=hea)


read_wfdb = read


# -- writing -------------------------------------------------------------------

_GAIN_LADDER = (1000.0, 500.0, 200.0, 100.0, 50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5, 0.2, 0.1,
                0.05, 0.02, 0.01, 0.005, 0.002, 0.001)


def _choose_gains(sig: np.ndarray, limit: int) -> np.ndarray:
    """Largest gain of a 1-2-5 ladder (at most 1000/mV) that fits each lead without clipping."""
    with np.errstate(invalid="ignore"):
        peak = np.nanmax(np.abs(sig), axis=1) if sig.shape[1] else np.zeros(sig.shape[0])
    peak = np.nan_to_num(peak, nan=0.0)
    ladder = np.asarray(_GAIN_LADDER)
    # fits[i, k]: lead i rounds into range at ladder gain k
    fits = np.floor(peak[:, None] * ladder[None, :] + 0.5) <= limit
    k = np.argmax(fits, axis=1)
    if not fits.any(axis=1).all():
        bad = int(np.argmin(fits.any(axis=1)))
        raise WriteError(f"lead {bad} peaks at {peak[bad]:g} mV: too large for any WFDB gain")
    return ladder[k]


def _fmt_num(x: float) -> str:
    return f"{x:.12g}"


def write_wfdb(record: Record, path: "str | os.PathLike", fmt: int = 16, gain=None,
               comments=None) -> str:
    """Write a record as a WFDB header plus one signal file.

    Parameters
    ----------
    record : Record
        Samples in mV; NaN is written as the format's invalid-sample code.
    path : str or path-like
        Record path without suffix (a trailing ``.hea`` is dropped); writes
        ``path.hea`` and ``path.dat``.
    fmt : {16, 212}
        16-bit or packed 12-bit samples.
    gain : float or sequence of float, optional
        Units per mV. By default each lead gets the largest of 1000, 500, 200,
        100, ... per mV whose range holds the lead without clipping (format 16
        at 1000/mV is 1 µV per unit, the PTB-XL convention).
    comments : sequence of str, optional
        Header comment lines; by default ``age``/``sex`` from ``record.meta``.

    Returns
    -------
    str
        The header path.

    Notes
    -----
    Both files are written to temporary names and moved into place with
    ``os.replace`` (signal file first), so a reader never sees a header
    without its data. ``wfdb.rdrecord`` reads the files back to the same
    values as :func:`read`, within half a quantisation step (1/gain) of the
    input.
    """
    if fmt not in (16, 212):
        raise ConfigError(f"fmt must be 16 or 212, got {fmt!r}")
    path = os.fspath(path)
    if path.endswith(".hea"):
        path = path[:-4]
    d, name = os.path.split(path)
    if not name or any(c.isspace() for c in name):
        raise WriteError("record name must be non-empty and contain no whitespace", path)
    d = d or "."
    if not os.path.isdir(d):
        raise WriteError("output directory does not exist", d)
    sig = np.asarray(record.signal, dtype=np.float64)
    n_sig, n = sig.shape
    limit = 32767 if fmt == 16 else 2047
    invalid = _INVALID[fmt]
    if gain is None:
        gains = _choose_gains(sig, limit)
    else:
        gains = np.broadcast_to(np.asarray(gain, dtype=np.float64), (n_sig,)).copy()
        if not np.all(np.isfinite(gains)) or np.any(gains <= 0):
            raise WriteError(f"gains must be positive and finite, got {gain!r}", path)
    nan = np.isnan(sig)
    dig = np.rint(np.where(nan, 0.0, sig) * gains[:, None])
    if np.any(np.abs(dig) > limit):
        raise WriteError(f"signal exceeds the format-{fmt} range at the given gain", path)
    dig = dig.astype(np.int64)
    dig[nan] = invalid
    frames = np.ascontiguousarray(dig.T.astype(np.int16))  # (n, n_sig), frame-interleaved
    if fmt == 16:
        data = frames.astype("<i2").tobytes()
    else:
        data = _wfdb.encode_212(frames.reshape(-1)).tobytes()
    # checksum: 16-bit sum of the samples (signed, as WFDB writes it)
    csum = ((dig.sum(axis=1) + 32768) % 65536) - 32768
    init = dig[:, 0] if n else np.zeros(n_sig, np.int64)
    adc_res = 16 if fmt == 16 else 12
    lines = [f"{name} {n_sig} {_fmt_num(record.fs)} {n}"]
    dat = name + ".dat"
    for i in range(n_sig):
        lead = str(record.leads[i]).replace("\n", " ").strip() or f"sig{i}"
        lines.append(f"{dat} {fmt} {_fmt_num(gains[i])}(0)/mV {adc_res} 0 {int(init[i])} "
                     f"{int(csum[i])} 0 {lead}")
    if comments is None:
        comments = []
        meta = record.meta or {}
        if meta.get("age") is not None:
            comments.append(f"Age: {meta['age']}")
        if meta.get("sex") is not None:
            comments.append(f"Sex: {meta['sex']}")
    for c in comments:
        lines.append("#" + str(c).replace("\n", " "))
    text = "\n".join(lines) + "\n"
    try:
        # the inner (signal) file is moved into place first: a reader never finds a
        # header whose signal file is missing or stale
        with atomic_open(path + ".hea", "w", encoding="utf-8", newline="\n") as fh, \
                atomic_open(os.path.join(d, dat), "wb") as fd:
            fd.write(data)
            fh.write(text)
    except OSError as exc:
        raise WriteError(f"cannot write WFDB record: {exc.strerror or exc}", path) from None
    return path + ".hea"
