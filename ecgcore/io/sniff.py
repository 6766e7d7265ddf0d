"""Format detection from file content (facts/formats.md §0), never from the suffix."""

from __future__ import annotations

import os
import re

from ..errors import ReadError

__all__ = ["sniff", "FORMATS", "resolve_wfdb", "xml_root", "IMAGE_MAGIC"]

FORMATS = ("wfdb", "ge_muse", "cardiosoft", "code15", "npy", "npz", "csv", "hl7_aecg",
           "philips", "dicom", "scp", "edf", "bdf", "pdf", "image")

#: Leading bytes of the raster image formats ecgcore digitises (PNG, JPEG, TIFF, BMP, GIF).
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"GIF8")

_XML_ROOTS = {
    "RestingECG": "ge_muse",
    "CardiologyXML": "cardiosoft",
    "restingecgdata": "philips",
    "AnnotatedECG": "hl7_aecg",
}


def resolve_wfdb(path: str) -> str | None:
    """Return the ``.hea`` path of a WFDB record named by header or stem, else None."""
    if path.endswith(".hea") and os.path.isfile(path):
        return path
    if not os.path.exists(path) and os.path.isfile(path + ".hea"):
        return path + ".hea"
    return None


def _decode_head(head: bytes) -> str:
    if head.startswith(b"\xff\xfe") or head.startswith(b"\xfe\xff"):
        return head.decode("utf-16", errors="ignore")
    if len(head) > 3 and head[0] == 0 and head[1] != 0:
        return head.decode("utf-16-be", errors="ignore")
    if len(head) > 3 and head[1] == 0 and head[0] != 0:
        return head.decode("utf-16-le", errors="ignore")
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    return head.decode("latin-1")


_ROOT_RE = re.compile(r"<\s*(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)[\s/>]")


def xml_root(head: bytes) -> str | None:
    """Name of the first element of an XML document prefix (ignoring prolog, comments, DOCTYPE)."""
    text = _decode_head(head)
    # drop the XML declaration, processing instructions, comments and DOCTYPE
    text = re.sub(r"<\?.*?\?>", "", text, flags=re.S)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<!DOCTYPE[^\[>]*(\[.*?\])?\s*>", "", text, flags=re.S)
    m = _ROOT_RE.search(text)
    return m.group(1) if m else None


def sniff(path: "str | os.PathLike") -> str:
    """Return the format name of a file, decided from its bytes.

    Raises
    ------
    ReadError
        The path is missing, a directory, empty, or of no known format.
    """
    path = os.fspath(path)
    hea = resolve_wfdb(path)
    if hea is not None:
        return "wfdb"
    if not os.path.exists(path):
        raise ReadError("no such file (nor a WFDB record of that name)", path)
    if os.path.isdir(path):
        raise ReadError("is a directory, not an ECG file", path)
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise ReadError(f"cannot open: {exc.strerror or exc}", path) from None
    if not head:
        raise ReadError("empty file", path)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "code15"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if len(head) >= 22 and head[16:22] == b"SCPECG":
        return "scp"
    if head.startswith(b"%PDF"):
        return "pdf"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if head.startswith(b"\xffBIOSEMI"):
        return "bdf"
    if head.startswith(b"0       ") and len(head) >= 256:
        return "edf"
    if head.startswith(IMAGE_MAGIC) or (head.startswith(b"RIFF") and head[8:12] == b"WEBP"):
        return "image"
    stripped = head.lstrip(b"\xef\xbb\xbf\xff\xfe\x00 \t\r\n")
    if stripped.startswith(b"<") or head.startswith((b"\xff\xfe<", b"\xfe\xff\x00<")):
        root = xml_root(head)
        if root in _XML_ROOTS:
            return _XML_ROOTS[root]
        raise ReadError(f"XML document with root element {root!r} is not a known ECG format", path)
    # A header named without .hea suffix, e.g. "record" given as "record.hea" exists: handled above.
    text = head.decode("latin-1")
    first = text.lstrip().split("\n", 1)[0]
    if re.fullmatch(r"[\w.\-/]+\s+\d+(\s+[\d.eE+\-/()]+)?(\s+\d+)?.*", first.strip() or "x") \
            and path.endswith(".hea"):
        return "wfdb"
    if _looks_like_csv(text):
        return "csv"
    stem, ext = os.path.splitext(path)
    if ext.lower() in (".dat", ".mat") and os.path.isfile(stem + ".hea"):
        raise ReadError(f"a WFDB signal file: read the record by its header, {os.path.basename(stem)}.hea",
                        path)
    raise ReadError("unknown format (no known signature in the first bytes)", path)


def _looks_like_csv(text: str) -> bool:
    if "\x00" in text:
        return False
    lines = [ln for ln in text.splitlines()[:6] if ln.strip()]
    if len(lines) < 2:
        return False
    counts = {ln.count(",") for ln in lines[1:]} | {ln.count(";") for ln in lines[1:]}
    return any(c >= 1 for c in counts) and all(
        re.fullmatch(r"[\s\d.,;eE+\-naNA\"]*", ln) for ln in lines[1:])
