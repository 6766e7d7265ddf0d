"""Raster pages (PNG/JPEG/TIFF, scanned PDFs): the image pipeline.

Status: only the input checks exist. Images are decoded (Pillow, EXIF
orientation applied) and blank or unreadable pages are rejected with a
reason; the grid/scale/row detection and the dynamic-programming tracer are
not written yet, so every other page raises :class:`DigitizeError` saying so
instead of returning a guess.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import DigitizeError

__all__ = ["load_image", "digitize_image", "digitize_pdf_raster"]


def load_image(path) -> np.ndarray:
    """Decode an image to a float32 grey array in [0, 1] (0 = ink), EXIF-transposed."""
    try:
        from PIL import Image, ImageOps
    except ImportError as exc:  # pragma: no cover
        raise DigitizeError(f"reading images needs Pillow ({exc})", path) from None
    try:
        with Image.open(os.fspath(path)) as im:
            im = ImageOps.exif_transpose(im)
            grey = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DigitizeError(f"not a readable image ({exc})", path) from None
    return grey


def _check_page(grey, path):
    if grey.ndim != 2 or min(grey.shape) < 64:
        raise DigitizeError(f"image too small for an ECG page ({grey.shape[1]}x{grey.shape[0]} px)",
                            path)
    ink = grey < 0.5
    if ink.mean() < 1e-4 or float(grey.std()) < 0.01:
        raise DigitizeError("blank page: no ink found", path)


def digitize_image(path, layout: str = "auto", fs: float = 500.0, **kwargs):
    grey = load_image(path)
    _check_page(grey, path)
    raise DigitizeError("raster ECG digitisation (grid, rows, trace tracking) is not "
                        "implemented yet; only vector PDFs can be digitised", path)


def digitize_pdf_raster(path, layout: str = "auto", fs: float = 500.0, **kwargs):
    raise DigitizeError("the PDF holds only images (a scan); raster ECG digitisation is not "
                        "implemented yet", path)
