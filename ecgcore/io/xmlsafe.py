"""A safe XML front end shared by every XML reader (MUSE, CardioSoft, Philips, HL7 aECG).

ECG XML arrives from hospital systems we do not control, so parsing must be
safe against hostile input and tolerant of the encodings vendors use
(facts/formats.md §0):

* The file is read as **bytes** and its encoding decided from the byte-order
  mark, the UTF-16 byte pattern of ``<?`` or the XML declaration (MUSE and
  CardioSoft declare ISO-8859-1, Philips 1.04 is UTF-16LE with a BOM).
* **No entity is ever declared or expanded.** Any ``<!ENTITY`` in the document
  is refused before the parser sees it, so billion-laughs and external-entity
  (XXE) documents fail fast with :class:`~ecgcore.errors.ReadError`. A plain
  ``<!DOCTYPE RestingECG SYSTEM "restecg.dtd">`` (what MUSE writes) is accepted
  and never fetched: the stdlib expat tree builder does not load external DTDs.
* Malformed XML, bytes that are not valid in the declared encoding and empty
  or truncated files raise ``ReadError`` naming the file, the problem and the
  line/column expat reported.
* ``recover=True`` retries once after escaping a bare ``&`` or ``<`` in text
  (MUSE free-text statements are known to contain them) and reports that it did.

The parser is the C-accelerated :mod:`xml.etree.ElementTree` (expat), which is
the fastest tree builder in the standard library.

Examples
--------
>>> from ecgcore.io.xmlsafe import parse_xml, localname
>>> root = parse_xml(b"<RestingECG><MuseInfo/></RestingECG>", path="mem.xml")
>>> localname(root.tag)
'RestingECG'
"""

from __future__ import annotations

import codecs
import os
import re
import xml.etree.ElementTree as ET
from typing import Iterator, NamedTuple

from ..errors import ReadError

__all__ = ["parse_xml", "parse_document", "iterparse_xml", "read_bytes", "detect_encoding",
           "XMLDocument", "localname", "strip_namespaces", "child_text", "MAX_XML_BYTES"]

#: Refuse XML files larger than this (bytes); a 12-lead resting ECG is < 1 MB.
MAX_XML_BYTES = 256 * 1024 * 1024

# Encodings expat decodes natively from bytes (names as codecs.lookup() spells them).
_EXPAT_NATIVE = {"utf-8", "iso8859-1", "ascii"}
_DECL_RE = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_ENTITY_PATTERNS = tuple({enc: "<!ENTITY".encode(enc) for enc in
                          ("ascii", "utf-16-le", "utf-16-be")}.items())
# A bare '&' not starting a character or predefined/named reference.
_BARE_AMP = re.compile(r"&(?!(?:#[0-9]+|#x[0-9A-Fa-f]+|[A-Za-z_][\w.-]*);)")
# A '<' that cannot start markup (tag, end tag, comment, PI, CDATA).
_BARE_LT = re.compile(r"<(?![A-Za-z_/!?])")


class XMLDocument(NamedTuple):
    """Result of :func:`parse_document`.

    Attributes
    ----------
    root : xml.etree.ElementTree.Element
    encoding : str
        The encoding the bytes were decoded with (codec name).
    recovered : bool
        True when the document was only readable after escaping bare ``&``/``<``.
    """

    root: ET.Element
    encoding: str
    recovered: bool


def read_bytes(path: "str | os.PathLike", max_bytes: int = MAX_XML_BYTES) -> bytes:
    """Read a whole file as bytes, raising ReadError for missing, empty or huge files."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise ReadError(f"XML file of {size} bytes exceeds the {max_bytes}-byte limit", path)
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ReadError(f"cannot open: {exc.strerror or exc}", path) from None
    if not data.strip():
        raise ReadError("empty file", path)
    return data


def detect_encoding(data: bytes) -> tuple[str, int]:
    """Return ``(codec_name, bom_length)`` for an XML byte string.

    Order of evidence (XML 1.0 Appendix F): byte-order mark, the UTF-16 byte
    pattern of ``<?``, then the ``encoding`` pseudo-attribute of the XML
    declaration; UTF-8 when there is none. The returned name is normalised by
    :func:`codecs.lookup` (``"ISO8859-1"`` -> ``"iso8859-1"``).

    Raises
    ------
    LookupError
        The declared encoding is unknown to Python.
    """
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    if data.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", 2
    if data.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", 2
    if data.startswith(b"<\x00?\x00") or data.startswith(b"<\x00"):
        return "utf-16-le", 0
    if data.startswith(b"\x00<\x00?") or data.startswith(b"\x00<"):
        return "utf-16-be", 0
    m = _DECL_RE.match(data[:512])
    if m is None:
        return "utf-8", 0
    name = m.group(1).decode("ascii")
    return codecs.lookup(name).name, 0


def _refuse_entities(data: bytes, path) -> None:
    # Entities can only be declared in a DOCTYPE internal subset; refusing the
    # keyword anywhere is a single memchr-speed scan and leaves nothing to expand.
    for enc, pat in _ENTITY_PATTERNS:
        if pat in data:
            raise ReadError("XML declares entities (<!ENTITY ...>); refused: entity "
                            "expansion is never performed (billion-laughs / external-entity guard)",
                            path)


def _to_parser_input(data: bytes, path) -> tuple["bytes | str", str]:
    """Bytes expat can take directly, or a decoded str (expat then parses UTF-8)."""
    try:
        enc, bom = detect_encoding(data)
    except LookupError as exc:
        raise ReadError(f"XML declares an unknown encoding ({exc})", path) from None
    if enc in _EXPAT_NATIVE and bom == 0:
        return data, enc
    if enc == "utf-8":
        return data[bom:], enc
    try:
        text = data[bom:].decode(enc)
    except UnicodeDecodeError as exc:
        raise ReadError(f"bytes are not valid {enc} at offset {exc.start + bom} "
                        f"({exc.reason})", path) from None
    # The declaration still names the original encoding; expat would try to
    # re-decode the (now UTF-8) text with it, so drop it.
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1)
    return text, enc


def _explain(exc: ET.ParseError, data: bytes, enc: str) -> str:
    msg = str(exc)
    if "invalid token" in msg and enc == "utf-8":
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return (f"malformed XML: bytes are not valid UTF-8 at offset {uexc.start} "
                    f"({msg})")
    if "no element found" in msg or "unclosed token" in msg:
        return f"malformed or truncated XML ({msg})"
    return f"malformed XML ({msg})"


def _parse(src: "bytes | str") -> ET.Element:
    parser = ET.XMLParser()
    parser.feed(src)
    return parser.close()


def _repair(src: "bytes | str") -> "bytes | str":
    """Escape bare ``&`` and ``<`` (recovering fallback for vendor free text)."""
    if isinstance(src, bytes):
        # latin-1 maps bytes 1:1, so the repair is byte-exact for any
        # ASCII-compatible encoding expat reads natively.
        text = src.decode("latin-1")
        return _BARE_LT.sub("&lt;", _BARE_AMP.sub("&amp;", text)).encode("latin-1")
    return _BARE_LT.sub("&lt;", _BARE_AMP.sub("&amp;", src))


# Bytes a bulk payload may hold: printable ASCII and tab/newline/return.
_BULK_OK = bytes(range(0x20, 0x7F)) + b"\t\n\r"


def _split_bulk(data: bytes, tags) -> "tuple[bytes, list[bytes]] | None":
    """Cut the text of bulk elements out of a document, leaving numbered stubs.

    ECG XML is mostly a few huge text nodes (base64 or comma-separated
    samples). Expat delivers each wrapped line of them through the tree
    builder, which is most of the parse time; locating them with
    ``bytes.find`` and parsing only the small skeleton is several times
    faster. Only plain printable-ASCII text qualifies (no ``<``, ``&``,
    control or non-ASCII bytes), so the text is exactly what expat would have
    produced (apart from ``\r\n`` line ends, which no reader keeps). Anything
    unusual returns None and the caller parses the whole document.
    """
    spans = []
    for tag in tags:
        btag = tag.encode("ascii")
        opener, closer = b"<" + btag, b"</" + btag + b">"
        pos = 0
        while True:
            i = data.find(opener, pos)
            if i < 0:
                break
            after = data[i + len(opener):i + len(opener) + 1]
            if after not in (b">", b" ", b"\t", b"\n", b"\r"):
                pos = i + len(opener)
                continue
            gt = data.find(b">", i)
            if gt < 0:
                return None
            if data[gt - 1:gt] == b"/":
                pos = gt + 1
                continue
            end = data.find(closer, gt)
            if end < 0:
                return None
            spans.append((gt + 1, end))
            pos = end + len(closer)
    if not spans:
        return None
    spans.sort()
    pieces, blobs, last = [], [], 0
    for k, (a, b) in enumerate(spans):
        if a < last:
            return None                       # overlapping matches: not plain elements
        blob = data[a:b]
        # bytes.translate/`in` are C loops: far faster than a regex per payload
        if blob.translate(None, _BULK_OK) or b"<" in blob or b"&" in blob:
            return None
        pieces.append(data[last:a])
        pieces.append(b"%d" % k)
        blobs.append(blob)
        last = b
    pieces.append(data[last:])
    return b"".join(pieces), blobs


def _parse_bulk(src: bytes, tags) -> "ET.Element | None":
    split = _split_bulk(src, tags)
    if split is None:
        return None
    skeleton, blobs = split
    try:
        root = _parse(skeleton)
    except ET.ParseError:
        return None                           # the full parse reports the error
    # root.iter(tag) runs in C; namespaced documents need the slower name match.
    found = [el for tag in tags for el in root.iter(tag)]
    if len(found) != len(blobs):
        wanted = set(tags)
        found = [el for el in root.iter()
                 if isinstance(el.tag, str) and localname(el.tag) in wanted]
    seen = 0
    for el in found:
        try:
            k = int(el.text)
        except (TypeError, ValueError):
            return None
        if not 0 <= k < len(blobs) or blobs[k] is None:
            return None
        el.text = blobs[k].decode("ascii")
        blobs[k] = None
        seen += 1
    # every stub must land in exactly one element (none hidden in a comment)
    return root if seen == len(blobs) else None


def parse_document(source: "bytes | str | os.PathLike", *, path: "str | os.PathLike | None" = None,
                   recover: bool = False, max_bytes: int = MAX_XML_BYTES,
                   bulk_tags: "tuple[str, ...]" = ()) -> XMLDocument:
    """Parse an XML document safely; see :func:`parse_xml`.

    ``bulk_tags`` names elements that hold large plain-text payloads
    (``("WaveFormData",)`` for MUSE); their text is cut out before expat runs
    and put back afterwards, which makes the parse several times faster. The
    resulting tree is the same; any document where this is not exactly safe
    (markup, entities or non-ASCII bytes in a payload) is parsed normally.

    Returns
    -------
    XMLDocument
        ``(root, encoding, recovered)``.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if path is None:
            path = "<bytes>"
        if not data.strip():
            raise ReadError("empty XML document", path)
    else:
        path = os.fspath(source) if path is None else path
        data = read_bytes(source, max_bytes)
    _refuse_entities(data, path)
    src, enc = _to_parser_input(data, path)
    if bulk_tags and isinstance(src, bytes):
        root = _parse_bulk(src, bulk_tags)
        if root is not None:
            return XMLDocument(root, enc, False)
    try:
        return XMLDocument(_parse(src), enc, False)
    except ET.ParseError as exc:
        first = exc
    if recover:
        fixed = _repair(src)
        if fixed != src:
            try:
                return XMLDocument(_parse(fixed), enc, True)
            except ET.ParseError:
                pass
    raise ReadError(_explain(first, data, enc), path) from None


def parse_xml(source: "bytes | str | os.PathLike", *, path: "str | os.PathLike | None" = None,
              recover: bool = False, max_bytes: int = MAX_XML_BYTES,
              bulk_tags: "tuple[str, ...]" = ()) -> ET.Element:
    """Parse an XML file or byte string into an ElementTree root, safely.

    Parameters
    ----------
    source : path-like or bytes
        A file path, or the document's bytes (a ``str`` is taken as a path).
    path : str, optional
        The file name used in error messages (defaults to ``source`` when it is a path).
    recover : bool
        Retry once with bare ``&``/``<`` escaped when the strict parse fails.
    max_bytes : int
        Refuse larger files.
    bulk_tags : tuple of str
        Elements with large plain-text payloads to cut out before parsing
        (a speed-up only; see :func:`parse_document`).

    Returns
    -------
    xml.etree.ElementTree.Element
        The root element; namespaces stay in the tags (``{uri}name``).

    Raises
    ------
    ReadError
        Empty, unreadable, too large, malformed or truncated XML; bytes not
        valid in the declared encoding; any entity declaration.
    """
    return parse_document(source, path=path, recover=recover, max_bytes=max_bytes,
                          bulk_tags=bulk_tags).root


def iterparse_xml(source: "str | os.PathLike", events=("end",), *, chunk_size: int = 1 << 20,
                  max_bytes: int = MAX_XML_BYTES) -> Iterator[tuple[str, ET.Element]]:
    """Stream ``(event, element)`` pairs from a large XML file with the same guards.

    Like :func:`xml.etree.ElementTree.iterparse`, but the bytes are fed in
    chunks after the entity check, so memory stays bounded when the caller
    clears elements it has used (``elem.clear()``). The entity check scans each
    chunk with an overlap, so a keyword split across chunks is still found.

    Raises
    ------
    ReadError
        As :func:`parse_xml`; raised at the point of the stream where the
        problem is found.
    """
    path = os.fspath(source)
    try:
        size = os.path.getsize(path)
        fh = open(path, "rb")
    except OSError as exc:
        raise ReadError(f"cannot open: {exc.strerror or exc}", path) from None
    if size > max_bytes:
        fh.close()
        raise ReadError(f"XML file of {size} bytes exceeds the {max_bytes}-byte limit", path)
    with fh:
        first = fh.read(chunk_size)
        if not first.strip():
            raise ReadError("empty file", path)
        try:
            enc, bom = detect_encoding(first)
        except LookupError as exc:
            raise ReadError(f"XML declares an unknown encoding ({exc})", path) from None
        decoder = None
        if not (enc in _EXPAT_NATIVE and bom == 0) and enc != "utf-8":
            decoder = codecs.getincrementaldecoder(enc)()
        parser = ET.XMLPullParser(events=events)
        tail = b""
        chunk = first[bom:] if enc == "utf-8" else first
        is_first = True
        while chunk:
            _refuse_entities(tail + chunk, path)
            tail = chunk[-32:]
            try:
                if decoder is not None:
                    text = decoder.decode(chunk[bom:] if is_first else chunk)
                    if is_first:
                        text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1)
                    parser.feed(text)
                else:
                    parser.feed(chunk)
                yield from parser.read_events()
            except UnicodeDecodeError as exc:
                raise ReadError(f"bytes are not valid {enc} ({exc.reason})", path) from None
            except ET.ParseError as exc:
                raise ReadError(_explain(exc, b"", enc), path) from None
            is_first = False
            chunk = fh.read(chunk_size)
        try:
            parser.close()
            yield from parser.read_events()
        except ET.ParseError as exc:
            raise ReadError(_explain(exc, b"", enc), path) from None


def localname(tag: str) -> str:
    """Tag without its ``{namespace}`` prefix."""
    return tag.rsplit("}", 1)[-1] if tag[:1] == "{" else tag


def strip_namespaces(root: ET.Element) -> ET.Element:
    """Remove ``{namespace}`` prefixes from every tag in place; returns ``root``.

    Vendor schemas are matched by root name first; after that, plain tag
    names keep the readers' find() paths short.
    """
    for el in root.iter():
        tag = el.tag
        if isinstance(tag, str) and tag[:1] == "{":
            el.tag = tag.rsplit("}", 1)[1]
    return root


def child_text(el: "ET.Element | None", path: str, default: "str | None" = None) -> "str | None":
    """Stripped text of ``el.find(path)``, or ``default`` when absent or empty."""
    if el is None:
        return default
    node = el.find(path)
    if node is None or node.text is None:
        return default
    text = node.text.strip()
    return text if text else default
