"""DICOM waveform reader (12-lead, general, ambulatory ECG; hemodynamic) (facts §7).

Little-endian files (explicit or implicit VR; ISO 646, Latin-1 or UTF-8
text) are walked by a small dataset reader here, which decodes element values
only when asked, several times faster than building pydicom Datasets; every
other file (and anything the walker finds odd) is parsed by pydicom. The
samples are decoded with numpy. Each item
of ``WaveformSequence`` is a multiplex group with its own rate: the
``RHYTHM`` group becomes the record and a ``MEDIAN BEAT`` group its
``median``. Samples are channel-interleaved; physical value =
raw x ChannelSensitivity x CorrectionFactor + ChannelBaseline, in the
channel's sensitivity units, converted to mV.

Leads are named from the channel source code (SCPECG ``5.6.3-9-N`` or MDC),
falling back to the code meaning. The SOP class is not trusted: whether the
record is a 12-lead ECG is decided from the leads found.
"""

from __future__ import annotations

import os
import re
import struct

import numpy as np

from ..errors import ReadError
from ..record import Record, STANDARD_12, normalize_lead
from .hl7 import MDC_LEAD_NUMBERS

__all__ = ["read", "read_dicom", "SOP_CLASSES"]

SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "General ECG",
    "1.2.840.10008.5.1.4.1.1.9.1.3": "Ambulatory ECG",
    "1.2.840.10008.5.1.4.1.1.9.2.1": "Hemodynamic",
    "1.2.840.10008.5.1.4.1.1.9.3.1": "Basic Cardiac Electrophysiology",
}

# (bits allocated, sample interpretation) -> numpy dtype (byte order added later)
_DTYPES = {(8, "SB"): "i1", (8, "UB"): "u1", (16, "SS"): "i2", (16, "US"): "u2",
           (32, "SL"): "i4", (32, "UL"): "u4"}
_TO_MV = {"uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "mv": 1.0, "v": 1e3, "nv": 1e-6, "kv": 1e6}
_SCP_CODE = re.compile(r"^5\.6\.3-9-(\d+)$")
_MDC_CODE = re.compile(r"^2:(\d+)$")
_PAREN = re.compile(r"\s*\(.*?\)\s*")

#: Largest waveform group accepted, samples x channels (bounded memory).
MAX_GROUP_VALUES = 200_000_000


def _lead_name(ch, index: int) -> str:
    src = ch.get("ChannelSourceSequence")
    item = src[0] if src else None
    if item is None:
        return f"ch{index + 1}"
    scheme = str(item.get("CodingSchemeDesignator", "") or "").upper()
    code = str(item.get("CodeValue", "") or "").strip()
    m = _SCP_CODE.match(code) if scheme.startswith("SCPECG") or code.startswith("5.6.3") else None
    if m is None and scheme == "MDC":
        m = _MDC_CODE.match(code)
        if m is None and code.isdigit():
            n = int(code)
            name = MDC_LEAD_NUMBERS.get(n - 131072 if n > 131072 else n)
            if name:
                return name
    if m is not None and int(m.group(1)) in MDC_LEAD_NUMBERS:
        return MDC_LEAD_NUMBERS[int(m.group(1))]
    meaning = str(item.get("CodeMeaning", "") or "").strip()
    if meaning:
        return normalize_lead(_PAREN.sub(" ", meaning).strip())
    return code or f"ch{index + 1}"


def _num(ds, keyword, default=None):
    v = ds.get(keyword)
    if v is None or v == "":
        return default
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def _group(ds, item, gi: int, little: bool, path):
    """(signal mV, fs, leads, notes) of one multiplex group."""
    need = ("NumberOfWaveformChannels", "NumberOfWaveformSamples", "SamplingFrequency",
            "WaveformBitsAllocated", "WaveformSampleInterpretation", "WaveformData",
            "ChannelDefinitionSequence")
    missing = [k for k in need if item.get(k) is None]
    if missing:
        raise ReadError(f"waveform group {gi} lacks {', '.join(missing)}", path)
    n_ch = int(item.NumberOfWaveformChannels)
    n_s = int(item.NumberOfWaveformSamples)
    fs = _num(item, "SamplingFrequency")
    bits = int(item.WaveformBitsAllocated)
    interp = str(item.WaveformSampleInterpretation).upper()
    if n_ch <= 0 or n_s <= 0 or n_ch * n_s > MAX_GROUP_VALUES:
        raise ReadError(f"waveform group {gi}: implausible size {n_ch} channels x {n_s} samples", path)
    if fs is None or not np.isfinite(fs) or fs <= 0:
        raise ReadError(f"waveform group {gi}: invalid SamplingFrequency {item.SamplingFrequency!r}", path)
    code = _DTYPES.get((bits, interp))
    if code is None:
        raise ReadError(f"waveform group {gi}: unsupported samples ({bits} bits, {interp})", path)
    dt = np.dtype(("<" if little else ">") + code)
    data = item.WaveformData
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ReadError(f"waveform group {gi}: WaveformData is not binary", path)
    chans = item.ChannelDefinitionSequence
    if len(chans) != n_ch:
        raise ReadError(f"waveform group {gi}: {len(chans)} channel definitions for {n_ch} channels",
                        path)
    need_bytes = n_ch * n_s * dt.itemsize
    if len(data) < need_bytes:
        raise ReadError(f"waveform group {gi}: WaveformData has {len(data)} bytes, "
                        f"{need_bytes} expected (truncated)", path)
    # channel-interleaved per sample: kept as stored, (samples, channels), so
    # every step below runs over contiguous memory; transposed at the end
    raw = np.frombuffer(data, dt, count=n_ch * n_s).reshape(n_s, n_ch)
    missing_mask = None
    notes = {}
    pad = item.get("WaveformPaddingValue")
    if pad is not None and len(pad) >= dt.itemsize:
        pv = np.frombuffer(bytes(pad[:dt.itemsize]), dt)[0]
        hit = raw == pv
        if hit.any():
            missing_mask = hit
        notes["padding_value"] = int(pv)
    if dt.kind == "i":
        # the most negative value marks missing samples even when undeclared
        # (facts §7: one converter ends every median channel with it)
        lowest = np.iinfo(dt).min
        if raw.min() == lowest:           # a cheap reduction before any mask
            low = raw == lowest
            notes["most_negative_as_missing"] = int(low.sum())
            missing_mask = low if missing_mask is None else (missing_mask | low)
    sens = np.ones(n_ch)
    corr = np.ones(n_ch)
    base = np.zeros(n_ch)
    to_mv = np.full(n_ch, np.nan)
    names, units, keep = [], [], []
    uncalibrated = []
    filt = {}
    for i, ch in enumerate(chans):
        name = _lead_name(ch, i)
        s = _num(ch, "ChannelSensitivity")
        u_seq = ch.get("ChannelSensitivityUnitsSequence")
        unit = str(u_seq[0].get("CodeValue", "")).strip() if u_seq else ""
        if s is None or s == 0:
            uncalibrated.append(name)
            s, unit = 1.0, unit or "uV"     # counts taken as µV, and flagged
        sens[i] = s
        corr[i] = _num(ch, "ChannelSensitivityCorrectionFactor", 1.0)
        base[i] = _num(ch, "ChannelBaseline", 0.0)
        f = _TO_MV.get(unit.lower()) if unit else 1e-3
        if f is None:
            continue                      # e.g. a pressure or respiration channel
        to_mv[i] = f
        names.append(name)
        units.append(unit or "uV")
        keep.append(i)
        if not filt:
            for key, kw in (("high_pass_hz", "FilterLowFrequency"),
                            ("low_pass_hz", "FilterHighFrequency"),
                            ("notch_hz", "NotchFilterFrequency")):
                v = _num(ch, kw)
                if v is not None:
                    filt[key] = v
    if not keep:
        raise ReadError(f"waveform group {gi} has no voltage channels", path)
    k = np.asarray(keep)
    scale = (sens * corr * to_mv)[k]
    sig = raw[:, k] if len(keep) < n_ch else raw
    sig = sig * scale + (base * to_mv)[k]          # float64, (samples, kept channels)
    if missing_mask is not None:
        sig[missing_mask[:, k]] = np.nan
    sig = sig.T
    if len(keep) < n_ch:
        notes["skipped_channels"] = n_ch - len(keep)
    if uncalibrated:
        notes["uncalibrated_channels"] = uncalibrated
    notes["filters"] = filt
    notes["units"] = sorted(set(units))
    notes["label"] = str(item.get("MultiplexGroupLabel", "") or "").strip()
    notes["originality"] = str(item.get("WaveformOriginality", "") or "").strip()
    return sig, fs, names, notes


def _annotations(ds) -> tuple[dict, dict, list]:
    cols = {k: [] for k in ("code", "meaning", "value", "unit", "text", "group", "sample")}
    meas, stmts = {}, []
    for a in ds.get("WaveformAnnotationSequence") or []:
        text = a.get("UnformattedTextValue")
        cn = a.get("ConceptNameCodeSequence")
        code = meaning = None
        if cn:
            code, meaning = cn[0].get("CodeValue"), cn[0].get("CodeMeaning")
        value = a.get("NumericValue")
        unit = None
        mu = a.get("MeasurementUnitsCodeSequence")
        if mu:
            unit = mu[0].get("CodeValue")
        if value is not None:
            try:
                value = float(value if not isinstance(value, (list, tuple)) else value[0])
            except (TypeError, ValueError):
                value = None
        pos = a.get("ReferencedSamplePositions")
        sample = -1
        if pos is not None:
            try:
                sample = int(pos if not hasattr(pos, "__len__") else pos[0])
            except (TypeError, ValueError, IndexError):
                sample = -1
        grp = a.get("AnnotationGroupNumber")
        cols["code"].append(str(code) if code is not None else None)
        cols["meaning"].append(str(meaning) if meaning is not None else None)
        cols["value"].append(value)
        cols["unit"].append(str(unit) if unit is not None else None)
        cols["text"].append(str(text) if text is not None else None)
        cols["group"].append(int(grp) if grp is not None else -1)
        cols["sample"].append(sample)
        if text:
            stmts.append(str(text))
        if value is not None and meaning and str(meaning) not in meas:
            meas[str(meaning)] = {"value": value, "unit": str(unit) if unit else None}
    return cols, meas, stmts


# -- a minimal dataset walker --------------------------------------------------
#
# pydicom builds a Dataset object for every sequence item and converts each
# element through several layers; for a 12-lead file with a few hundred
# annotation and channel items that is ~15 ms, most of a read. The waveform
# module needs none of that machinery: little-endian files (explicit or
# implicit VR, by far the most common) are walked here into plain dicts of
# raw values, decoded only when asked for. Anything outside that subset
# (other transfer syntaxes, other character sets, any structural surprise)
# raises _Unsupported and the file is read by pydicom as before.

_EXPLICIT_LE, _IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
_UNDEF = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"))
_SHORT_VRS = frozenset((b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS",
                        b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL",
                        b"US"))
_TEXT_VRS = frozenset(("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "PN", "SH", "TM", "UC",
                       "UI"))
_LONG_TEXT_VRS = frozenset(("LT", "ST", "UT", "UR"))        # single-valued, keep leading spaces
_NUM_VRS = {"US": "<u2", "SS": "<i2", "UL": "<u4", "SL": "<i4", "FL": "<f4", "FD": "<f8",
            "SV": "<i8", "UV": "<u8"}
# SpecificCharacterSet values whose text decodes with one Python codec
_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1",
             "ISO_IR 192": "utf-8"}
_MAX_DEPTH = 16
_MAX_FAST_BYTES = 512 * 1024 * 1024
_GE = struct.Struct("<HH").unpack_from            # (group, element)
_GEL = struct.Struct("<HHI").unpack_from          # (group, element, 32-bit length)
_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_MISSING = object()


class _Unsupported(Exception):
    """Outside what the fast walker handles; read the file with pydicom."""


def _kw_tag(kw: str) -> int:
    tag = _KW_TAGS.get(kw)
    if tag is None:
        from pydicom.datadict import tag_for_keyword
        tag = tag_for_keyword(kw)
        if tag is None:
            raise KeyError(kw)
        _KW_TAGS[kw] = tag
    return tag


_KW_TAGS: dict = {}
_IMPLICIT_VRS: dict = {}


def _implicit_vr(tag: int) -> bytes:
    vr = _IMPLICIT_VRS.get(tag)
    if vr is None:
        from pydicom.datadict import dictionary_VR
        try:
            vr = dictionary_VR(tag).split(" or ")[0].encode("ascii")
        except KeyError:
            vr = b"UN"                    # private or unknown: kept as bytes
        _IMPLICIT_VRS[tag] = vr
    return vr


class _Item:
    """One dataset or sequence item: raw elements, decoded on access.

    Offers the small part of pydicom's Dataset interface the reader uses:
    ``get(keyword, default)`` and attribute access by keyword.
    """

    __slots__ = ("_el", "_codec")

    def __init__(self, el: dict, codec: list):
        self._el, self._codec = el, codec

    def get(self, kw, default=None):
        e = self._el.get(_kw_tag(kw))
        if e is None:
            return default
        vr, raw = e
        if vr == "SQ":
            return raw
        return _decode(vr, raw, self._codec[0])

    def __getattr__(self, kw):
        if kw.startswith("_"):
            raise AttributeError(kw)
        v = self.get(kw, _MISSING)
        if v is _MISSING:
            raise AttributeError(kw)
        return v


def _decode(vr: str, raw, codec: str):
    if vr in _TEXT_VRS or vr in _LONG_TEXT_VRS:
        text = bytes(raw).decode(codec)
        if vr in _LONG_TEXT_VRS:
            return text.rstrip(" \x00")
        vals = [v.strip(" \x00") for v in text.split("\\")]
        return vals[0] if len(vals) == 1 else vals
    dt = _NUM_VRS.get(vr)
    if dt is not None:
        if len(raw) % np.dtype(dt).itemsize:
            raise _Unsupported(f"{vr} value of {len(raw)} bytes")
        vals = np.frombuffer(raw, dt).tolist()
        if not vals:
            return None
        return vals[0] if len(vals) == 1 else vals
    return raw                            # OB/OW/UN...: the bytes (a memoryview)


def _walk(buf, pos: int, end: int, implicit: bool, codec: list, depth: int):
    """Elements of one dataset in buf[pos:end] -> (dict, pos, hit item delimiter)."""
    el = {}
    while pos < end:
        if pos + 8 > end:
            raise _Unsupported("element header past the end")
        group, elem = _GE(buf, pos)
        tag = group << 16 | elem
        if tag == _ITEM_END:
            return el, pos + 8, True
        if group == 0xFFFE:
            raise _Unsupported("delimiter out of place")
        if implicit:
            length = _U32(buf, pos + 4)[0]
            pos += 8
            vr = b"SQ" if length == _UNDEF else _implicit_vr(tag)
        else:
            vr = bytes(buf[pos + 4:pos + 6])
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    raise _Unsupported("element header past the end")
                length = _U32(buf, pos + 8)[0]
                pos += 12
            elif vr in _SHORT_VRS:
                length = _U16(buf, pos + 6)[0]
                pos += 8
            else:
                raise _Unsupported(f"VR {vr!r}")
        if vr == b"SQ" or (vr == b"UN" and length == _UNDEF):
            # an undefined-length UN is a sequence in implicit VR (PS3.5 6.2.2)
            items, pos = _sequence(buf, pos, end, length, implicit or vr == b"UN", codec,
                                   depth + 1)
            el[tag] = ("SQ", items)
            continue
        if length == _UNDEF or pos + length > end:
            raise _Unsupported("value length past the end")
        el[tag] = (vr.decode("ascii"), buf[pos:pos + length])
        pos += length
    return el, pos, False


def _sequence(buf, pos: int, end: int, length: int, implicit: bool, codec: list, depth: int):
    if depth > _MAX_DEPTH:
        raise _Unsupported("sequences nested too deeply")
    if length != _UNDEF:
        if pos + length > end:
            raise _Unsupported("sequence past the end")
        end = pos + length
    items = []
    while pos < end:
        if pos + 8 > end:
            raise _Unsupported("item header past the end")
        group, elem, ilen = _GEL(buf, pos)
        tag = group << 16 | elem
        pos += 8
        if tag == _SEQ_END and length == _UNDEF:
            return items, pos
        if tag != _ITEM:
            raise _Unsupported("not an item in a sequence")
        if ilen == _UNDEF:
            d, pos, closed = _walk(buf, pos, end, implicit, codec, depth)
            if not closed:
                raise _Unsupported("item without delimiter")
        else:
            if pos + ilen > end:
                raise _Unsupported("item past the end")
            d, _, closed = _walk(buf, pos, pos + ilen, implicit, codec, depth)
            if closed:
                raise _Unsupported("delimiter inside a defined-length item")
            pos += ilen
        items.append(_Item(d, codec))
    if length == _UNDEF:
        raise _Unsupported("sequence without delimiter")
    return items, pos


def _fast_dataset(path: str):
    """(dataset, transfer syntax UID) by the walker; raises _Unsupported or OSError."""
    if os.path.getsize(path) > _MAX_FAST_BYTES:
        raise _Unsupported("large file: let pydicom defer values")
    with open(path, "rb") as f:
        data = f.read()
    if data[128:132] != b"DICM":
        raise _Unsupported("no DICM prefix")
    buf = memoryview(data)
    # file meta information: explicit VR little endian, group 0002 only
    pos, meta_end = 132, 132
    while meta_end + 8 <= len(data) and _U16(buf, meta_end)[0] == 0x0002:
        vr = bytes(buf[meta_end + 4:meta_end + 6])
        if vr in _LONG_VRS:
            if meta_end + 12 > len(data):
                raise _Unsupported("truncated file meta")
            meta_end += 12 + _U32(buf, meta_end + 8)[0]
        else:
            meta_end += 8 + _U16(buf, meta_end + 6)[0]
    if meta_end > len(data):
        raise _Unsupported("truncated file meta")
    codec = ["latin-1"]
    meta, _, _ = _walk(buf, pos, meta_end, False, codec, 0)
    ts = meta.get(0x00020010)
    ts = bytes(ts[1]).decode("ascii", "replace").strip(" \x00") if ts else ""
    if ts not in (_EXPLICIT_LE, _IMPLICIT_LE):
        raise _Unsupported(f"transfer syntax {ts}")
    el, _, closed = _walk(buf, meta_end, len(data), ts == _IMPLICIT_LE, codec, 0)
    if closed:
        raise _Unsupported("item delimiter at top level")
    cs = el.get(0x00080005)
    name = bytes(cs[1]).decode("ascii", "replace").strip(" \x00") if cs else ""
    if name not in _CHARSETS:
        raise _Unsupported(f"character set {name}")
    codec[0] = _CHARSETS[name]
    return _Item(el, codec), ts


def read(path: "str | os.PathLike", annotations: bool = True, **kwargs) -> Record:
    """Read a DICOM waveform file (ECG or hemodynamic SOP classes).

    Parameters
    ----------
    path : str or path-like
    annotations : bool
        Decode ``WaveformAnnotationSequence`` (measurements, statements,
        fiducials); False skips it (about 1 ms less for a 12-lead file).

    Returns
    -------
    Record
        The rhythm group in mV, leads named from their channel codes;
        ``median`` holds a MEDIAN BEAT group when present. Padding values
        (declared, and the undeclared most-negative-value quirk) are NaN.
        ``meta`` holds ``sop_class``, ``is_12_lead`` (decided from the leads
        found), filters, device, patient, ``measurements`` and ``statements``;
        ``annotations["dicom"]`` holds every waveform annotation as columns.

    Raises
    ------
    ReadError
        Not a DICOM file, no WaveformSequence, missing or inconsistent
        waveform attributes, truncated WaveformData.

    References
    ----------
    DICOM PS3.3 C.10.9 (Waveform module) and A.34 (Waveform IODs).
    """
    path = os.fspath(path)
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError as exc:  # pragma: no cover - pydicom is a dependency
        raise ReadError(f"DICOM needs pydicom ({exc})", path) from None
    try:
        ds, ts = _fast_dataset(path)
    except (_Unsupported, struct.error, ValueError, UnicodeDecodeError):
        ds = None                         # pydicom reads it, or names the problem
    except OSError as exc:
        raise ReadError(f"cannot open: {exc.strerror or exc}", path) from None
    if ds is not None:
        try:
            return _from_dataset(ds, path, annotations, little=True, ts=ts)
        except ReadError:
            raise
        except (MemoryError, RecursionError):
            raise
        except Exception:   # a value the walker cannot decode: let pydicom try
            pass
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as exc:
        raise ReadError(f"not a DICOM file: {exc}", path) from None
    except OSError as exc:
        raise ReadError(f"cannot open: {exc.strerror or exc}", path) from None
    except Exception as exc:  # pydicom raises many types on corrupt data
        raise ReadError(f"corrupt DICOM dataset ({type(exc).__name__}: {exc})", path) from None
    try:
        return _from_dataset(ds, path, annotations)
    except ReadError:
        raise
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # lazily parsed elements fail only when touched
        raise ReadError(f"corrupt DICOM waveform ({type(exc).__name__}: {exc})", path) from None


def _from_dataset(ds, path, with_annotations=True, little=None, ts=None) -> Record:
    """The Record of a pydicom Dataset or a walked :class:`_Item` (little, ts given)."""
    seq = ds.get("WaveformSequence")
    if not seq:
        raise ReadError("no WaveformSequence: not a waveform DICOM file", path)
    if little is None:
        enc = getattr(ds, "original_encoding", None)
        little = True if not enc or enc[1] is None else bool(enc[1])
    if ts is None:
        ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))
    groups = []
    for gi, item in enumerate(seq):
        groups.append((gi, item, str(item.get("MultiplexGroupLabel", "") or "").upper(),
                       str(item.get("WaveformOriginality", "") or "").upper()))
    median_like = [g for g in groups if "MEDIAN" in g[2] or "BEAT" in g[2] or "REPRESENT" in g[2]]
    rhythm_like = [g for g in groups if g not in median_like]
    if not rhythm_like:
        raise ReadError("only median-beat waveform groups; no rhythm", path)
    # prefer an explicit RHYTHM label, then an ORIGINAL group, then the first
    rhythm = next((g for g in rhythm_like if "RHYTHM" in g[2]), None) or \
        next((g for g in rhythm_like if g[3] == "ORIGINAL"), rhythm_like[0])
    sig, fs, names, notes = _group(ds, rhythm[1], rhythm[0], little, path)
    sop = str(ds.get("SOPClassUID", "") or "")
    have = set(names)
    meta = {"format": "dicom", "sop_class_uid": sop, "sop_class": SOP_CLASSES.get(sop, "unknown"),
            "is_12_lead": set(STANDARD_12) <= have, "group_label": notes["label"],
            "filters": notes["filters"], "units": notes["units"],
            "transfer_syntax": ts,
            "n_waveform_groups": len(groups)}
    for k in ("padding_value", "most_negative_as_missing", "skipped_channels", "uncalibrated_channels"):
        if k in notes:
            meta[k] = notes[k]
    if "uncalibrated_channels" in notes:
        meta["quality_flags"] = {"scale_suspect": True}
    dev = {k: str(ds.get(kw)) for k, kw in (("manufacturer", "Manufacturer"),
                                            ("model", "ManufacturerModelName"),
                                            ("software", "SoftwareVersions"))
           if ds.get(kw) not in (None, "")}
    meta["device"] = dev
    pat = {k: str(ds.get(kw)) for k, kw in (("id", "PatientID"), ("name", "PatientName"),
                                            ("sex", "PatientSex"), ("birth_date", "PatientBirthDate"),
                                            ("age", "PatientAge"))
           if ds.get(kw) not in (None, "")}
    meta["patient"] = pat
    when = ds.get("AcquisitionDateTime") or ds.get("ContentDate")
    if when:
        meta["acquisition_time"] = str(when)
    cols, meas, stmts = _annotations(ds) if with_annotations else ({"code": []}, {}, [])
    meta["measurements"] = meas
    meta["statements"] = stmts
    median = None
    if median_like:
        gi, item, label, _ = median_like[0]
        msig, mfs, mnames, mnotes = _group(ds, item, gi, little, path)
        mmeta = {"format": "dicom", "kind": "median", "group_label": mnotes["label"]}
        for k in ("padding_value", "most_negative_as_missing"):
            if k in mnotes:
                mmeta[k] = mnotes[k]
        median = Record(msig, mfs, mnames, meta=mmeta, source=path)
    annotations = {"dicom": {k: (np.asarray(v, np.int64) if k in ("group", "sample") else v)
                             for k, v in cols.items()}} if cols["code"] else {}
    return Record(sig, fs, names, meta=meta, median=median, source=path, annotations=annotations)


read_dicom = read
