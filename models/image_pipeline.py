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
   pixels, and the study's fixed boxes remain available (:data:`STUDY_CROPS`).
   The detector is versioned because image presets, datasets and checkpoints
   store ``crop_box="auto"``: version 1 (``"auto"``/``"auto1"``, what every
   preset written so far means) boxes the coloured-grid pixels, else all ink,
   so grey or dotted grids keep the header; version 2 (``"auto2"``) finds the
   periodic grid of any colour (red, grey, dotted, black-and-white) and boxes
   the traces on plain paper, leaving header and measurement text out.
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

__all__ = ["load_page", "render_record", "find_lead_area", "crop", "AUTO_CROP_VERSION", "AUTO_CROPS", "remove_grid",
           "rearrange_3x4_to_6x2", "resize_bilinear", "normalize", "prepare_image", "PreparedImage",
           "load_image", "STUDY_CROPS", "IMAGENET_MEAN", "IMAGENET_STD", "PDFIUM_LOCK"]

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

#: The study's fixed crop boxes (left, top, right, bottom) in 300-dpi pixels (facts/mtecg.md §1).
STUDY_CROPS = {"old": (180, 280, 3000, 1600), "new": (82, 950, 3000, 2000)}

#: Version of the lead-area detector that new image presets should record (as ``"auto2"``).
AUTO_CROP_VERSION = 2
#: ``crop_box`` names of the automatic crop and the detector version each means. ``"auto"`` is
#: version 1 for good: presets, datasets and checkpoints written before version 2 store that
#: name, and their models must keep seeing the input they were trained on.
AUTO_CROPS = {"auto": 1, "auto1": 1, "auto2": 2}

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


def find_lead_area(img: np.ndarray, version: int = AUTO_CROP_VERSION, min_fraction: float = 0.25,
                   margin: int = 4) -> tuple:
    """Bounding box (left, top, right, bottom) of the lead area of a page, in pixels.

    Parameters
    ----------
    img : (H, W, 3) uint8
        The page.
    version : {1, 2}
        Detector version (see :data:`AUTO_CROPS`).

        * 2: the **periodic grid** of any colour. Grid lines or dots repeat with
          the 1-mm or 5-mm pitch along rows and columns; the page's pitch is the
          first strong peak of the autocorrelation of its row and column ink
          profiles, and the area is the largest run of rows (then of columns)
          whose strips repeat with that pitch, snapped to the outermost grid
          line. Header text, measurement boxes and footers do not repeat with
          the grid pitch and are left out. On a page without a grid the box of
          the **traces** is returned: after removing long straight rule and
          frame lines, the long, one-run-per-column ink components (text is
          many small components, boxes have two runs per column), plus a
          margin of 1 % of the page. When neither is found the whole
          page is returned.
        * 1: rows and columns whose share of coloured-grid pixels reaches
          ``min_fraction`` of the densest, else the box of all non-white ink
          (header and measurement text included on grey or dotted grids).
    min_fraction, margin : float, int
        Version-1 parameters (density fraction; margin in pixels).

    Returns
    -------
    tuple of int
        (left, top, right, bottom), right/bottom exclusive.

    Raises
    ------
    PreprocessError
        Version 2 on a blank page (nothing darker than the paper), or an
        unknown version.
    """
    if version == 1:
        return _lead_area_v1(img, min_fraction, margin)
    if version != 2:
        raise PreprocessError(f"find_lead_area: version must be 1 or 2, not {version!r}")
    img = np.asarray(img)
    h, w = img.shape[:2]
    # the detector works near 100 dpi on a letter/A4 page: the grid pitch is then 4-20 px and
    # text strokes are thinner than the 1-mm pitch, whatever the page's own resolution
    small, f = _downscale(img)
    dn = _darkness(small)
    if dn is None:
        raise PreprocessError(f"no ECG on the page: a blank {w} x {h} image (nothing darker than the paper)")
    found = _grid_area(dn)
    if found is not None:
        left, top, right, bottom = (min(lim, v * f) for v, lim in zip(found, (w, h, w, h)))
        if (right - left) * (bottom - top) >= 0.05 * w * h:
            return (left, top, right, bottom)
    box = _trace_area(small)
    if box is None:
        return (0, 0, w, h)
    left, top, right, bottom = box
    return (left * f, top * f, min(w, right * f), min(h, bottom * f))


def _trace_area(img):
    """Box of the ECG traces of a grid-less page (downscaled), with a 1 % margin; None if none."""
    from scipy import ndimage
    h, w = img.shape[:2]
    g = img.min(axis=2)
    paper, darkest = float(np.percentile(g, 95)), float(g.min())
    ink = g < paper - 0.25 * (paper - darkest)     # thin antialiased traces are mid-grey
    if not ink.any():
        return None
    # rule lines and frames (long straight runs) go first: traces often start and end on a frame,
    # which would join them to it and to every text box it encloses
    for axis, length in ((1, max(8, int(0.3 * w))), (0, max(8, int(0.25 * h)))):
        run = ndimage.uniform_filter1d(ink.astype(np.float32), length, axis=axis, mode="constant") > 0.999
        ink &= ~(ndimage.uniform_filter1d(run.astype(np.float32), length, axis=axis, mode="constant") > 1e-3)
    lab, n = ndimage.label(ink, structure=np.ones((3, 3)))
    boxes = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        ys, xs = sl
        bh, bw = ys.stop - ys.start, xs.stop - xs.start
        # a trace is long (>= 5 % of the page width, ~0.5 s at 25 mm/s), not a flat rule line, wider
        # than tall, and crosses each column once (a frame or box crosses twice)
        if bw < max(15, 0.05 * w) or bh < max(3, 0.005 * h) or bw < 1.2 * bh:
            continue
        m = lab[sl] == i
        starts = (m[1:] & ~m[:-1]).sum(axis=0) + m[0]
        if starts[starts > 0].mean() > 1.5:
            continue
        boxes.append((xs.start, ys.start, xs.stop, ys.stop))
    if not boxes:
        return None
    b = np.array(boxes)
    pad = max(2, int(round(0.01 * min(h, w))))
    return (max(0, int(b[:, 0].min()) - pad), max(0, int(b[:, 1].min()) - pad),
            min(w, int(b[:, 2].max()) + pad), min(h, int(b[:, 3].max()) + pad))


def _lead_area_v1(img: np.ndarray, min_fraction: float = 0.25, margin: int = 4) -> tuple:
    """Version 1 of the lead-area crop (kept bit for bit for presets that store "auto").

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


def _darkness(img):
    """Darkness 0..1 of every pixel, clipped at the typical level of the non-white pixels; None if blank.

    Most non-white pixels of a grid page are grid, so the clip level is the
    grid's own darkness: black traces then weigh no more than a grid line and
    cannot drown a light grey or dotted grid in the profiles below.
    """
    d = 255.0 - img.min(axis=2).astype(np.float32)
    d -= float(np.percentile(d, 5))          # paper that is not pure white (scans, JPEG)
    nz = d[d > 12]
    if nz.size < 1e-4 * d.size:
        return None
    clip = float(np.median(nz))
    return np.minimum(np.maximum(d, 0), clip) / clip


def _page_period(dn):
    """Grid period in pixels from the autocorrelation of the page's row and column profiles, or None.

    Differenced profiles (slow trends gone); the period is the smallest lag
    (>= 3 px) that peaks in both directions with at least half the strongest
    peak, i.e. the finest lattice the page shows (1 mm, else 5 mm).
    Returns (period_px, mean autocorrelation at it).
    """
    acs = []
    n = min(dn.shape)
    lags = np.arange(1, max(4, n // 8))
    for prof in (dn.mean(axis=0), dn.mean(axis=1)):
        q = np.diff(prof.astype(np.float64))
        q -= q.mean()
        v = (q * q).mean()
        if v <= 0 or len(q) < 24:
            return None
        acs.append(np.array([(q[:-L] * q[L:]).mean() for L in lags]) / v)
    ac = 0.5 * (acs[0] + acs[1])
    peaks = [i for i in range(1, len(ac) - 1) if ac[i] >= ac[i - 1] and ac[i] >= ac[i + 1] and lags[i] >= 3
             and min(acs[0][i], acs[1][i]) >= 0.15]
    if not peaks:
        return None
    top = max(ac[i] for i in peaks)
    if top < 0.3:
        return None
    i = min(i for i in peaks if ac[i] >= 0.5 * top)
    a, b, c = ac[i - 1], ac[i], ac[i + 1]
    den = a - 2 * b + c
    off = 0.5 * (a - c) / den if den < 0 else 0.0
    return float(lags[i] + off), float(b)


def _strip_score(dn, P, axis):
    """Grid evidence of every row (axis=0) or column (axis=1): autocorrelation at the grid period.

    The strip of P + 1 rows around each row is averaged into a profile along
    the other axis, detrended by a moving average one period wide (which a
    P-periodic signal survives and humps of text or a trace baseline do not),
    and its normalised autocorrelation at lag floor(P) or ceil(P) taken.
    """
    from scipy import ndimage
    h = max(1, int(round(P / 2)))
    a = dn if axis == 0 else dn.T
    s = ndimage.uniform_filter1d(a, size=2 * h + 1, axis=0, mode="constant")
    k = max(2, int(round(P)))
    s = s - ndimage.uniform_filter1d(s, size=k, axis=1, mode="nearest")
    v = (s * s).mean(axis=1)
    best = np.zeros(a.shape[0], np.float32)
    for L in sorted({int(np.floor(P)), int(np.ceil(P))}):
        if L < 1 or L >= a.shape[1] - 1:
            continue
        ac = (s[:, :-L] * s[:, L:]).mean(axis=1) / np.maximum(v, 1e-12)
        best = np.maximum(best, ac)
    best[v < 1e-4] = 0.0
    return best


def _longest_run(ok, gap):
    """(start, stop) of the longest run of True after closing gaps shorter than ``gap``; None if none."""
    from scipy import ndimage
    ok = ok.copy()
    if gap > 0:
        ok = ndimage.binary_closing(np.pad(ok, gap), structure=np.ones(gap))[gap:-gap] | ok
    lab, n = ndimage.label(ok)
    if n == 0:
        return None
    sizes = ndimage.sum(ok, lab, index=np.arange(1, n + 1))
    i = int(np.argmax(sizes)) + 1
    idx = np.flatnonzero(lab == i)
    return int(idx[0]), int(idx[-1]) + 1


def _snap(prof, a, b, t):
    """Move the edges a (first) and b (stop) of a grid run to its outermost grid line within t."""
    if b - a < 4 * t + 4:
        return a, b
    ref = float(np.percentile(prof[a:b], 95))
    if ref <= 0:
        return a, b
    lo = np.flatnonzero(prof[max(0, a - t - 1):a + t + 1] >= 0.6 * ref)
    hi = np.flatnonzero(prof[b - t - 1:b + t + 1] >= 0.6 * ref)
    a2 = max(0, a - t - 1) + int(lo[0]) if lo.size else a
    b2 = b - t - 1 + int(hi[-1]) + 1 if hi.size else b
    return a2, min(len(prof), b2)


def _downscale(img, target=850):
    """Box-average by an integer factor so the short side is about ``target`` px (100 dpi on letter/A4)."""
    f = max(1, int(round(min(img.shape[:2]) / target)))
    if f == 1:
        return img, 1
    h, w = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    a = img[:h, :w].reshape(h // f, f, w // f, f, 3).mean(axis=(1, 3))
    return a, f


def _grid_area(dn, thr=0.3):
    """(left, top, right, bottom) of the periodic grid in a darkness image, or None."""
    h, w = dn.shape
    per = _page_period(dn)
    if per is None:
        return None
    P = per[0]
    gap = max(3, int(round(min(h, w) * 0.02)))   # traces and labels dim the grid for a few rows
    r0, r1, c0, c1 = 0, h, 0, w
    for _ in range(2):                           # rows within the grid's columns, and back
        rows = _strip_score(dn[:, c0:c1], P, 0)
        run = _longest_run(rows >= max(thr, 0.6 * np.percentile(rows, 90)), gap)
        if run is None:
            return None
        r0, r1 = run
        cols = _strip_score(dn[r0:r1], P, 1)
        run = _longest_run(cols >= max(thr, 0.6 * np.percentile(cols, 90)), gap)
        if run is None:
            return None
        c0, c1 = run
    t = max(1, int(round(P / 2)))   # a strip centred up to P/2 outside the grid still sees it
    r0, r1, c0, c1 = r0 + t, r1 - t, c0 + t, c1 - t
    if r1 - r0 < 2 or c1 - c0 < 2:
        return None
    r0, r1 = _snap(dn[:, c0:c1].mean(axis=1), r0, r1, t)
    c0, c1 = _snap(dn[r0:r1].mean(axis=0), c0, c1, t)
    return (c0, r0, c1, r1)


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
    crop_box : "auto", "auto1", "auto2", None, "old", "new" or (left, top, right, bottom)
        "auto2" detects the lead area with the current detector (version 2 of
        :func:`find_lead_area`: periodic grid of any colour, else the traces);
        "auto" and "auto1" are version 1 (coloured grid, else all ink), which
        stays the meaning of "auto" because presets, datasets and checkpoints
        made before version 2 store that name (the default is "auto" for the
        same reason: model files without a stored preset were made with it);
        None keeps the whole page; "old"/"new" are the study's fixed 300-dpi
        boxes. Records drawn by ecgcore are never cropped.
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
        if crop_box in AUTO_CROPS:
            box = find_lead_area(img, version=AUTO_CROPS[crop_box])
        elif crop_box in STUDY_CROPS:
            box = STUDY_CROPS[crop_box]
        else:
            raise PreprocessError(f"crop_box must be 'auto', 'auto1', 'auto2', None, 'old', 'new' or a box, "
                                  f"not {crop_box!r}")
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
