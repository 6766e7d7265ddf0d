"""One process-wide lock around pypdfium2, and bulk reads of path segments.

PDFium is not thread-safe: two threads opening or walking documents at once
can crash the process. Every ecgcore caller of pypdfium2 (the vector-PDF
reader, image rendering for the image model, the web service) holds this lock.

PDFium's public API hands out a path one point per call
(``FPDFPath_GetPathSegment`` + ``FPDFPathSegment_GetPoint`` +
``FPDFPathSegment_GetType``), three ctypes calls per vertex; a vector ECG page
has 10^4-10^5 vertices, so those calls were most of the time spent reading it.
The segment handles PDFium returns point into one contiguous array of
``{float x, float y, uint8 type, bool close}`` records (12 bytes each in the
PDFium builds pypdfium2 ships), so :func:`path_segments` reads a whole path
with one memory copy. That layout is an implementation detail of PDFium, so
every path read this way is first checked against the public API (the handle
stride, contiguity, and the first, middle and last points and types); any
mismatch falls back to the per-point calls, which stay correct on any build.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

PDFIUM_LOCK = threading.RLock()

__all__ = ["PDFIUM_LOCK", "path_segments"]

# below this many segments the per-point calls cost no more than the checks
_BULK_MIN = 8
_LINE_TYPES = np.array([2, 0], np.uint8)     # MOVETO, LINETO
_bulk_ok = [True]   # switched off for the process once a build's layout disagrees


def _addr(handle) -> int:
    return ctypes.cast(handle, ctypes.c_void_p).value or 0


def _per_point(raw, obj, n, fx, fy):
    get_seg, get_point = raw.FPDFPath_GetPathSegment, raw.FPDFPathSegment_GetPoint
    seg_type = raw.FPDFPathSegment_GetType
    px_, py_ = ctypes.byref(fx), ctypes.byref(fy)
    if n == 2:
        # a single line (grid lines are most of a page's objects): its first segment is
        # the move and a second move would start an empty subpath, so skip the types
        get_point(get_seg(obj, 0), px_, py_)
        x0, y0 = fx.value, fy.value
        get_point(get_seg(obj, 1), px_, py_)
        return np.array([[x0, y0], [fx.value, fy.value]]), _LINE_TYPES
    pts, types = [], []
    for k in range(n):
        seg = get_seg(obj, k)
        get_point(seg, px_, py_)
        pts.append((fx.value, fy.value))
        types.append(seg_type(seg))
    return np.array(pts, np.float64).reshape(n, 2), np.array(types, np.uint8)


def path_segments(raw, obj, n: int | None = None):
    """All segment end points and types of one PDFium path object.

    Parameters
    ----------
    raw : module
        ``pypdfium2.raw``.
    obj : FPDF_PAGEOBJECT
        A path object (``FPDF_PAGEOBJ_PATH``).
    n : int, optional
        ``FPDFPath_CountSegments(obj)`` when the caller already has it.

    Returns
    -------
    xy : ndarray, shape (n, 2), float64
        Segment end points in the path's own coordinates (pt, before the
        object's matrix).
    types : ndarray, shape (n,), uint8
        ``FPDF_SEGMENT_LINETO`` (0), ``BEZIERTO`` (1) or ``MOVETO`` (2).
    """
    if n is None:
        n = raw.FPDFPath_CountSegments(obj)
    fx, fy = ctypes.c_float(), ctypes.c_float()
    if n < _BULK_MIN or not _bulk_ok[0]:
        return _per_point(raw, obj, max(n, 0), fx, fy)
    get_seg = raw.FPDFPath_GetPathSegment
    s0, s1, sm, sn = get_seg(obj, 0), get_seg(obj, 1), get_seg(obj, n // 2), get_seg(obj, n - 1)
    a0 = _addr(s0)
    stride = _addr(s1) - a0
    if not (10 <= stride <= 64) or a0 == 0 or _addr(sn) - a0 != (n - 1) * stride \
            or _addr(sm) - a0 != (n // 2) * stride:
        return _per_point(raw, obj, n, fx, fy)
    rec = np.frombuffer(ctypes.string_at(a0, (n - 1) * stride + 9), dtype=np.uint8)
    # a view of n records of `stride` bytes; the last one is only 9 bytes long
    buf = np.lib.stride_tricks.as_strided(rec, shape=(n, 9), strides=(stride, 1))
    xy32 = np.ascontiguousarray(buf[:, :8]).view("<f4").reshape(n, 2)
    types = np.ascontiguousarray(buf[:, 8])
    get_point, seg_type = raw.FPDFPathSegment_GetPoint, raw.FPDFPathSegment_GetType
    for k, seg in ((0, s0), (n // 2, sm), (n - 1, sn)):
        get_point(seg, ctypes.byref(fx), ctypes.byref(fy))
        if fx.value != xy32[k, 0] or fy.value != xy32[k, 1] or seg_type(seg) != types[k] \
                or types.max() > 2:
            _bulk_ok[0] = False          # another layout: use the public API from now on
            return _per_point(raw, obj, n, fx, fy)
    return xy32.astype(np.float64), types
