"""HL7 v3 annotated ECG (FDA aECG) reader (facts/formats.md §6).

An aECG file holds one or more ``series``: ``RHYTHM`` (the recording) and,
under ``derivation/derivedSeries``, a ``REPRESENTATIVE_BEAT`` series (the
median beat). Each series holds ``sequenceSet`` elements, each with a time
sequence (``TIME_ABSOLUTE`` or ``TIME_RELATIVE``; fs = 1 / increment) and one
``SLIST_PQ`` sequence per lead (physical = origin + scale x digit).

Leads are mapped by their MDC code, never by position, since writers order
them freely. For speed, the sample text, the plain lead sequences and the
annotation sets are cut out of the document with byte searches before the
XML parser sees it (see ``_split``): samples are read by a compiled integer
scanner (numpy's tokenizer for anything else), lead sequences from a strict
pattern that only well-formed XML matches, annotation sets are checked at
once and decoded on first use. Documents where the cut would not be exact
are parsed whole.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import MutableMapping, MutableSequence
from typing import NamedTuple
from xml.parsers import expat as pyexpat

import numpy as np

from ..errors import ConfigError, ReadError
from ..record import Record, normalize_lead
from .xmlsafe import _refuse_entities, detect_encoding, parse_xml, read_bytes

__all__ = ["read", "read_hl7_aecg", "MDC_LEAD_NUMBERS", "lead_name_from_code", "LazyDict", "LazyList"]

NS = "{urn:hl7-org:v3}"
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"

#: ISO/IEEE 11073 MDC ECG lead numbers (the term code within partition 2, also
#: used by SCP-ECG section 3 and DICOM ``MDC`` ``2:n`` codes) -> canonical name.
MDC_LEAD_NUMBERS = {
    1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6",
    9: "V7", 10: "V2R", 11: "V3R", 12: "V4R", 13: "V5R", 14: "V6R", 15: "V7R",
    16: "X", 17: "Y", 18: "Z",
    61: "III", 62: "aVR", 63: "aVL", 64: "aVF",
}

# physical units -> factor to millivolts
_TO_MV = {"uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "mv": 1.0, "v": 1e3, "nv": 1e-6}
# time units -> factor to seconds
_TO_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "min": 60.0}

_TS_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d+)?([+-]\d{4})?$")


def _ts_seconds(value: str | None) -> float | None:
    """An HL7 TS (``YYYYMMDDHHMMSS.fff[+ZZZZ]``) as POSIX-like seconds (zone ignored)."""
    if not value:
        return None
    m = _TS_RE.match(value.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, frac, _ = m.groups()
    try:
        t = _dt.datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(s or 0))
    except ValueError:
        return None
    return (t - _dt.datetime(1970, 1, 1)).total_seconds() + (float(frac) if frac else 0.0)


def _ts_iso(value: str | None) -> str | None:
    sec = _ts_seconds(value)
    if sec is None:
        return None
    return (_dt.datetime(1970, 1, 1) + _dt.timedelta(seconds=sec)).isoformat()


def _float(s, what, path) -> float:
    try:
        v = float(s)
    except (TypeError, ValueError):
        raise ReadError(f"{what} is not a number: {s!r}", path) from None
    if not np.isfinite(v):
        raise ReadError(f"{what} is not finite: {s!r}", path)
    return v


_LEAD_CACHE: dict = {}


def lead_name_from_code(code: str | None) -> str | None:
    """Canonical lead name of an MDC lead code (``MDC_ECG_LEAD_AVR`` or a number)."""
    if not code:
        return None
    # a file repeats the same dozen codes; memoise (bounded: codes are short)
    hit = _LEAD_CACHE.get(code, False)
    if hit is not False:
        return hit
    name = _lead_name_uncached(code)
    if len(_LEAD_CACHE) < 4096:
        _LEAD_CACHE[code] = name
    return name


def _lead_name_uncached(code: str) -> str | None:
    code = code.strip()
    if code.isdigit():
        n = int(code)
        # 131072 + n: the 32-bit context-free MDC code of partition 2
        n = n - 131072 if n > 131072 else n
        return MDC_LEAD_NUMBERS.get(n)
    if code.upper().startswith("MDC_ECG_LEAD_"):
        return normalize_lead(code)
    return None


def _parse_digits(text: str | None, what: str, path) -> np.ndarray:
    """Whitespace-separated numbers -> float64, vectorised in numpy's C tokenizer."""
    if text is None or not text.strip():
        return np.empty(0, np.float64)
    try:
        return np.fromstring(text, dtype=np.int64, sep=" ").astype(np.float64)
    except ValueError:
        pass  # decimals, or junk: try the strict float path, which names the error
    try:
        return np.array(text.split(), dtype=np.float64)
    except ValueError:
        raise ReadError(f"{what}: digits are not numbers", path) from None


_DIGITS_OPEN, _DIGITS_CLOSE = b"<digits>", b"</digits>"
_NUMERIC_BYTES = b"0123456789-+.eE \t\r\n"
_ANNSET_OPEN, _ANNSET_CLOSE = b"<annotationSet", b"</annotationSet>"
_HAS_ANNOTATION = re.compile(rb"<annotation[\s>/]")
_ROOT_OPEN = re.compile(rb"<([A-Za-z_][\w.:-]*)[^<>]*>")
# Encodings in which every ASCII byte stands for itself, so byte searches for
# tags are exact (expat reads these natively too).
_BYTE_SAFE = {"utf-8", "ascii", "iso8859-1"}

# A plain lead <sequence> (code, value with origin/scale/digits), spelled so
# that whatever matches is well-formed XML by construction: ASCII names, one
# exact xsi:type, double-quoted printable-ASCII attribute values without
# '&', '<', '>' or '"' (so no references and no attribute-value
# normalisation), comments without '<' or '--', whitespace between elements.
# Such a block is cut out whole and read from these bytes (see _split).
_WS = rb"[ \t\r\n]*(?:<!--(?:[\t\n\r -,.-;=-~]|-[\t\n\r -,.-;=-~])*-->[ \t\r\n]*)*"
_VAL = rb'"([ !#-%\'-;=?-~]*)"'
_OPT = rb'(?: %s="[ !#-%%\'-;=?-~]*")?'
_SEQ_HEAD = re.compile(
    rb"<sequence>" + _WS + rb"<code code=" + _VAL + _OPT % b"codeSystem" + _OPT % b"codeSystemName"
    + _OPT % b"displayName" + rb"[ \t\r\n]*(?:/>|></code>)" + _WS
    + rb'<value xsi:type="SLIST_PQ">' + _WS
    + rb"(?:<origin value=" + _VAL + rb"(?: unit=" + _VAL + rb")?[ \t\r\n]*(?:/>|></origin>)" + _WS + rb")?"
    + rb"(?:<scale value=" + _VAL + rb"(?: unit=" + _VAL + rb")?[ \t\r\n]*(?:/>|></scale>)" + _WS + rb")?"
    + rb"<digits>")
_SEQ_TAIL = re.compile(_WS + rb"</value>" + _WS + rb"</sequence>")
_SEQ_OPEN = b"<sequence>"


_XSI_BOUND: dict = {}


def _xsi_bound(root_open: bytes, enc: str) -> bool:
    """The root start tag binds the ``xsi`` prefix (checked by expat itself)."""
    hit = _XSI_BOUND.get((root_open, enc))
    if hit is not None:
        return hit
    name = _ROOT_OPEN.match(root_open).group(1)
    try:
        pyexpat.ParserCreate(enc, "}").Parse(
            root_open + b'<x xsi:type="SLIST_PQ"/></' + name + b">", True)
        ok = True
    except (pyexpat.ExpatError, ValueError, LookupError):
        ok = False              # unbound, or anything odd: no sequence is cut
    if len(_XSI_BOUND) < 64 and len(root_open) < 4096:
        _XSI_BOUND[(root_open, enc)] = ok
    return ok


try:  # the compiled scanners; numpy's tokenizer and bytes.find are the fallbacks
    from ._xmlscan import element_spans as _element_spans
    from ._xmlscan import find as _bfind
    from ._xmlscan import ints_at as _ints_at
except ImportError:  # pragma: no cover - extension not built
    _ints_at = _element_spans = None

    def _bfind(data: bytes, needle: bytes, start: int = 0, end: int = -1) -> int:
        return data.find(needle, start, len(data) if end == -1 else end)


class _Split(NamedTuple):
    """A document cut into a small skeleton and its bulky parts (see :func:`_split`)."""

    skeleton: bytes
    blobs: list             # samples (float64) or decimal text of each <digits>, by ecgcore_ref
    ann_spans: list         # bytes of each cut <annotationSet> element, by ecgcore_ann
    seqs: list              # (code, origin value, unit, scale value, unit, samples) of each cut lead
    root_open: bytes        # the root start tag (in-scope namespace declarations)
    root_name: bytes
    encoding: str


def _digit_spans(data: bytes, lo: int, hi: int, out: list) -> None:
    """Append (start, text start, text end, end) of every plain ``<digits>`` in data[lo:hi]."""
    if _element_spans is not None:
        _element_spans(data, _DIGITS_OPEN, _DIGITS_CLOSE, lo, hi, out)
        return
    pos = lo
    while True:
        start = data.find(_DIGITS_OPEN, pos, hi)
        if start < 0:
            return
        a = start + len(_DIGITS_OPEN)
        end = data.find(_DIGITS_CLOSE, a, hi)
        if end < 0:
            return
        out.append((start, a, end, end + len(_DIGITS_CLOSE)))
        pos = end + len(_DIGITS_CLOSE)


def _ann_spans(data: bytes, lo: int) -> "list | None":
    """(start, end) of every unprefixed ``<annotationSet>`` element; None if unsure."""
    spans = []
    pos = lo
    while True:
        start = _bfind(data, _ANNSET_OPEN, pos)
        if start < 0:
            return spans
        nxt = data[start + len(_ANNSET_OPEN):start + len(_ANNSET_OPEN) + 1]
        if nxt not in (b">", b" ", b"\t", b"\r", b"\n"):
            pos = start + len(_ANNSET_OPEN)          # e.g. <annotationSetX>
            continue
        end = _bfind(data, _ANNSET_CLOSE, start)
        if end < 0:
            return None
        end += len(_ANNSET_CLOSE)
        if _bfind(data, _ANNSET_OPEN, start + 1, end) >= 0:
            return None                               # nested sets: leave it to expat
        spans.append((start, end))
        pos = end


def _split(data: bytes, path, cut_annotations: bool, blocks: bool = True) -> "_Split | None":
    """Cut sample text and annotation sets out of an aECG document.

    Nine tenths of an aECG file is sample text and most of the rest is the
    annotation tree; tokenising them in expat (and building Elements for
    every annotation) is where a plain parse spends its time. Here the plain
    ``<digits>`` texts are located with ``bytes.find`` and replaced by
    ``<digits ecgcore_ref="k"/>`` (the scanner that reads them rejects
    anything but numbers, and then the general path takes over), and each
    ``<annotationSet>`` element by ``<annotationSet ecgcore_ann="k"/>``. The
    cut sets are checked for well-formedness with expat right here (no tree,
    no handlers: cheap), so a broken file still fails at read time, and are
    turned into Elements only when the annotations are first used.

    Lead ``<sequence>`` elements that match ``_SEQ_HEAD``/``_SEQ_TAIL``
    (the usual code, value, origin, scale, digits shape; well-formed by how
    the pattern is spelled) are cut whole, as ``<sequence ecgcore_seq="k"/>``,
    and read from their bytes: expat and the tree builder then see only the
    document's small remainder. ``blocks=False`` keeps them in (the skeleton
    whose parse errors are reported, so messages do not depend on this).

    Only for encodings where ASCII bytes are themselves, and only when no
    namespace is declared below the root (a cut set is parsed inside a copy
    of the root start tag, so it must see the same declarations). Returns
    None when the document does not qualify; the caller then parses it whole.
    """
    try:
        enc, bom = detect_encoding(data)
    except LookupError:
        return None
    if enc not in _BYTE_SAFE or (bom and enc != "utf-8"):
        return None
    # the root start tag: after the declaration, PIs and comments; a DOCTYPE
    # (which could default attributes) sends the document down the plain path
    pos = bom
    while True:
        lt = data.find(b"<", pos)
        if lt < 0:
            return None
        if data.startswith(b"<?", lt):
            end = data.find(b"?>", lt)
            pos = end + 2
        elif data.startswith(b"<!--", lt):
            end = data.find(b"-->", lt)
            pos = end + 3
        else:
            break
        if end < 0:
            return None
    m = _ROOT_OPEN.match(data, lt)
    if m is None or m.group(0).endswith(b"/>"):
        return None
    root_end = m.end()
    ann = None
    # no namespace declared below the root: cut parts see the root's bindings
    ns_flat = _bfind(data, b"xmlns", root_end) < 0
    if cut_annotations and ns_flat:
        ann = _ann_spans(data, root_end)
    ann = ann or []
    root_open = m.group(0)
    root_name = m.group(1)
    blocks = blocks and ns_flat and b"xsi:" in root_open and _xsi_bound(root_open, enc)
    # digits outside the cut annotation sets
    digits: list = []
    lo = root_end
    for a, b in ann:
        _digit_spans(data, lo, a, digits)
        lo = b
    _digit_spans(data, lo, len(data), digits)
    cuts = [(a, b, 1, None) for a, b in ann]
    lo = root_end
    for s, a, b, e in digits:
        x = _ints_at(data, a, b) if _ints_at is not None else None
        if x is None:
            if data[a:b].translate(None, _NUMERIC_BYTES):
                lo = e
                continue        # markup, references or junk: leave it to expat
            x = data[a:b]       # decimals: numpy's tokenizer reads them
        elif blocks:
            # the whole lead <sequence> around these digits, when it is plain
            # (the match holds no '<' but its own tags, so no other cut
            # starts inside it; it starts after the previous digits)
            q = data.rfind(_SEQ_OPEN, lo, s)
            hm = _SEQ_HEAD.fullmatch(data, q, a) if q >= 0 else None
            tm = _SEQ_TAIL.match(data, e) if hm is not None else None
            if tm is not None:
                c, ov, ou, sv, su = hm.groups()
                if c and not c.startswith(b"TIME_"):
                    cuts.append((q, tm.end(), 2, (c, ov, ou, sv, su, x)))
                    lo = tm.end()
                    continue
        cuts.append((s, e, 0, x))
        lo = e
    if not cuts:
        return None
    cuts.sort(key=lambda c: c[0])
    pieces, blobs, spans, seqs = [], [], [], []
    last = bom
    for s, e, kind, x in cuts:
        pieces.append(data[last:s])
        if kind == 0:
            pieces.append(b'<digits ecgcore_ref="%d"/>' % len(blobs))
            blobs.append(x)
        elif kind == 2:
            pieces.append(b'<sequence ecgcore_seq="%d"/>' % len(seqs))
            seqs.append(x)
        else:
            pieces.append(b'<annotationSet ecgcore_ann="%d"/>' % len(spans))
            spans.append(data[s:e])
        last = e
    pieces.append(data[last:])
    if spans:
        # well-formed as a whole, in the document's encoding and namespaces
        p = pyexpat.ParserCreate(enc, "}")
        try:
            p.Parse(root_open, False)
            for sp in spans:
                p.Parse(sp, False)
            p.Parse(b"</" + root_name + b">", True)
        except pyexpat.ExpatError:
            return None                              # the plain parse reports it
    return _Split(b"".join(pieces), blobs, spans, seqs, root_open, root_name, enc)


def _parse_skeleton(skeleton: bytes) -> ET.Element:
    """The skeleton's tree: :func:`parse_xml` less the checks already made.

    The entity guard ran on the whole document, and the skeleton is the
    document's own bytes (minus number text and whole elements) in an
    encoding expat reads natively, so it goes to expat as is. Returns None
    on a parse error; the caller then has :func:`parse_xml` report it.
    """
    parser = ET.XMLParser()
    try:
        parser.feed(skeleton)
        return parser.close()
    except ET.ParseError:
        return None


def _parse_ann_sets(spans, root_open, root_name, encoding, path) -> list:
    """Elements of the cut annotation sets (validated in :func:`_split`)."""
    parser = ET.XMLParser(encoding=encoding)
    parser.feed(root_open)
    for sp in spans:
        parser.feed(sp)
    parser.feed(b"</" + root_name + b">")
    try:
        return list(parser.close())
    except ET.ParseError as exc:  # pragma: no cover - validated before
        raise ReadError(f"malformed annotation set ({exc})", path) from None


def _code(el) -> str | None:
    c = el.find(NS + "code")
    return None if c is None else c.get("code")


def _time_axis(seq, path) -> tuple[float, float | None, str]:
    """(fs, head in seconds or None, kind) from a TIME_ABSOLUTE/TIME_RELATIVE sequence."""
    val = seq.find(NS + "value")
    kind = _code(seq) or ""
    if val is None:
        raise ReadError(f"{kind} time sequence has no value", path)
    inc = val.find(NS + "increment")
    if inc is None:
        raise ReadError(f"{kind} time sequence has no increment (explicit time lists are not "
                        "supported)", path)
    step = _float(inc.get("value"), "time increment", path)
    unit = (inc.get("unit") or "s").strip().lower()
    if unit not in _TO_S:
        raise ReadError(f"time increment unit {unit!r} is not a time unit", path)
    step *= _TO_S[unit]
    if step <= 0:
        raise ReadError(f"time increment must be positive, got {step} s", path)
    head_el = val.find(NS + "head")
    head = None
    if head_el is not None:
        hv = head_el.get("value")
        if kind == "TIME_ABSOLUTE":
            head = _ts_seconds(hv)
        elif hv is not None:
            try:
                head = float(hv) * _TO_S.get((head_el.get("unit") or "s").lower(), 1.0)
            except ValueError:
                head = None
    return 1.0 / step, head, kind


_VALUE, _ORIGIN, _SCALE, _DIGITS = NS + "value", NS + "origin", NS + "scale", NS + "digits"
_COMPONENT, _SEQUENCE, _SEQUENCE_SET = NS + "component", NS + "sequence", NS + "sequenceSet"
# (origin unit, scale unit) as written -> mV factors; a file repeats one pair
_UNIT_PAIRS: dict = {}


def _number(s, what, name, path) -> float:
    """float(s), finite; ``what`` of lead ``name`` is named only when it is not."""
    try:
        v = float(s)
    except (TypeError, ValueError):
        v = None
    if v is None or v - v != 0.0:           # not a number, or inf/nan
        _float(s, f"lead {name} {what}", path)   # raises the usual message
    return v


def _lead_sequence(seq, path, blobs=(), code=False):
    """(name, physical mV samples, gain) of one SLIST_PQ lead sequence, or None if not a lead.

    ``code``: the sequence's code when the caller has already looked it up.
    """
    if code is False:
        code = _code(seq)
    name = lead_name_from_code(code)
    if name is None:
        if code is None or code.startswith("TIME_"):
            return None
        name = normalize_lead(code)     # keep unknown sequences under their own code
    val = seq.find(_VALUE)
    if val is None:
        raise ReadError(f"lead {name}: sequence has no value", path)
    origin_el, scale_el = val.find(_ORIGIN), val.find(_SCALE)
    d_el = val.find(_DIGITS)
    ref = d_el.get("ecgcore_ref") if d_el is not None else None
    blob = blobs[int(ref)] if ref is not None and ref.isdigit() and int(ref) < len(blobs) else None
    if isinstance(blob, np.ndarray):
        digits = blob                     # already read by the byte scanner
    else:
        digits = blob.decode("ascii") if blob is not None else (d_el.text if d_el is not None else None)
    return _lead_values(name, None if origin_el is None else origin_el.attrib,
                        None if scale_el is None else scale_el.attrib, digits, path)


# bytes of a cut lead's code -> lead name, and its (origin, unit, scale, unit)
# bytes -> (origin in mV, gain); a file repeats a dozen codes and one scale
_CUT_NAMES: dict = {}
_CUT_GAINS: dict = {}


def _cut_lead(info, path):
    """:func:`_lead_sequence` of a lead ``<sequence>`` cut out by :func:`_split`."""
    code, ov, ou, sv, su, digits = info
    name = _CUT_NAMES.get(code)
    if name is None:
        c = code.decode("ascii")
        name = lead_name_from_code(c)
        if name is None:
            name = normalize_lead(c)    # keep unknown sequences under their own code
        if len(_CUT_NAMES) < 1024:
            _CUT_NAMES[code] = name
    key = (ov, ou, sv, su)
    hit = _CUT_GAINS.get(key)
    if hit is None:
        # decoded and checked as for a parsed sequence (errors name the lead)
        hit = _lead_gain(name, _cut_attrs(ov, ou), _cut_attrs(sv, su), path)
        if len(_CUT_GAINS) < 1024:
            _CUT_GAINS[key] = hit
    return name, _to_mv(digits, *hit), hit[1]


def _cut_attrs(value, unit):
    """The attributes of a cut ``origin``/``scale`` element as a parsed one has them
    (None: the element is absent)."""
    if value is None:
        return None
    at = {"value": value.decode("ascii")}
    if unit is not None:
        at["unit"] = unit.decode("ascii")
    return at


def _to_mv(digits, offset, gain):
    """origin + digits x scale in mV with one new array (IEEE addition commutes, so
    the bits are those of the two-temporary expression)."""
    x = digits * gain
    x += offset
    return x


def _lead_gain(name, o_at, s_at, path):
    """(origin in mV, mV per digit) from origin/scale attributes (None: element absent)."""
    if o_at is None:
        origin, o_unit = 0.0, None
    else:
        origin, o_unit = _number(o_at.get("value", "0"), "origin", name, path), o_at.get("unit")
    if s_at is None:
        scale, s_unit = 1.0, None
    else:
        scale, s_unit = _number(s_at.get("value", "1"), "scale", name, path), s_at.get("unit")
    key = (o_unit, s_unit)
    factors = _UNIT_PAIRS.get(key)
    if factors is None:
        o_unit = o_unit or s_unit or "uV"
        s_unit = s_unit or o_unit
        try:
            factors = _TO_MV[o_unit.strip().lower()], _TO_MV[s_unit.strip().lower()]
        except KeyError:
            raise ReadError(f"lead {name}: unit {o_unit!r}/{s_unit!r} is not a voltage", path) from None
        if len(_UNIT_PAIRS) < 256:
            _UNIT_PAIRS[key] = factors
    f_o, f_s = factors
    return origin * f_o, scale * f_s


def _lead_values(name, o_at, s_at, digits, path):
    """(name, origin + digits x scale in mV, gain) from origin/scale attributes.

    ``o_at``/``s_at``: the attributes of ``origin``/``scale`` (None when the
    element is absent); ``digits``: the samples, or their text (None: none) to parse.
    """
    offset, gain = _lead_gain(name, o_at, s_at, path)
    if not isinstance(digits, np.ndarray):
        digits = _parse_digits(digits, f"lead {name}", path)
    return name, _to_mv(digits, offset, gain), gain


def _read_series(series, path, blobs=(), seqs=()):
    """Signal (n_leads, n) in mV, fs, leads, t0 and notes of one series."""
    sets = [st for comp in series if comp.tag == _COMPONENT
            for st in comp if st.tag == _SEQUENCE_SET]
    if not sets:
        raise ReadError(f"series {_code(series)} has no sequenceSet", path)
    fs = None
    t0 = None
    parts = []      # (head seconds or None, {lead: samples})
    notes = {}
    skipped = 0
    for sset in sets:
        time_ax = None
        leads = {}
        scales = {}
        for seq in [sq for comp in sset if comp.tag == _COMPONENT
                    for sq in comp if sq.tag == _SEQUENCE]:
            ref = seq.get("ecgcore_seq")
            if ref is not None and ref.isdigit() and int(ref) < len(seqs):
                got = _cut_lead(seqs[int(ref)], path)
                leads[got[0]] = got[1]
                scales[got[0]] = got[2]
                continue
            raw_code = _code(seq)
            code = raw_code or ""
            if code.startswith("TIME_"):
                time_ax = _time_axis(seq, path)
                continue
            got = _lead_sequence(seq, path, blobs, raw_code)
            if got is not None:
                leads[got[0]] = got[1]
                scales[got[0]] = got[2]
        if not leads:
            continue
        if time_ax is None:
            raise ReadError(f"series {_code(series)}: a sequenceSet has no time sequence", path)
        set_fs, head, _ = time_ax
        if fs is None:
            fs = set_fs
            notes["time_axis"] = time_ax[2]
        elif abs(set_fs - fs) > 1e-6 * fs:
            skipped += 1   # one Record has one rate; keep the first set's rate
            continue
        parts.append((head, leads))
        notes.setdefault("scale_mv", {}).update(scales)
    if not parts:
        raise ReadError(f"series {_code(series)} holds no lead sequences", path)
    if skipped:
        notes["skipped_sequence_sets"] = skipped
    heads = [h for h, _ in parts if h is not None]
    t0 = min(heads) if heads else None
    # Several sets (lead groups recorded at different times) go on one time
    # base: each at its own offset from the earliest head; gaps are NaN.
    names: list[str] = []
    placed = []
    n_total = 0
    for head, leads in parts:
        off = 0 if (head is None or t0 is None) else int(round((head - t0) * fs))
        if off < 0 or off > 10_000_000:
            raise ReadError(f"sequenceSet time offset {off} samples is implausible", path)
        for name, x in leads.items():
            if name not in names:
                names.append(name)
            placed.append((name, off, x))
            n_total = max(n_total, off + len(x))
    if len(parts) == 1 and len({len(x) for _, _, x in placed}) == 1:
        sig = np.stack([x for _, _, x in placed])
    else:
        sig = np.full((len(names), n_total), np.nan)
        for name, off, x in placed:
            row = sig[names.index(name)]
            seg = row[off:off + len(x)]
            # a lead repeated in several sets fills its own gaps only
            np.copyto(seg, x, where=np.isnan(seg))
    return sig, fs, names, t0, notes


def _annotations(series, series_code, t0, path, cut_sets=()):
    """Flatten the annotation tree of a series into column lists.

    ``cut_sets`` holds the Elements of annotation sets cut out before parsing
    (:func:`_split`); a marker ``annotationSet`` in the tree points into it.
    """
    cols = {k: [] for k in ("series", "code", "value", "unit", "display", "parent",
                            "lead", "onset_s", "offset_s")}

    day_cache = {}

    def bound(el, t_ref):
        v = el.get("value")
        if v is None:
            return np.nan
        if len(v) >= 14 and v[:14].isdigit() and (len(v) == 14 or v[14] == "."):
            # plain YYYYMMDDHHMMSS[.fff]: the date part repeats, so cache its seconds
            day = day_cache.get(v[:8])
            if day is None:
                day = day_cache[v[:8]] = _ts_seconds(v[:8])
            if day is None or t_ref is None:
                return np.nan
            try:
                tod = int(v[8:10]) * 3600 + int(v[10:12]) * 60 + float(v[12:])
            except ValueError:
                return np.nan
            return round(day + tod - t_ref, 6)
        if len(v) >= 14 and "." in v or (v.isdigit() and len(v) >= 8):
            s = _ts_seconds(v)
            # rounded to 1 µs: the epoch offset costs float64 its last digits
            return np.nan if s is None or t_ref is None else round(s - t_ref, 6)
        try:
            return float(v) * _TO_S.get((el.get("unit") or "s").lower(), 1.0)
        except ValueError:
            return np.nan

    comp_tag, ann_tag = NS + "component", NS + "annotation"

    def children(node):
        for comp in node:
            if comp.tag == comp_tag:
                for ann in comp:
                    if ann.tag == ann_tag:
                        yield ann

    def walk(node, parent):
        for ann in children(node):
            idx = len(cols["code"])
            code = _code(ann)
            val = ann.find(NS + "value")
            value = unit = display = None
            if val is not None:
                typ = val.get(_XSI_TYPE, "")
                if typ.endswith("CE") or val.get("code") is not None:
                    value, display = val.get("code"), val.get("displayName")
                elif val.get("value") is not None:
                    try:
                        value = float(val.get("value"))
                    except ValueError:
                        value = val.get("value")
                    unit = val.get("unit")
                elif val.text and val.text.strip():
                    value = val.text.strip()
            onset = offset = np.nan
            lead = None
            roi = ann.find(f"{NS}support/{NS}supportingROI")
            if roi is not None:
                for b in roi.iterfind(f"{NS}component/{NS}boundary"):
                    bcode = _code(b) or ""
                    bv = b.find(NS + "value")
                    if bcode.startswith("TIME_") and bv is not None:
                        lo, hi = bv.find(NS + "low"), bv.find(NS + "high")
                        if lo is not None:
                            onset = bound(lo, t0)
                        if hi is not None:
                            offset = bound(hi, t0)
                    else:
                        lead = lead_name_from_code(bcode) or lead
            for k, v in (("series", series_code), ("code", code), ("value", value),
                         ("unit", unit), ("display", display), ("parent", parent),
                         ("lead", lead), ("onset_s", onset), ("offset_s", offset)):
                cols[k].append(v)
            walk(ann, idx)

    for aset in series.iterfind(f"{NS}subjectOf/{NS}annotationSet"):
        ref = aset.get("ecgcore_ann")
        if ref is not None and ref.isdigit() and int(ref) < len(cut_sets):
            aset = cut_sets[int(ref)]
        walk(aset, -1)
    return cols


def _control_filters(series) -> dict:
    out = {}
    names = {"MDC_ECG_CTL_VBL_ATTR_FILTER_LOW_PASS": "low_pass",
             "MDC_ECG_CTL_VBL_ATTR_FILTER_HIGH_PASS": "high_pass",
             "MDC_ECG_CTL_VBL_ATTR_FILTER_NOTCH": "notch"}
    for cv in series.iterfind(f"{NS}controlVariable/{NS}controlVariable"):
        key = names.get(_code(cv) or "")
        if key is None:
            continue
        for sub in cv.iterfind(f"{NS}component/{NS}controlVariable"):
            scode = _code(sub) or ""
            val = sub.find(NS + "value")
            if val is None:
                continue
            if scode.endswith("_FREQ") and val.get("value") is not None:
                try:
                    out[f"{key}_hz"] = float(val.get("value"))
                except ValueError:
                    pass
            elif scode.endswith("_DESCRIPTION") and val.text:
                out[f"{key}_type"] = val.text.strip()
    return out


def _demographics(root) -> dict:
    person = root.find(f".//{NS}trialSubject/{NS}subjectDemographicPerson")
    subj = root.find(f".//{NS}trialSubject")
    out = {}
    if subj is not None:
        sid = subj.find(NS + "id")
        if sid is not None and sid.get("extension"):
            out["id"] = sid.get("extension")
    if person is not None:
        name = person.findtext(NS + "name")
        if name and name.strip():
            out["name"] = name.strip()
        g = person.find(NS + "administrativeGenderCode")
        if g is not None and g.get("code"):
            out["sex"] = g.get("code")
        b = person.find(NS + "birthTime")
        if b is not None and b.get("value"):
            out["birth_date"] = b.get("value")
    return out


def _device(series) -> dict:
    dev = series.find(f"{NS}author/{NS}seriesAuthor")
    if dev is None:
        return {}
    out = {}
    for key, p in (("model", f"{NS}manufacturedSeriesDevice/{NS}manufacturerModelName"),
                   ("software", f"{NS}manufacturedSeriesDevice/{NS}softwareName"),
                   ("manufacturer", f"{NS}manufacturerOrganization/{NS}name")):
        v = dev.findtext(p)
        if v and v.strip():
            out[key] = v.strip()
    return out


class _Once:
    """Runs a loader on first call and keeps its result (shared by lazy views)."""

    __slots__ = ("_fn", "_value")

    def __init__(self, fn):
        self._fn, self._value = fn, None

    def __call__(self):
        if self._fn is not None:
            self._value = self._fn()
            self._fn = None          # drop the parse inputs once used
        return self._value


class LazyDict(MutableMapping):
    """A dict computed on first use (annotation columns, measurements).

    Behaves as a mutable mapping; compares equal to the dict it stands for,
    and pickles and copies as that plain dict.
    """

    __slots__ = ("_once", "_key")

    def __init__(self, once: _Once, key: int):
        self._once, self._key = once, key

    def _d(self) -> dict:
        return self._once()[self._key]

    def __getitem__(self, k):
        return self._d()[k]

    def __setitem__(self, k, v):
        self._d()[k] = v

    def __delitem__(self, k):
        del self._d()[k]

    def __iter__(self):
        return iter(self._d())

    def __len__(self):
        return len(self._d())

    def __contains__(self, k):
        return k in self._d()

    def __repr__(self):
        return repr(self._d())

    def __reduce__(self):
        return dict, (dict(self._d()),)


class LazyList(MutableSequence):
    """A list computed on first use (statements); pickles and copies as a list."""

    __slots__ = ("_once", "_key")

    def __init__(self, once: _Once, key: int):
        self._once, self._key = once, key

    def _l(self) -> list:
        return self._once()[self._key]

    def __getitem__(self, i):
        return self._l()[i]

    def __setitem__(self, i, v):
        self._l()[i] = v

    def __delitem__(self, i):
        del self._l()[i]

    def __len__(self):
        return len(self._l())

    def insert(self, i, v):
        self._l().insert(i, v)

    def __eq__(self, other):
        return self._l() == (list(other) if isinstance(other, (list, LazyList)) else other)

    def __repr__(self):
        return repr(self._l())

    def __reduce__(self):
        return list, (list(self._l()),)


def _summarise(ann: dict) -> tuple:
    """(columns, measurements, statements) of flattened annotations."""
    if not ann["code"]:
        return {}, {}, []
    cols = {k: (np.asarray(v, np.float64) if k in ("onset_s", "offset_s")
                else np.asarray(v, np.int64) if k == "parent" else v)
            for k, v in ann.items()}
    meas, stmts = {}, []
    # global numbers: prefer those not attached to a single beat, and the
    # representative-beat set over the rhythm set
    order = sorted(range(len(ann["code"])),
                   key=lambda i: (ann["series"][i] != "REPRESENTATIVE_BEAT",
                                  ann["parent"][i] >= 0))
    for i in order:
        code, val = ann["code"][i], ann["value"][i]
        if isinstance(val, float) and code and code not in meas:
            meas[code] = {"value": val, "unit": ann["unit"][i]}
        elif ann["display"][i] and ann["parent"][i] < 0 and code not in ("MDC_ECG_BEAT",
                                                                            "MDC_ECG_WAVC"):
            st = ann["display"][i]
            if st not in stmts:
                stmts.append(st)
    return cols, meas, stmts


def _markers_in_place(root, split: _Split) -> bool:
    """Every cut-out part left exactly one marker element in the parsed skeleton.

    A tag name inside a comment or CDATA section is found by the byte search
    but is not an element; its marker then vanishes from the tree, and the
    document must be parsed whole instead.
    """
    if split.ann_spans:
        n = sum(1 for a in root.iter(NS + "annotationSet") if a.get("ecgcore_ann") is not None)
        if n != len(split.ann_spans):
            return False
    if split.blobs:
        n = sum(1 for d in root.iter(NS + "digits") if d.get("ecgcore_ref") is not None)
        if n != len(split.blobs):
            return False
    if split.seqs:
        n = sum(1 for d in root.iter(_SEQUENCE) if d.get("ecgcore_seq") is not None)
        if n != len(split.seqs):
            return False
    return True


def read(path: "str | os.PathLike", annotations: "bool | str" = "lazy", **kwargs) -> Record:
    """Read an HL7 v3 aECG file.

    Parameters
    ----------
    path : str or path-like
    annotations : {"lazy", True, False}
        ``"lazy"`` (default): the annotation sets are checked for
        well-formedness while reading, but turned into columns only when
        ``annotations["aecg"]``, ``meta["measurements"]`` or
        ``meta["statements"]`` is first used (``LazyDict``/``LazyList``:
        mappings and lists that pickle and compare as plain ones). They are
        most of an aECG file's markup, so this halves the read time when they
        are not needed. True: decode them now, as plain dicts and lists.
        False: skip them (the file is still checked whole).

    Returns
    -------
    Record
        The ``RHYTHM`` series in mV, leads mapped from their MDC codes;
        ``median`` holds the ``REPRESENTATIVE_BEAT`` series when present (its
        own fs). ``annotations["aecg"]`` holds every annotation as columns
        (series, code, value, unit, display, parent index, lead, onset_s,
        offset_s relative to the series start). ``meta`` carries device,
        filters, patient, measurements (PQ annotations) and statements.

    Raises
    ------
    ReadError
        Malformed or hostile XML, no rhythm series, bad numbers or units.

    References
    ----------
    HL7 Version 3 Standard: Regulated Studies - Annotated ECG, Release 1 (2004).
    """
    path = os.fspath(path)
    if annotations not in (True, False, "lazy"):
        raise ConfigError(f"annotations must be True, False or 'lazy', got {annotations!r}")
    data = read_bytes(path)
    # hostile documents are refused before any byte is scanned or parsed; the
    # UTF-16 spellings of <!ENTITY contain NUL bytes, so one memchr rules them
    # out and the full three-pattern check runs only when it could matter
    if b"\x00" in data or _bfind(data, b"<!ENTITY") >= 0:
        _refuse_entities(data, path)
    split = _split(data, path, cut_annotations=annotations is not True)
    root = None
    if split is not None:
        root = _parse_skeleton(split.skeleton)
        if root is None:
            # a parse error: reported on the skeleton without whole lead
            # sequences cut, so the message (line, column) is the usual one
            split = _split(data, path, cut_annotations=annotations is not True, blocks=False)
            root = parse_xml(split.skeleton if split is not None else data, path=path)
        if split is not None and not _markers_in_place(root, split):
            root, split = None, None
    if root is None:
        root = parse_xml(data, path=path)
    blobs = split.blobs if split is not None else ()
    seqs = split.seqs if split is not None else ()
    if root.tag != NS + "AnnotatedECG":
        raise ReadError(f"root element is {root.tag!r}, not an HL7 aECG AnnotatedECG", path)
    rhythm = None
    median_series = None
    n_rhythm = 0
    for series in root.iterfind(f"{NS}component/{NS}series"):
        code = _code(series)
        if code == "RHYTHM" or (code is None and rhythm is None):
            n_rhythm += 1
            if rhythm is None:
                rhythm = series
        if median_series is None:
            for ds in series.iterfind(f"{NS}derivation/{NS}derivedSeries"):
                if _code(ds) == "REPRESENTATIVE_BEAT":
                    median_series = ds
                    break
    if rhythm is None:
        raise ReadError("no RHYTHM series in the aECG file", path)
    sig, fs, names, t0, notes = _read_series(rhythm, path, blobs, seqs)
    meta = {"format": "hl7_aecg", "device": _device(rhythm), "filters": _control_filters(rhythm),
            "patient": _demographics(root), "time_axis": notes.get("time_axis"),
            "scale_mv": notes.get("scale_mv", {})}
    if t0 is not None and notes.get("time_axis") == "TIME_ABSOLUTE":
        meta["acquisition_time"] = (_dt.datetime(1970, 1, 1) + _dt.timedelta(seconds=t0)).isoformat()
    if n_rhythm > 1:
        meta["extra_rhythm_series"] = n_rhythm - 1
    if "skipped_sequence_sets" in notes:
        meta["skipped_sequence_sets"] = notes["skipped_sequence_sets"]

    median = None
    mt0 = None
    if median_series is not None:
        msig, mfs, mnames, mt0, mnotes = _read_series(median_series, path, blobs, seqs)
        median = Record(msig, mfs, mnames, meta={"format": "hl7_aecg", "kind": "median",
                                                 "scale_mv": mnotes.get("scale_mv", {})},
                        source=path)

    # the loader keeps only the cut annotation bytes, not the samples
    cut = (split.ann_spans, split.root_open, split.root_name, split.encoding) \
        if split is not None and split.ann_spans else None
    del split

    def load():
        cut_sets = _parse_ann_sets(*cut, path) if cut is not None else ()
        ann = _annotations(rhythm, "RHYTHM", t0, path, cut_sets)
        if median_series is not None:
            mann = _annotations(median_series, "REPRESENTATIVE_BEAT", mt0, path, cut_sets)
            base = len(ann["code"])
            for k, v in mann.items():
                if k == "parent":
                    v = [p + base if p >= 0 else p for p in v]
                ann[k].extend(v)
        return _summarise(ann)

    ann_out = {}
    if annotations == "lazy" and cut is not None:
        # presence from the bytes; the columns themselves wait for first use
        if any(_HAS_ANNOTATION.search(sp) for sp in cut[0]):
            once = _Once(load)
            ann_out["aecg"] = LazyDict(once, 0)
            meta["measurements"] = LazyDict(once, 1)
            meta["statements"] = LazyList(once, 2)
    elif annotations:
        cols, meas, stmts = load()
        if cols:
            ann_out["aecg"] = cols
            meta["measurements"] = meas
            meta["statements"] = stmts
    return Record(sig, fs, names, meta=meta, median=median, source=path, annotations=ann_out)


read_hl7_aecg = read
