"""Image preprocessing of the scar/LVEF study (Boribalburephan et al., Sci Rep 2024).

An ECG page, from whatever source, becomes the network's (3, 384, 384) input:

1. **Page to RGB pixels** (:func:`load_page`): PNG/JPEG/TIFF/BMP through Pillow
   (RGBA and grey pages are converted to RGB, which the study's app could not
   do); PDF first page rendered in-process with pypdfium2 at 300 dpi (the study
   used poppler's ``pdftoppm`` at 300 dpi); any signal :class:`~ecgcore.Record`
   drawn by :func:`ecgcore.plot` (:func:`render_record`) so signal datasets can
   train image models too.
2. **Crop to the lead area** (:func:`find_lead_area`): the study used fixed
   boxes for its two hospital layouts; ecgcore detects the area from the
   pixels (the bounding box of the grid, or of the ink on a grid-less page),
   and the study's fixed boxes remain available (:data:`STUDY_CROPS`).
3. Optional **grid removal** by colour-space thresholds (:func:`remove_grid`,
   chroma rather than the study's exact RGB matches) and the study's
   **3x4 to 6x2 rearrangement** (:func:`rearrange_3x4_to_6x2`).
4. **Resize** to 384 x 384 without keeping the aspect ratio (bilinear with
   half-pixel centres and no antialiasing, i.e. OpenCV ``INTER_LINEAR`` as
   albumentations' ``Resize`` calls it), rounded back to 8 bits, then
   **ImageNet normalisation** ((x / 255 - mean) / std).

Everything here is numpy + Pillow; torch is not imported.

References
----------
Boribalburephan A et al., "Myocardial scar and left ventricular ejection
fraction classification for electrocardiography image using multi-task deep
learning", Sci Rep 14:7523 (2024), doi:10.1038/s41598-024-58131-6.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np

from ecgcore.errors import PreprocessError, ReadError
from ecgcore.io.sniff import sniff

__all__ = ["load_page", "render_record", "find_lead_area", "crop", "remove_grid",
           "rearrange_3x4_to_6x2", "resize_bilinear", "normalize", "prepare_image", "PreparedImage",
           "load_image", "STUDY_CROPS", "IMAGENET_MEAN", "IMAGENET_STD", "PDFIUM_LOCK"]

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

#: The study's fixed crop boxes (left, top, right, bottom) in 300-dpi pixels (facts/mtecg.md §1).
STUDY_CROPS = {"old": (180, 280, 3000, 1600), "new": (82, 950, 3000, 2000)}

#: pdfium is not thread-safe: every pypdfium2 call in a process must hold this lock.
from ecgcore._pdfium import PDFIUM_LOCK  # noqa: E402  (shared with the PDF reader)

# a decoded page larger than this is refused (a decompression bomb, not an ECG)
_MAX_PIXELS = 80_000_000

def _kind(path: str) -> str:
    """"pdf", "image" or "signal", decided from the bytes by ecgcore's format sniffer."""
    try:
        fmt = sniff(path)
    except ReadError as exc:
        if "unknown format" in exc.reason:
            return "signal"  # reading it as a signal reports the problem with the file named
        raise
    return fmt if fmt in ("pdf", "image") else "signal"


def _as_rgb(img) -> np.ndarray:
    """Pillow image -> (H, W, 3) uint8; transparency is composited on white."""
    from PIL import Image
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_page(path, dpi: float = 300.0, page: int = 0) -> np.ndarray:
    """Read an image file or render one PDF page as (H, W, 3) uint8 RGB.

    Parameters
    ----------
    path : str or path-like
        PNG, JPEG, TIFF, BMP or PDF; the kind is decided from the bytes.
    dpi : float
        PDF rendering resolution (the study: 300 dpi).
    page : int
        PDF page (the study uses the first).

    Raises
    ------
    ReadError
        Not an image or PDF, damaged, or too large to decode.
    """
    path = os.fspath(path)
    kind = _kind(path)
    if kind == "pdf":
        return _render_pdf(path, dpi, page)
    if kind != "image":
        raise ReadError("not an image (PNG/JPEG/TIFF/BMP) or PDF", path)
    from PIL import Image
    try:
        with Image.open(path) as img:
            if img.width * img.height > _MAX_PIXELS:
                raise ReadError(f"image of {img.width} x {img.height} pixels is too large", path)
            return _as_rgb(img)
    except ReadError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ReadError(f"damaged image ({type(exc).__name__}: {exc})", path) from None


def _render_pdf(path: str, dpi: float, page: int) -> np.ndarray:
    import pypdfium2 as pdfium
    with PDFIUM_LOCK:
        try:
            doc = pdfium.PdfDocument(path)
        except Exception as exc:  # pypdfium2 raises its own PdfiumError for damaged files
            raise ReadError(f"damaged PDF ({exc})", path) from None
        try:
            if not 0 <= page < len(doc):
                raise ReadError(f"PDF has {len(doc)} page(s); page {page} requested", path)
            pg = doc[page]
            w_pt, h_pt = pg.get_size()
            scale = dpi / 72.0
            if w_pt * h_pt * scale * scale > _MAX_PIXELS:
                raise ReadError(f"page of {w_pt:.0f} x {h_pt:.0f} pt is too large at {dpi:g} dpi", path)
            bitmap = pg.render(scale=scale, fill_color=(255, 255, 255, 255))
            arr = np.array(bitmap.to_numpy(), copy=True)
            mode = bitmap.mode
            bitmap.close()
            pg.close()
        finally:
            doc.close()
    # pdfium renders BGR(A)/BGRx by default
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif mode in ("BGR", "BGRA", "BGRX"):
        arr = arr[:, :, 2::-1]
    else:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr, dtype=np.uint8)


def render_record(record, layout: str = "6x2", dpi: float = 100.0, grid: bool = False,
                  line_width: float = 0.6) -> np.ndarray:
    """Draw a signal record with :func:`ecgcore.plot` and return the page as (H, W, 3) uint8.

    The default (6x2, no grid) is what the study's network saw: the old-format
    pages are grid-less 6x2 and the new-format ones are rearranged to 6x2
    after grid removal. ``line_width`` is the trace width in points; thicker
    traces survive the un-antialiased downscale to small test images.
    """
    import ecgcore
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    res = ecgcore.plot(record, None, layout=layout, dpi=dpi, grid=grid, labels=True, calibration=True,
                       line_width=line_width)
    fig = res.figure
    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    # Every vertex is kept without touching matplotlib's global rcParams: ecgcore.plot marks
    # its trace paths should_simplify=False. An rc_context here would not be thread-safe (the
    # service draws in several worker threads; interleaved enter/exit restores the wrong values
    # mid-draw and leaves them changed for the whole process).
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[:, :, :3])


def _grid_mask(img: np.ndarray, chroma: int = 40, dark: int = 90) -> np.ndarray:
    """Coloured (grid) pixels: chroma max-min above ``chroma`` and not dark ink."""
    mx = img.max(axis=2).astype(np.int16)
    mn = img.min(axis=2).astype(np.int16)
    return ((mx - mn) > chroma) & (mx > dark)


def find_lead_area(img: np.ndarray, min_fraction: float = 0.25, margin: int = 4) -> tuple:
    """Bounding box (left, top, right, bottom) of the ECG area of a page.

    On a page with a coloured grid the box spans the rows and columns whose
    share of grid pixels reaches ``min_fraction`` of the densest one (so the
    header text above the grid is cut off, as the study's fixed crops did).
    On a grid-less page it is the box of the non-white ink. Falls back to the
    whole page when nothing is found.
    """
    h, w = img.shape[:2]
    g = _grid_mask(img)
    if g.mean() > 0.01:
        mask = g
    else:
        mask = img.min(axis=2) < 200
        if not mask.any():
            return (0, 0, w, h)
        min_fraction = 1e-9
    # densities smoothed over about a 5-mm grid pitch, so the thin grid lines and
    # the gaps between them read as one band; text rows above the grid stay low
    k = max(3, min(h, w) // 40)
    rows = _smooth(mask.mean(axis=1), k)
    cols = _smooth(mask.mean(axis=0), k)
    r = np.flatnonzero(rows > rows.max() * min_fraction) if rows.max() > 0 else np.zeros(0, int)
    c = np.flatnonzero(cols > cols.max() * min_fraction) if cols.max() > 0 else np.zeros(0, int)
    if r.size == 0 or c.size == 0:
        return (0, 0, w, h)
    return (max(0, int(c[0]) - margin), max(0, int(r[0]) - margin),
            min(w, int(c[-1]) + 1 + margin), min(h, int(r[-1]) + 1 + margin))


def _smooth(v: np.ndarray, k: int) -> np.ndarray:
    """Centred moving average of width k (edges averaged over what exists)."""
    c = np.concatenate([[0.0], np.cumsum(v, dtype=np.float64)])
    n = len(v)
    lo = np.clip(np.arange(n) - k // 2, 0, n)
    hi = np.clip(np.arange(n) + k // 2 + 1, 0, n)
    return (c[hi] - c[lo]) / (hi - lo)


def crop(img: np.ndarray, box) -> np.ndarray:
    """Crop (left, top, right, bottom), clipped to the image; PreprocessError if empty."""
    h, w = img.shape[:2]
    left, top, right, bottom = (int(v) for v in box)
    left, right = max(0, left), min(w, right)
    top, bottom = max(0, top), min(h, bottom)
    if right - left < 2 or bottom - top < 2:
        raise PreprocessError(f"crop box {tuple(box)} leaves nothing of a {w} x {h} image")
    return img[top:bottom, left:right]


def remove_grid(img: np.ndarray, chroma: int = 40, dark: int = 90) -> np.ndarray:
    """Paint coloured grid pixels white (chroma threshold; black ink and grey text stay).

    The study matched three exact RGB colours of one PDF producer (±3);
    a chroma threshold also works for scans and other producers.
    """
    out = img.copy()
    out[_grid_mask(img, chroma, dark)] = 255
    return out


def rearrange_3x4_to_6x2(img: np.ndarray) -> np.ndarray:
    """The study's ``rearrange_leads``: a cropped 3x4 page to a 6x2 (portrait) page.

    The new-format crop is 2918 x 1050 at 300 dpi; twelve 701 x 350 tiles are
    cut at x = 0, 740, 1478, 2217 and y = 0, 350, 700 (column-major order I, II,
    III | aVR, aVL, aVF | V1-V3 | V4-V6); the limb leads are stacked in the left
    column and the chest leads in the right, giving 1402 x 2100. Other crop sizes
    are scaled proportionally.
    """
    h, w = img.shape[:2]
    sx, sy = w / 2918.0, h / 1050.0
    tw, th = int(round(701 * sx)), int(round(350 * sy))
    xs = [int(round(v * sx)) for v in (0, 740, 1478, 2217)]
    ys = [int(round(v * sy)) for v in (0, 350, 700)]
    if tw < 2 or th < 2:
        raise PreprocessError(f"image of {w} x {h} is too small to rearrange")
    tiles = []
    for x in xs:
        for y in ys:
            t = img[y:y + th, x:x + tw]
            if t.shape[:2] != (th, tw):  # the last tile can be short by a rounding pixel
                pad = np.full((th, tw, 3), 255, np.uint8)
                pad[:t.shape[0], :t.shape[1]] = t
                t = pad
            tiles.append(t)
    left = np.concatenate(tiles[:6], axis=0)
    right = np.concatenate(tiles[6:], axis=0)
    return np.concatenate([left, right], axis=1)


def _axis_weights(n_in: int, n_out: int):
    # half-pixel centres (OpenCV INTER_LINEAR, torch align_corners=False), edges clamped
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres and no antialiasing, rounded to uint8.

    Matches OpenCV's ``INTER_LINEAR`` (what albumentations' ``Resize`` uses)
    up to its fixed-point rounding.
    """
    img = np.asarray(img)
    r0, r1, fr = _axis_weights(img.shape[0], height)
    c0, c1, fc = _axis_weights(img.shape[1], width)
    # gather the needed rows first (on uint8), so only an (height, W) slab is ever float
    top = img[r0].astype(np.float32) * (1 - fr)[:, None, None] + img[r1].astype(np.float32) * fr[:, None, None]
    out = top[:, c0] * (1 - fc)[None, :, None] + top[:, c1] * fc[None, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def normalize(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) float32: (x / 255 - ImageNet mean) / ImageNet std."""
    x = img.astype(np.float32) / 255.0
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


@dataclass
class PreparedImage:
    """The network input and what it was made from."""
    tensor: np.ndarray        # (3, size, size) float32, ImageNet-normalised
    image: np.ndarray         # (H, W, 3) uint8: the cropped (and cleaned) page before the resize
    box: tuple                # crop box on the page, (left, top, right, bottom)
    source: str               # "image", "pdf", "record" or "array"


def load_image(x, dpi: float = 300.0, render: dict | None = None) -> tuple[np.ndarray, str]:
    """Explicit type dispatch of an input to (H, W, 3) uint8 RGB and its kind.

    ``x`` may be a path (image or PDF, decided from the bytes; any other file is
    read with :func:`ecgcore.read` and drawn), a :class:`~ecgcore.Record`, a
    Pillow image, or an (H, W), (H, W, 3) or (H, W, 4) uint8 array (float
    arrays in [0, 1] are scaled by 255). Signals as bare arrays are refused: wrap
    them in a Record so their rate and lead names are known.
    """
    import ecgcore
    if isinstance(x, (str, os.PathLike)):
        path = os.fspath(x)
        kind = _kind(path)
        if kind in ("pdf", "image"):
            return load_page(path, dpi=dpi), kind
        return render_record(ecgcore.read(path), **(render or {})), "record"
    if isinstance(x, ecgcore.Record):
        return render_record(x, **(render or {})), "record"
    if hasattr(x, "convert") and hasattr(x, "size") and hasattr(x, "mode"):  # a Pillow image
        return _as_rgb(x), "array"
    if isinstance(x, (bytes, bytearray)):
        from PIL import Image
        try:
            with Image.open(io.BytesIO(bytes(x))) as img:
                return _as_rgb(img), "array"
        except OSError as exc:
            raise ReadError(f"bytes are not a decodable image ({exc})") from None
    a = np.asarray(x)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise PreprocessError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4); got shape {a.shape} "
                              f"(pass signals as an ecgcore.Record)")
    if a.dtype != np.uint8:
        f = a.astype(np.float64)
        if not np.isfinite(f).all():
            raise PreprocessError("the image array contains NaN or infinite values")
        if f.max() <= 1.0:
            f = f * 255.0
        a = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    if a.shape[2] == 4:  # composite on white
        alpha = a[:, :, 3:4].astype(np.float32) / 255.0
        a = np.rint(a[:, :, :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(a), "array"


def prepare_image(x, size: int = 384, crop_box="auto", grid: str = "keep", rearrange: bool = False,
                  dpi: float = 300.0, render: dict | None = None) -> PreparedImage:
    """Any supported input to the study's network input.

    Parameters
    ----------
    x : path, Record, Pillow image or array
        See :func:`load_image`.
    size : int
        Output side (the study: 384; the aspect ratio is not kept, as in the study).
    crop_box : "auto", None, "old", "new" or (left, top, right, bottom)
        "auto" detects the lead area (:func:`find_lead_area`); None keeps the
        whole page; "old"/"new" are the study's fixed 300-dpi boxes.
        Records drawn by ecgcore are never cropped.
    grid : {"keep", "remove"}
        "remove" paints the coloured grid white before resizing (as the study did
        for its new-format pages).
    rearrange : bool
        Apply :func:`rearrange_3x4_to_6x2` after cropping (the study's new format).
    """
    if isinstance(x, PreparedImage):
        return x
    img, kind = load_image(x, dpi=dpi, render=render)
    h, w = img.shape[:2]
    if crop_box is None or kind == "record":
        box = (0, 0, w, h)
    elif isinstance(crop_box, str):
        if crop_box == "auto":
            box = find_lead_area(img)
        elif crop_box in STUDY_CROPS:
            box = STUDY_CROPS[crop_box]
        else:
            raise PreprocessError(f"crop_box must be 'auto', None, 'old', 'new' or a box, not {crop_box!r}")
    else:
        box = tuple(int(v) for v in crop_box)
        if len(box) != 4:
            raise PreprocessError(f"crop_box must have 4 numbers (left, top, right, bottom), got {crop_box!r}")
    img = crop(img, box)
    if grid == "remove":
        img = remove_grid(img)
    elif grid != "keep":
        raise PreprocessError(f"grid must be 'keep' or 'remove', not {grid!r}")
    if rearrange:
        img = rearrange_3x4_to_6x2(img)
    if size < 8:
        raise PreprocessError(f"size must be at least 8 pixels, got {size}")
    t = normalize(resize_bilinear(img, size, size))
    return PreparedImage(t, img, box, kind)
