"""Paper ECGs (PDF, PNG, JPEG, TIFF) to signals: :func:`digitize`.

* Vector PDFs are read from their drawing paths (:mod:`.pdf_vector`), which is
  essentially lossless.
* Raster pages (images, and PDFs whose pages are only images) go through the
  image pipeline (:mod:`.raster`): grid detection, scale, rows, a
  dynamic-programming trace per lead.
* :mod:`.metric` is the PhysioNet Challenge 2024 SNR used to score both.

``ecgcore.read`` routes sniffed ``"pdf"`` and ``"image"`` files here
(:func:`read_pdf`, :func:`read_image`).
"""

from __future__ import annotations

import os

from ..errors import DigitizeError, ReadError
from ..record import Record

__all__ = ["digitize", "read_pdf", "read_image", "read", "LAYOUTS"]

LAYOUTS = ("auto", "3x4+II", "3x4", "3x4+2", "3x4+3", "6x2", "12x1")
_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"}


def _kind(path: str) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise DigitizeError(f"cannot open ({exc.strerror or exc})", path) from None
    if not head:
        raise DigitizeError("the file is empty", path)
    if head.startswith(b"%PDF") or b"%PDF" in head:
        return "pdf"
    sigs = (b"\x89PNG", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"GIF8", b"RIFF")
    if head.startswith(sigs):
        return "image"
    if os.path.splitext(path)[1].lower() in _IMAGE_EXT:
        return "image"
    raise DigitizeError("neither a PDF nor an image (PNG/JPEG/TIFF)", path)


def digitize(path, layout: str = "auto", fs: float = 500.0, **kwargs) -> Record:
    """Turn a paper ECG (PDF or image) into a 12-lead :class:`~ecgcore.Record`.

    Parameters
    ----------
    path : str or path-like
        A PDF (vector or scanned) or an image (PNG, JPEG, TIFF, BMP).
    layout : {"auto", "3x4+II", "3x4", "3x4+2", "3x4+3", "6x2", "12x1"}
        The page layout; ``"auto"`` detects it (vector PDFs never need it).
        ``"3x4+3"`` is the 3x4 grid with three rhythm strips (V1, II, V5 on
        GE/Marquette pages), ``"3x4+2"`` with two (five trace rows); raster pages name each rhythm strip after the 3x4
        panel it repeats (``meta["digitize_flags"]["rhythm_leads"]``). ``"6x2"``
        covers both 6x2 prints: columns side by side in time (each lead 10 s) and the
        contiguous print (limb leads 0-5 s, chest leads 5-10 s, ``ecgcore.plot``'s
        ``"6x2c"``); the output ``meta["layout"]`` says ``"6x2"`` for both.
    fs : float
        Output sampling rate, Hz.
    **kwargs
        Passed to the raster pipeline (e.g. ``dpi`` when the file lacks it).

    Returns
    -------
    Record
        The 12 standard leads in mV (NaN outside the window where each lead is
        drawn; extra labelled leads such as V4R follow). ``meta`` holds
        ``source_kind`` ("vector"/"raster"), ``layout``, ``speed`` (mm/s),
        ``gain`` (mm/mV), ``pt_per_mm`` or ``px_per_mm``, ``confidence``
        (per lead, 0-1), ``limb_residual`` (how far the limb leads are from
        Einthoven's and Goldberger's laws, relative; digitised pages that hold them
        measured 0.02-0.36, flagged above 0.5) and ``digitize_flags`` (assumptions made; raster pages drawn in
        the Cabrera order are renamed, ``limb_leads_cabrera``).

    Raises
    ------
    DigitizeError
        The file is not a page with a readable ECG; the message says why.
    """
    path = os.fspath(path)
    if layout not in LAYOUTS:
        raise DigitizeError(f"unknown layout {layout!r}; use one of {LAYOUTS}", path)
    if not (float(fs) > 0):
        raise DigitizeError(f"fs must be positive, got {fs!r}", path)
    kind = _kind(path)
    if kind == "pdf":
        return _digitize_pdf(path, layout, float(fs), **kwargs)
    from .raster import digitize_image

    return digitize_image(path, layout=layout, fs=float(fs), **kwargs)


def _digitize_pdf(path, layout, fs, **kwargs):
    from .pdf_vector import read_vector_pdf

    try:
        rec = read_vector_pdf(path, fs=fs, layout=layout)
    except DigitizeError as exc:
        if "images" not in exc.reason or "no images" in exc.reason:
            raise
    else:
        _limb_meta(rec)
        return rec
    # a scanned PDF: rasterise its pages and use the image pipeline
    from .raster import digitize_pdf_raster

    return digitize_pdf_raster(path, layout=layout, fs=fs, **kwargs)


def _limb_meta(rec) -> None:
    """``meta["limb_residual"]`` of a vector page (its leads are named by its labels, so
    nothing is renamed; a residual over the limit is flagged ``limb_leads_inconsistent``)."""
    import numpy as np

    from ..record import STANDARD_12
    from .limbs import check_limb_leads

    sig = rec.conform(STANDARD_12, derive=False, missing="nan").signal
    _, r = check_limb_leads(sig, rec.fs, flags=rec.meta.setdefault("digitize_flags", {}),
                            rename=False)
    rec.meta["limb_residual"] = round(r, 3) if np.isfinite(r) else None


def read_pdf(path, **kwargs) -> Record:
    """``ecgcore.read`` entry for PDFs: :func:`digitize` with ReadError on failure."""
    return _as_read(path, **kwargs)


def read_image(path, **kwargs) -> Record:
    """``ecgcore.read`` entry for images: :func:`digitize` with ReadError on failure."""
    return _as_read(path, **kwargs)


def read(path, **kwargs) -> Record:
    return _as_read(path, **kwargs)


def _as_read(path, **kwargs):
    try:
        return digitize(path, **kwargs)
    except DigitizeError as exc:
        raise ReadError(exc.reason, path) from None
