"""Raster pages (PNG/JPEG/TIFF, scanned PDFs): the image pipeline.

Steps (facts/digitization.md §7):

1. decode with Pillow (EXIF orientation applied); split into the brightest and
   darkest channel (:mod:`.grid`);
2. what lies outside the paper (a photo's table, a scanner's lid) is blanked
   (:func:`.grid.off_page`); faded ink (thermal paper) measured per tile and its
   darkness scaled up to a dark stroke's (flag ``faded_ink_contrast``, the faintest
   tile's contrast); paper shading from a tiled 90th percentile; deskew
   (up to ±10°) by the projection profile of the grid and traces;
   a photographed page's perspective is measured from the grid's local angles and
   periods, fitted with a homography and refined on the grid's own 1-mm lattice
   (:mod:`.perspective`), and the page is resampled onto the paper's coordinates
   (flag ``perspective_corrected_px``); a level page whose lattice still bends
   (paper curled or bowed on the glass) is resampled onto it (flag
   ``grid_lattice_corrected_px``);
3. scale: px/mm from the autocorrelation of the grid's row and column profiles
   (x and y separately; when they disagree, the shorter period is looked for on
   both), refined by the drift of the grid's phase along the page (0.002-0.007 %
   instead of ~0.01 %); without a grid the file's dpi, flagged;
4. trace ink: dark in every channel, low chroma, minus the per-row/column
   level of grey grid lines;
5. rows: peaks of the share of columns that hold ink near each image row (a
   trace is continuous across the page, text is not); weaker peaks of wandering
   traces are added where they continue the even row lattice;
6. calibration pulse at the left of each row (searched from before the row's
   first long ink run): its height is 1 mV and its width 0.2 s, so it sets gain
   (mm/mV) and speed (mm/s) when it disagrees with 10 mm/mV and 25 mm/s; when
   both disagree with every standard setting by one factor, the grid period is
   re-read at the period the pulse implies;
7. layout from the row count (3x4: 3 rows, 3x4+II: 4, 3x4+2: 5, 6x2 or 3x4+3: 6,
   12x1: 12) and the standard lead order; six rows are a 6x2 page unless their
   halves sit side by side or the lower three rows repeat 3x4 panels (three rhythm
   strips, 3x4+3). Rhythm strips are named after the panel they repeat (a strip and
   the 3x4 grid share one time axis), the standard II / V1, II / V1, II, V5 when
   none matches clearly; time anchored on the end of the ink (the last drawn sample
   is at D - 1/fs, read from the sub-pixel half-darkness ends of the ink less the
   stroke's half width, or a cap-style-neutral ``lw / 4`` inside the binary end of
   thin strokes; both ends without a calibration pulse; the mean over the latest
   rows); leads in column c start at c x (duration / 4); when
   a sample spans >= 1.2 px (100 Hz at 200 dpi) the origin is then moved onto the
   lattice of the polyline's vertices (the bends of the traced line);
8. per lead a dynamic-programming path through the ink map
   (:mod:`._trace_kernels`, numba) that follows ink, pays for vertical moves
   through paper and stays near its own baseline, so traces that cross or
   touch their neighbours are kept apart; the stroke's sub-pixel centre line
   around the path (row centres on steep edges, column centres elsewhere,
   anti-aliased weights; peak and trough tips kept); resampling to ``fs``; NaN
   outside the drawn window and where the edge of a lead is hidden (separator
   ticks); 0 mV = the isoelectric level (the modal row, refined to sub-pixel);
   per-lead confidence = share of path columns on ink.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from ..errors import ConfigError, DigitizeError
from ..plotting import RHYTHM_DEFAULT, rhythm_leads_for
from ..record import Record, STANDARD_12

__all__ = ["load_image", "digitize_image", "digitize_array", "digitize_pdf_raster"]

_STD_SPEEDS = (12.5, 25.0, 50.0, 100.0)
_STD_GAINS = (2.5, 5.0, 10.0, 20.0, 40.0)
_ENVELOPE = True
_TICK_MM = 0.35
_ROWS_TO_LAYOUT = {4: "3x4+II", 3: "3x4", 5: "3x4+2", 6: "6x2", 12: "12x1"}
_LAYOUT_ROWS = {**{v: k for k, v in _ROWS_TO_LAYOUT.items()}, "3x4+3": 6}
# rhythm strips under the 3x4 grid, when the page does not show which lead they are
_STRIPS_DEFAULT = RHYTHM_DEFAULT
_COLS_3x4 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))


def load_image(path) -> np.ndarray:
    """Decode an image to a float32 grey array in [0, 1] (0 = ink), EXIF-transposed."""
    rgb, _ = load_rgb(path)
    return (rgb.astype(np.float32).mean(axis=2) / 255.0).astype(np.float32)


# Larger images are scaled down to this many pixels on decoding (a 600-dpi A4 page has
# ~35 Mpx; the pipeline holds about ten float32 copies of the page, 1.4 GB at 35 Mpx).
_MAX_PIXELS = 40_000_000


def load_rgb(path):
    """Decode an image to uint8 RGB (EXIF-transposed) and its dpi (None if unknown).

    Images above ``_MAX_PIXELS`` are scaled down to it (their dpi with them);
    Pillow refuses images above twice its own limit (~179 Mpx) as decompression
    bombs, which becomes a :class:`DigitizeError`."""
    try:
        from PIL import Image, ImageOps
    except ImportError as exc:  # pragma: no cover
        raise DigitizeError(f"reading images needs Pillow ({exc})", path) from None
    try:
        with warnings.catch_warnings():
            # between Pillow's limit and twice it Pillow only warns: such a page is scaled
            # down below, so the warning says nothing to the caller
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im0 = Image.open(os.fspath(path))
        with im0 as im:
            dpi = im.info.get("dpi")
            n_px = im.size[0] * im.size[1]
            if n_px > _MAX_PIXELS:
                f = float(np.sqrt(n_px / _MAX_PIXELS))
                im.draft("RGB", (int(im.size[0] / f), int(im.size[1] / f)))   # JPEG: decode smaller
                f = float(np.sqrt(im.size[0] * im.size[1] / _MAX_PIXELS))
                if f > 1:
                    im = im.resize((max(1, int(im.size[0] / f)), max(1, int(im.size[1] / f))),
                                   Image.Resampling.LANCZOS)
                f = float(np.sqrt(n_px / (im.size[0] * im.size[1])))
                if dpi:
                    dpi = (float(dpi[0]) / f,)
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                # transparent pixels are paper: composite on white (in numpy, and only
                # when some pixel is transparent: most RGBA pages are fully opaque)
                rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
                alpha = rgba[..., 3]
                if int(alpha.min()) == 255:
                    rgb = np.ascontiguousarray(rgba[..., :3])
                else:
                    a = alpha[..., None].astype(np.float32) * (1 / 255)
                    rgb = (rgba[..., :3] * a + 255.0 * (1 - a) + 0.5).astype(np.uint8)
            else:
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DigitizeError(f"not a readable image ({exc})", path) from None
    try:
        dpi = float(dpi[0]) if dpi else None
    except (TypeError, ValueError, IndexError):
        dpi = None
    if dpi is not None and not (30 <= dpi <= 2400):
        dpi = None
    return rgb, dpi


def digitize_image(path, layout: str = "auto", fs: float = 500.0, **kwargs) -> Record:
    """Digitise a raster ECG page (PNG/JPEG/TIFF/BMP); see :func:`digitize_array`."""
    rgb, dpi = load_rgb(path)
    if kwargs.get("dpi") is None:
        kwargs["dpi"] = dpi
    return digitize_array(rgb, layout=layout, fs=fs, path=path, **kwargs)


# Scanned PDFs are rendered at their scan's own resolution: the tracer gains with every
# pixel per millimetre (ecgcore.plot PNGs of 4 records: 23.2 dB at 200 dpi, 24.2 at 300,
# 26.2 at 400), and 300-dpi scans rendered at 200 dpi read 0.9 dB worse on average over
# three records (PTB-XL 00001_lr 26.7 -> 24.0 dB). Scans under 200 dpi are rendered up to
# 200 (the pipeline's constants were set there; no loss measured), above 600 down (time).
_RENDER_DPI = (200.0, 600.0)
_MAX_PAGES = 8     # a scanned PDF's pages tried in turn for the first with an ECG


def _scan_dpi(page, raw) -> float | None:
    """Resolution (dots per inch) of the largest image on a PDF page, or None."""
    best, dpi = 0.0, None
    for obj in page.get_objects(filter=(raw.FPDF_PAGEOBJ_IMAGE,), max_depth=4):
        try:
            left, bottom, right, top = obj.get_bounds()
            w_px, h_px = obj.get_px_size()
        except Exception:   # noqa: BLE001 - an unreadable image object is just skipped
            continue
        area = (right - left) * (top - bottom)   # pt^2; a rotated image keeps its area
        if area > best and w_px > 0 and h_px > 0:
            best, dpi = area, 72.0 * float(np.sqrt(w_px * h_px / area))
    return dpi


def digitize_pdf_raster(path, layout: str = "auto", fs: float = 500.0, dpi: float | None = None,
                        **kwargs) -> Record:
    """Digitise a scanned PDF: the first page (of up to eight) that holds an ECG, rendered
    at its scan's resolution (200-600 dpi; ``dpi`` forces one) and read by the image
    pipeline. ``meta["page"]`` says which page (0-based)."""
    try:
        import pypdfium2 as pdfium
        import pypdfium2.raw as raw
    except ImportError as exc:  # pragma: no cover
        raise DigitizeError(f"reading PDFs needs pypdfium2 ({exc})", path) from None
    from .._pdfium import PDFIUM_LOCK

    first_error = None
    k = 0
    while True:
        with PDFIUM_LOCK:   # PDFium is not thread-safe
            try:
                doc = pdfium.PdfDocument(os.fspath(path))
                try:
                    n_pages = len(doc)
                    if n_pages == 0:
                        raise DigitizeError("the PDF has no pages", path)
                    page = doc[k]
                    native = _scan_dpi(page, raw)
                    if native is None and k > 0:
                        rgb = None    # a later page without a scan (a text page)
                    else:
                        r_dpi = float(dpi) if dpi else \
                            float(np.clip(native or _RENDER_DPI[0], *_RENDER_DPI))
                        bitmap = page.render(scale=r_dpi / 72.0)
                        rgb = np.ascontiguousarray(bitmap.to_numpy()[..., :3])
                finally:
                    doc.close()
            except DigitizeError:
                raise
            except Exception as exc:  # pdfium raises its own error types for damaged files
                raise DigitizeError(f"cannot render the PDF page ({exc})", path) from None
        if rgb is not None:
            # pdfium renders BGR(A); the pipeline only uses channel extremes, so order is moot
            try:
                rec = digitize_array(rgb, layout=layout, fs=fs, path=path, dpi=r_dpi, **kwargs)
                rec.meta["page"] = k
                return rec
            except DigitizeError as exc:
                first_error = first_error or exc
        k += 1
        if k >= min(n_pages, _MAX_PAGES):
            if n_pages > 1:
                raise DigitizeError(f"no ECG on any of the {min(n_pages, _MAX_PAGES)} pages "
                                    f"tried (page 1: {first_error.reason})", path) from None
            raise first_error


# ---------------------------------------------------------------------------------------------
# the pipeline


# Failures that a page turned a quarter or half turn gives (a landscape page scanned in
# portrait: its rows run down the image); worth reading the page in another orientation.
_TURNED = ("unknown layout", "no ECG trace rows", "single-lead strip", "trace rows, found",
           "no ECG traces could be followed")


def digitize_array(rgb, layout: str = "auto", fs: float = 500.0, path=None, dpi=None,
                   speed=None, gain=None, rhythm_leads=None) -> Record:
    """Digitise an RGB (or grey) page held in memory, in whichever orientation it lies.

    The page is read as it is. When that finds no known layout, or a portrait image
    reads with no calibration pulse (a landscape page scanned in portrait), it is also
    read turned by a quarter turn each way; when it reads with no pulse and limb leads
    in no known order (upside down: the pulses are at the right end), turned by half a
    turn. The reading with pulses found, consistent limb leads and the highest
    confidence is kept, flagged ``page_turned_deg`` (counterclockwise). A bilevel page (only black and white)
    that cannot be read as it is is read again smoothed (a grid dithered into dots
    becomes lines again), flagged ``dithered_page_smoothed``. Parameters and result
    as :func:`_digitize_upright`.
    """
    a = np.asarray(rgb)
    kw = dict(layout=layout, fs=fs, path=path, dpi=dpi, speed=speed, gain=gain,
              rhythm_leads=rhythm_leads)
    try:
        return _digitize_turned(a, kw)
    except DigitizeError as exc:
        if a.ndim < 2 or a.dtype != np.uint8 or not _bilevel(a):
            raise
        first = exc
    try:
        rec = _digitize_turned(_undither(a), kw)
    except DigitizeError:
        raise first from None
    rec.meta["digitize_flags"]["dithered_page_smoothed"] = True
    rec.meta.setdefault("quality_flags", {})["digitize_assumptions"] = True
    return rec


def _bilevel(a) -> bool:
    """Only black and white pixels (a 1-bit scan or fax)."""
    return bool(np.all((a == 0) | (a == 255)))


# Dithered grey turns back into grey under a Gaussian of this many pixels: measured on
# ecgcore.plot pages dithered to 1 bit at 150-300 dpi, 0.8 px read at 13.4-18.8 dB (1.0:
# 12.7-18.5, 1.2: 10.2-17.9); a thresholded page, which reads as it is, loses 1-4 dB to it
_UNDITHER_SIGMA = 0.8


def _undither(a):
    from scipy.ndimage import gaussian_filter
    x = a.astype(np.float32)
    sig = (_UNDITHER_SIGMA, _UNDITHER_SIGMA) + (0,) * (x.ndim - 2)
    return np.clip(gaussian_filter(x, sig) + 0.5, 0, 255).astype(np.uint8)


# A page is blank when no pixel is this much darker than the paper (brightness 0-1);
# a faded thermal print's trace can be as light as a quarter of the paper's darkness.
_BLANK_CONTRAST = 0.15
# Faded ink (thermal paper fades, and unevenly): the trace's contrast is measured per
# tile of a _FADED_TILES grid as the darkness of its darkest pixels (the 99.9th
# percentile of the brightest channel's darkness against the paper: a black trace, not
# a red grid). Every later threshold (the ink map, the pulses, the sub-pixel
# half-darkness crossings) assumes a dark stroke, so a faded page's darkness is scaled
# up, smoothly across tiles, until its trace reaches _FADED_TARGET.
# * A tile holds no trace (the gap between two rows, an empty margin: grid lines,
#   noise, a stain) when it is under _FADED_EMPTY of the darkest tile round it, under
#   _FADED_EMPTY_PAGE of the page's median tile (an ecg-image-kit page whose top third
#   is empty read as faded), or when its 97th percentile is over _FADED_FILL of its
#   99.9th (a stroke's darkest pixels are few; a red grid on blue paper reads 0.34 in
#   the brightest channel, densely). It takes its traced neighbours' gain.
# * A page is faded when its faintest traced tile is under _FADED_BELOW and its median
#   one under _FADED_PAGE_BELOW, or a quarter of its traced tiles under
#   _FADED_SIDE_BELOW (faded on one side, fresh on the other). Blur lowers a thin
#   trace's peak too: 100-dpi pages with a 0.8-px blur read 0.44 in their faintest tile
#   but 0.63-0.68 in the median one (a page faded to half: 0.36 and 0.49), and scaling
#   them widened the blur's skirts into ink and cost them 2-3 dB.
# * The gain stops at _FADED_MAX_GAIN (noise grows with it).
_FADED_TILES = (6, 8)
_FADED_BELOW = 0.45
_FADED_PAGE_BELOW = 0.55
_FADED_SIDE_BELOW = 0.45
_FADED_TARGET = 0.9
_FADED_EMPTY = 0.5
_FADED_EMPTY_PAGE = 0.4
_FADED_FILL = 0.75
_FADED_MAX_GAIN = 6.0


def _restore_contrast(vmax, vmin, paper):
    """(vmax, vmin, the faintest traced tile's contrast or None): the page's darkness
    relative to ``paper`` stretched where its ink is faded (see ``_FADED_BELOW``)."""
    from scipy.ndimage import maximum_filter, zoom

    if not paper > 0.2:
        return vmax, vmin, None
    h, w = vmax.shape
    ty, tx = _FADED_TILES
    ey = np.linspace(0, h, ty + 1).astype(int)
    ex = np.linspace(0, w, tx + 1).astype(int)
    con = np.empty((ty, tx))
    dense = np.empty((ty, tx))
    for i in range(ty):
        for j in range(tx):
            t = vmax[ey[i]:ey[i + 1]:2, ex[j]:ex[j + 1]:2].ravel()
            k1, k2 = int(t.size * 0.001), int(t.size * 0.03)
            t = np.partition(t, (k1, k2))
            con[i, j] = 1.0 - float(t[k1]) / paper
            dense[i, j] = 1.0 - float(t[k2]) / paper
    traced = con >= _FADED_EMPTY * maximum_filter(con, size=3, mode="nearest")
    traced &= con > _FADED_EMPTY_PAGE * float(np.median(con))
    traced &= dense < _FADED_FILL * con   # grid lines or a fill, not a stroke
    if not traced.any() or float(con[traced].min()) >= _FADED_BELOW:
        return vmax, vmin, None
    if float(np.median(con[traced])) >= _FADED_PAGE_BELOW \
            and float(np.percentile(con[traced], 25)) >= _FADED_SIDE_BELOW:
        return vmax, vmin, None
    # a tile crossed only by a row's spikes reads fainter than its ink: the darkest of
    # the tiles above and below sets its gain (rows run across, an uneven fade along
    # them keeps its tiles apart); every tile is scaled, so that neighbours do not
    # step at _FADED_BELOW
    near = maximum_filter(np.where(traced, con, 0.0), size=(3, 1), mode="nearest")
    gain = np.clip(_FADED_TARGET / np.maximum(near, 1e-3), 1.0, _FADED_MAX_GAIN)
    med = float(np.median(gain[traced]))
    for i, j in zip(*np.nonzero(~traced)):
        nb = traced[max(0, i - 1):i + 2, max(0, j - 1):j + 2]
        vals = gain[max(0, i - 1):i + 2, max(0, j - 1):j + 2][nb]
        gain[i, j] = float(vals.mean()) if vals.size else med
    # from the tiles' centres to every pixel, linearly
    gmap = zoom(gain.astype(np.float32), (h / ty, w / tx), order=1, mode="nearest",
                grid_mode=True)[:h, :w]
    out = []
    for v, level in ((vmax, paper), (vmin, float(np.median(vmin[::2, ::2])))):
        # each channel's darkness below its own paper level times the gain: yellowed
        # paper is darker in the darkest channel, and keeps its chroma
        v = level - (level - v) * gmap
        np.clip(v, 0.0, 1.0, out=v)
        out.append(v)
    return out[0], out[1], float(con[traced].min())


def _digitize_turned(a, kw):
    """:func:`_digitize_upright` of the page as it lies, or turned (see digitize_array)."""
    tried = []
    try:
        rec = _digitize_upright(a, **kw)
    except DigitizeError as exc:
        if not any(t in exc.reason for t in _TURNED) or a.ndim < 2:
            raise
        first, turns = exc, (1, 3, 2)
    else:
        f = rec.meta["digitize_flags"]
        # a landscape page scanned in portrait may read as some layout across its columns,
        # without the pulses (a 12x1 page is portrait itself, and finds its pulses); upside
        # down, no pulse and limb leads in no known order
        portrait = a.shape[0] > a.shape[1] and not rec.meta.get("pulses")
        odd = not rec.meta.get("pulses") and ("limb_leads_inconsistent" in f
                                              or "limb_leads_cabrera" in f)
        if not portrait and not odd:
            return rec
        first, turns = None, ((1, 3) if portrait else (2,))
        tried.append((_reading_score(rec), 0, rec))
    for k in turns:
        try:
            r = _digitize_upright(np.ascontiguousarray(np.rot90(a, k)), **kw)
        except DigitizeError:
            continue
        tried.append((_reading_score(r), k, r))
    if not tried:
        raise first
    if turns == (2,):
        # a half turn of a page that read upright needs evidence (pulses found, or limb
        # leads that hold Einthoven's law), not confidence alone: blurred, rotated
        # 100-dpi pages that lost their pulses read with more confidence upside down
        # (-0.4 and -1.6 dB; upright 1.5 and 6.5)
        up = tried[0][0][:2]
        tried = [t for t in tried if t[1] == 0 or t[0][:2] > up]
    _, k, rec = max(tried, key=lambda t: t[0])
    if k:
        rec.meta["digitize_flags"]["page_turned_deg"] = 90 * k
        rec.meta.setdefault("quality_flags", {})["digitize_assumptions"] = True
    return rec


def _reading_score(rec):
    """How plausible a reading is: calibration pulses found, limb leads that hold
    Einthoven's law, then the leads' mean confidence."""
    m = rec.meta
    conf = list((m.get("confidence") or {}).values())
    res = m.get("limb_residual")
    from .limbs import CONSISTENT
    return (bool(m.get("pulses")), res is not None and res <= CONSISTENT,
            float(np.mean(conf)) if conf else 0.0)


def _digitize_upright(rgb, layout: str = "auto", fs: float = 500.0, path=None, dpi=None,
                      speed=None, gain=None, rhythm_leads=None) -> Record:
    """Digitise an RGB (or grey) page held in memory, as it lies.

    Parameters
    ----------
    rgb : uint8 array (h, w, 3) or (h, w)
        The page.
    layout : {"auto", "3x4+II", "3x4", "3x4+2", "3x4+3", "6x2", "12x1"}
        ``"3x4+3"`` is the 3x4 grid with three rhythm strips (six trace rows, like
        a 6x2 page: ``"auto"`` tells them apart by the strips repeating panels);
        ``"3x4+2"`` with two (five rows).
    fs : float
        Output sampling rate, Hz.
    path : str, optional
        Only for messages and ``Record.source``.
    dpi : float, optional
        Resolution, used only when no grid is found.
    speed, gain : float, optional
        Force paper speed (mm/s) and gain (mm/mV); otherwise read from the
        calibration pulse, else 25 mm/s and 10 mm/mV (flagged).
    rhythm_leads : str or sequence of str, optional
        The leads of the rhythm strips under a 3x4 grid, top to bottom. By default
        each strip is named after the 3x4 panel it repeats (a strip and the grid
        share one time axis, so the strip's quarter under a panel of its own lead
        is the same drawing; labels are not read); a strip that repeats no panel
        clearly keeps the standard name (II; V1, II, V5), flagged
        ``rhythm_lead_assumed``.

    Returns
    -------
    Record
        12 standard leads in mV, NaN outside each drawn window; ``meta`` holds
        ``source_kind="raster"``, ``layout``, ``speed``, ``gain``,
        ``px_per_mm`` (x, y), ``rotation_deg``, ``confidence`` (per lead 0-1),
        ``path_cost`` (per lead, mean cost per column) and ``digitize_flags``.
    """
    from . import grid as G, perspective as P

    a = np.asarray(rgb)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] < 3:
        raise DigitizeError(f"expected an RGB image, got shape {a.shape}", path)
    a = a[:, :, :3]
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if min(a.shape[:2]) < 64:
        raise DigitizeError(f"image too small for an ECG page ({a.shape[1]}x{a.shape[0]} px)", path)
    vmax = np.maximum(np.maximum(a[..., 0], a[..., 1]), a[..., 2]).astype(np.float32) * (1 / 255)
    vmin = np.minimum(np.minimum(a[..., 0], a[..., 1]), a[..., 2]).astype(np.float32) * (1 / 255)
    paper = float(np.median(vmax[::2, ::2]))
    if float(vmin.std()) < 0.01 or (vmax < paper - _BLANK_CONTRAST).mean() < 1e-4 \
            and (vmin < paper - _BLANK_CONTRAST).mean() < 1e-4:
        raise DigitizeError("blank page: no ink found", path)
    flags = {}
    # the table round a photographed page, a scanner's black lid: white, so that their
    # edges are not read as grid lines or trace rows
    outside = G.off_page(vmax, _dpi_ppm(a, dpi), vmin=vmin)
    if outside is not None:
        vmax[outside] = 1.0
        vmin[outside] = 1.0
        flags["background_masked"] = round(float(outside.mean()), 3)
    # after the table is blanked: its darkness is not the ink's
    vmax, vmin, ink_contrast = _restore_contrast(vmax, vmin, paper)
    if ink_contrast is not None:
        flags["faded_ink_contrast"] = round(ink_contrast, 3)
    bg = G.background(vmax)
    dark = np.clip(1.0 - vmin / bg, 0.0, 1.0)
    angle = G.estimate_skew(dark)
    # a photographed page: converging grid lines, scale changing across the page
    gm = []

    def gridmap(v=vmax, n=vmin, b=bg, d=dark):
        # the grid's own darkness: computed only when a page needs the full measurement
        if not gm:
            gm.append(P.grid_map(v, n, b, d))
        return gm[0]

    m = _perspective(dark, angle, gridmap)
    if m is not None:
        corr = P.refine_lattice(gridmap(), m)
        vmax, vmin = P.warp([vmax, vmin], m, correction=corr)
        flags["perspective_corrected_px"] = round(m["deviation_px"], 1)
        del gm[:]
        if corr is not None:
            flags["grid_lattice_corrected_px"] = round(corr["span_px"], 1)
        bg = G.background(vmax)
        dark = np.clip(1.0 - vmin / bg, 0.0, 1.0)
        angle = float(np.degrees(np.arctan2(-m["params"][2], m["params"][3])))
    elif abs(angle) > 0.05:
        # cubic for the trace channel (+0.4-1.2 dB on rotated pages against bilinear);
        # the darkest channel only feeds the grid search and the chroma test
        vmax = G.rotate(vmax, angle, 1.0)
        vmin = G.rotate(vmin, angle, 1.0, order=1)
        bg = G.background(vmax)
        dark = np.clip(1.0 - vmin / bg, 0.0, 1.0)
    # grid period from the non-white pixels' profiles (x: along columns, y: along rows)
    prof_x, prof_y = dark.mean(axis=0), dark.mean(axis=1)
    ppx, sx = G.grid_period(prof_x, dark.shape[1])
    ppy, sy = G.grid_period(prof_y, dark.shape[0])
    if ppx is not None and ppy is not None and (abs(ppx / ppy - 1) >= 0.03
                                                 or min(sx, sy) <= 0.2 < max(sx, sy)):
        # the grid is square: a mismatch (or one axis's peak weak, the other's clear) is a
        # lost peak on one axis (blur hides the minor grid, trace ink the first major
        # line). A peak at the shorter period implies peaks at its multiples but not the
        # reverse, so try the shorter one on both axes first; then the longer one (thick
        # traces can make a wrong, weak, shorter peak win on one axis: 7.10 px at score
        # 0.04 against the grid's 7.87 at 0.46). The longer one must be clearer: on a page
        # without a grid the rows of traces make a period too (63 px at score 0.27)
        for hint, need in zip(sorted((ppx, ppy)), (0.2, 0.35)):
            qx, tx = G.grid_period(prof_x, dark.shape[1], hint=hint)
            qy, ty = G.grid_period(prof_y, dark.shape[0], hint=hint)
            if qx is not None and qy is not None and min(tx, ty) > need \
                    and abs(qx / qy - 1) < 0.03:
                ppx, sx, ppy, sy = qx, tx, qy, ty
                flags["grid_period_rechecked"] = True
                break
    # a period that makes the page narrower than 60 mm is the traces' rhythm, not a grid
    grid_ok = ppx is not None and ppy is not None and min(sx, sy) > 0.2 \
        and abs(ppx / ppy - 1) < 0.1 and dark.shape[1] / ppx >= 60.0
    if grid_ok and m is None and abs(ppx / ppy - 1) < 0.005:
        # curled or bowed paper (no homography): the grid's lattice shows it. Only on a
        # square grid: periods that disagree mean one of them is wrong (a thick trace's
        # rows can out-peak the grid), and the lattice would be read at a wrong period
        lat = _curl_correction(vmax, vmin, bg, dark, ppx, ppy)
        if lat is not None:
            vmax, vmin, bg, dark, span = lat
            flags["grid_lattice_corrected_px"] = span
            prof_x, prof_y = dark.mean(axis=0), dark.mean(axis=1)
            qx, _ = G.grid_period(prof_x, dark.shape[1], hint=ppx)
            qy, _ = G.grid_period(prof_y, dark.shape[0], hint=ppy)
            ppx, ppy = qx or ppx, qy or ppy
    if grid_ok:
        grid_src = "grid"
    elif dpi:
        ppx = ppy = float(dpi) / 25.4
        grid_src = "dpi"
        flags["scale_from_dpi"] = True
    else:
        ppx = ppy = None
        grid_src = None
    ink, wt, dk = G.trace_ink(vmax, vmin, bg, soft=True, period_y=ppy if grid_ok else None,
                              grid=grid_ok or not dpi, darkness=True)
    del vmax, vmin, dark
    specks = G.remove_specks(ink, wt, dk, px_per_mm=ppx or _dpi_ppm(a, dpi))
    if specks > 1e-4 * ink.size:
        flags["specks_removed"] = specks
    binary = ink > 0.5
    if binary.mean() > 0.2:
        raise DigitizeError(f"not an ECG page: {100 * binary.mean():.0f}% of the page is dark "
                            "ink (a photo or a filled image?)", path)
    if ppx is None:
        # the pulse could still set the scale, but only relative to an assumed gain
        raise DigitizeError("no ECG grid found and the image has no resolution (dpi) to set "
                            "the scale; pass dpi=", path)
    rows = _find_rows(binary, ppy, path)
    n_rows = len(rows)
    auto = layout == "auto"
    if auto:
        if n_rows == 1:
            raise DigitizeError("single-lead strip: one trace row found; its lead cannot be "
                                "named from a layout", path)
        if n_rows not in _ROWS_TO_LAYOUT:
            raise DigitizeError(f"unknown layout: {n_rows} trace rows found (known: 3x4 = 3, "
                                "3x4+II = 4, 3x4+2 = 5, 6x2 or 3x4+3 = 6, 12x1 = 12)", path)
        layout = _ROWS_TO_LAYOUT[n_rows]
    elif n_rows != _LAYOUT_ROWS[layout]:
        raise DigitizeError(f"layout {layout} expects {_LAYOUT_ROWS[layout]} trace rows, "
                            f"found {n_rows}", path)
    pitch = float(np.median(np.diff(rows))) if n_rows > 1 else 30.0 * ppy
    extents, pulses = _row_extents(binary, ink, rows, pitch, ppx, ppy)
    if not grid_ok and not any(p is not None for p in pulses):
        raise DigitizeError("not an ECG page: no grid and no calibration pulse found", path)
    # scale from the pulse (1 mV high, 0.2 s wide) when it is there
    gain_p = [p["height_mm"] for p in pulses if p is not None]
    speed_p = [p["width_mm"] / 0.2 for p in pulses if p is not None]
    if grid_ok and gain is None and speed is None and gain_p:
        # The pulse checks the grid (facts §7.2): when its height and width are both off
        # every standard setting by the same factor, the grid period is what is wrong
        # (JPEG's 8-px blocks or a halftone screen can out-peak the grid lines). Look for
        # the grid at the period the pulse implies; keep it only if both axes show it.
        g, sp = float(np.median(gain_p)), float(np.median(speed_p))
        if _snap(g, _STD_GAINS, 10.0)[1] == "nonstandard" and \
                _snap(sp, _STD_SPEEDS, 25.0, 0.1)[1] == "nonstandard":
            # the smallest correction first: a peak at k periods always exists too
            for g_std in sorted(_STD_GAINS, key=lambda v: abs(np.log(g / v))):
                r_g = g / g_std
                if abs(r_g - 1) < 0.06:
                    continue
                s_std = min(_STD_SPEEDS, key=lambda v: abs(sp / v - r_g))
                if abs(sp / s_std / r_g - 1) > 0.06:
                    continue
                hint = ppx * (r_g * sp / s_std) ** 0.5
                qx, tx = G.grid_period(prof_x, len(prof_x), hint=hint)
                qy, ty = G.grid_period(prof_y, len(prof_y), hint=hint)
                if qx is not None and qy is not None and min(tx, ty) > 0.1 \
                        and abs(qx / qy - 1) < 0.03:
                    for p in pulses:
                        if p is not None:
                            p["height_mm"] *= ppy / qy
                            p["width_mm"] *= ppx / qx
                    ppx, ppy = qx, qy
                    flags["grid_period_from_pulse"] = True
                    gain_p = [p["height_mm"] for p in pulses if p is not None]
                    speed_p = [p["width_mm"] / 0.2 for p in pulses if p is not None]
                    break
    if gain is None:
        gain, flag = _vote(gain_p, _STD_GAINS, 10.0)
        if flag:
            flags["gain_" + flag] = True
    if speed is None:
        # the pulse is 5 mm wide against 10 mm high, so its width reads twice as coarsely,
        # and standard speeds are a factor 2 apart: a wider snap is safe
        speed, flag = _vote(speed_p, _STD_SPEEDS, 25.0, tol=0.1)
        if flag:
            flags["speed_" + flag] = True
    if grid_ok:
        # the autocorrelation peak leaves ~0.01 % (0.2 px over a 10-s row, half a sample
        # at 500 Hz); the drift of the grid's phase along the page pins it 3-5x tighter
        ppx = G.refine_period(prof_x, ppx)
        ppy = G.refine_period(prof_y, ppy)
    pxps = ppx * float(speed)
    thickness = _stroke_thickness(binary, rows, pitch)
    strips = _strip_names(layout, rhythm_leads, path)
    flags_before = dict(flags)
    traced = None
    windows, x0, duration = _lead_windows(layout, extents, pulses, pxps, ppx, strips, flags,
                                          float(fs), thickness, ink.shape[1])
    if auto and layout == "6x2" and not flags.get("6x2_halves_simultaneous"):
        # six continuous rows: a contiguous 6x2 or a 3x4 grid with three rhythm strips.
        # The strips of a 3x4+3 page repeat three of its panels, which no 6x2 row does;
        # the 3x4+3 reading is traced first and kept when at least two strips do.
        alt = dict(flags_before)
        given = rhythm_leads is not None and len(strips) == 3
        w3, x3, d3 = _lead_windows("3x4+3", extents, pulses, pxps, ppx,
                                   strips if given else _STRIPS_DEFAULT["3x4+3"], alt,
                                   float(fs), thickness, ink.shape[1])
        t3, rho3 = _trace_windows(w3, ink, wt, rows, pitch, ppx, thickness)
        found = _strip_leads(t3, ppx)
        if sum(hit is not None for hit, _ in found) >= 2:
            layout, windows, x0, duration, flags = "3x4+3", w3, x3, d3, alt
            traced, rho = _name_strips(t3, ppx, flags, given=given, found=found), rho3
    if traced is None:
        traced, rho = _trace_windows(windows, ink, wt, rows, pitch, ppx, thickness)
        if layout in _STRIPS_DEFAULT and len(_STRIPS_DEFAULT[layout]):
            named = rhythm_leads is not None
            found = None if named else _strip_leads(traced, ppx)
            if auto and layout == "3x4+2" and not named and \
                    not any(hit is not None for hit, _ in found):
                # five full-length rows (a 12x1 page of five leads, or a page whose
                # sixth row was missed) are not a 3x4+2 page, whose strips repeat panels
                raise DigitizeError("unknown layout: 5 trace rows found, and neither of "
                                    "the lower two repeats a panel of the upper three as "
                                    "the rhythm strips of a 3x4+2 page do (pass layout= "
                                    "and rhythm_leads= if it is one)", path)
            traced = _name_strips(traced, ppx, flags, given=named, found=found)
    n_out = int(round(duration * fs))
    sig = np.full((12, n_out), np.nan, np.float32)
    conf = {name: 0.0 for name in STANDARD_12}
    cost = {(n + " (rhythm)" if ri >= 3 and layout in _STRIPS_DEFAULT else n): c
            for n, ri, *_, c in traced}
    stroke = {"half_width_px": round(rho, 3)} if rho > 0 else {}
    parts = [traced]
    if flags.get("6x2_halves_simultaneous"):
        # both halves start at t = 0, each anchored on its own end: each takes its own
        # sub-pixel corrections (the right half of a 100 Hz page read 0.65 px, a third
        # of a sample, late when it took the left half's: its leads 11-17 dB)
        parts = [[t for t in traced if t[0] in STANDARD_12[:6]],
                 [t for t in traced if t[0] in STANDARD_12[6:]]]
    traced, origins = [], {}
    for k, part in enumerate(parts):
        if not part:
            continue
        tag = "" if k == 0 else "_right_half"
        org = x0 if k == 0 else part[0][4]
        end = _origin_from_ink_ends(part, dk, rho, org, duration, fs, pxps, pulses)
        if end is not None:
            stroke["end_shift_px" + tag] = round(end, 3)
            org += end
            part = [t[:2] + (t[2] + end, t[3] + end, t[4] + end) + t[5:] for t in part]
        part = [t[:1] + t[2:8] for t in part]
        # sub-sample time origin from the polyline's vertices (low sampling rates only)
        shift = _vertex_phase(part, pxps / float(fs))
        if shift is not None:
            flags["time_origin_from_vertices" + tag] = round(float(shift), 3)
            org += shift
            part = [(n, xa + shift, xb + shift, xo + shift, xs, ys, fr)
                    for n, xa, xb, xo, xs, ys, fr in part]
        traced += part
        origins[k] = org
    x0 = origins.get(0, x0)   # the page's origin: its first (left) part's
    for name, xa, xb, xorg, xs, ys, frac in traced:
        # samples before the first / after the last point read from ink are unknown (a
        # separator tick or a clipped edge): NaN, not a flat extrapolation of a QRS edge
        x_lo, x_hi = float(xs[0]), float(xs[-1])
        # 0 mV = the isoelectric level, the modal path row (some renderers draw the
        # pulse foot off the trace's baseline, so the foot is not used)
        pr = np.rint(ys).astype(np.int64)
        rb = float(np.bincount(pr - pr.min()).argmax() + pr.min())
        near = np.abs(ys - rb) <= 1.0   # sub-pixel: the mean of the points at that level
        if near.any():
            rb = float(ys[near].mean())
        t = (xs - xorg) / pxps
        ta, tb = (xa - xorg) / pxps, (xb - xorg) / pxps
        k0 = max(0, int(np.ceil(ta * fs - 1e-6)))
        k1 = min(n_out, int(np.floor(tb * fs + 1e-6)) + 1)
        if k1 <= k0:
            continue
        tk = np.arange(k0, k1) / fs
        v = (rb - ys) / (ppy * float(gain))
        vals = np.interp(tk, t, v)
        xk = xorg + tk * pxps
        vals[(xk < x_lo - 0.5) | (xk > x_hi + 0.5)] = np.nan
        i = STANDARD_12.index(name)
        if frac < 0.3:
            flags[f"lead_{name}_unreadable"] = True
            conf[name] = frac
            continue
        seg = sig[i, k0:k1]
        fill = np.isnan(seg)
        seg[fill] = vals[fill]
        conf[name] = max(conf[name], round(frac, 3))
    if not any(c >= 0.3 for c in conf.values()):
        raise DigitizeError("no ECG traces could be followed on the page", path)
    # the limb rows' names checked against Einthoven's law (labels are not read): a page in
    # the Cabrera order is renamed, one that holds neither order is flagged
    from .limbs import check_limb_leads
    sig, limb_res = check_limb_leads(sig, float(fs), conf, flags)
    meta = {"source_kind": "raster", "layout": layout, "speed": float(speed),
            "gain": float(gain), "px_per_mm": (float(ppx), float(ppy)), "scale_source": grid_src,
            "rotation_deg": float(angle), "x_origin_px": float(x0), "confidence": conf,
            "limb_residual": None if not np.isfinite(limb_res) else round(float(limb_res), 3),
            "path_cost": cost, "stroke": stroke,
            "pulses": sum(p is not None for p in pulses), "digitize_flags": flags,
            "format": "image"}
    if flags:
        meta["quality_flags"] = {"digitize_assumptions": True}
    return Record(sig, float(fs), list(STANDARD_12), meta=meta,
                  source=os.fspath(path) if path is not None else None)


def _dpi_ppm(a, dpi):
    """Rough px/mm before the grid is measured: the file's dpi, else a landscape page's
    width taken as the ~280 mm of a letter or A4 sheet."""
    if dpi:
        return float(dpi) / 25.4
    return max(a.shape[0], a.shape[1]) / 280.0


# a lattice displacement under this (px) is left alone: a flat page measures 0.2-0.8
_CURL_MIN_PX = 1.5


def _curl_correction(vmax, vmin, bg, dark, ppx, ppy):
    """A level page whose grid is not one lattice (curled paper, a page bowed on the
    scanner glass): the channels resampled onto the lattice
    (:func:`.perspective.refine_lattice`), with the new paper level and darkness, and
    the largest displacement corrected (px); None when the grid is already even."""
    from . import grid as G, perspective as P

    # a first look on the page's darkness (traces included: cheap, and it errs towards
    # seeing a distortion); the grid's own darkness settles it
    first = P.lattice_correction(dark, (ppx, ppy))
    if first is None or first["span_px"] < _CURL_MIN_PX:
        return None
    gm = P.grid_map(vmax, vmin, bg, dark)
    first = P.lattice_correction(gm, (ppx, ppy))
    if first is None or first["span_px"] < _CURL_MIN_PX:
        return None
    ident = P.identity_map(vmax.shape, ppx)
    # the identity warp's first round is `first` itself: measured on this very image
    corr = P.refine_lattice(gm, ident, px_per_mm=(ppx, ppy), first=first)
    if corr is None:
        return None
    vmax, vmin = P.warp([vmax, vmin], ident, correction=corr, max_growth=1.0)
    bg = G.background(vmax)
    dark = np.clip(1.0 - vmin / bg, 0.0, 1.0)
    return vmax, vmin, bg, dark, round(corr["span_px"], 1)


def _perspective(dark, angle, full=None):
    """The page's perspective correction (:func:`.perspective.rectify_map`), or None."""
    from . import perspective as P

    ppm = P.rough_scale(dark, angle)
    if ppm is None or dark.shape[1] / ppm < 60.0:
        return None
    return P.rectify_map(dark, ppm, angle, full=full)


# A page without calibration pulses shows where its traces start; when the ink's two
# ends (each read to about a pixel, 5 ms at 25 mm/s) give a duration this close to a
# round half second, the duration is taken as round, and the origin from the end.
_ROUND_DURATION_S = 0.012

# How far a stroke's end (the furthest half-darkness crossing along the rows round the
# end sample's) lies past that sample, less the stroke's half width: round and
# projecting caps reach one half width past it, and a crossing read between two pixel
# centres comes out up to 0.1 px short. With this, the origins of ecg-image-kit pages
# (matplotlib's projecting caps, half width 0.84-1.02 px) came within 0.11 px of the
# truth on the clean profile (mean 0.04), 0.07-0.32 px early on the scan profile;
# ecgcore.plot's round caps within 0.06 px at 0.6 pt, 0.07 and 0.13 px early on average
# at 1.0 and 1.6 pt.
_CAP_SHORT_PX = 0.1
# Below this half width (px) the crossing's offset from the cap is not that constant
# (100-dpi pages with 0.35-0.45 px: the binary end read their origin closer), so the
# ends of thin strokes are read as before, from the ink mask.
_END_MIN_RHO = 0.7


def _crossing(dark, r, k, step):
    """Sub-pixel half-darkness crossing of row ``r`` walking from column ``k`` (ink)
    in the direction ``step``; NaN when ``(r, k)`` is not ink, or when the ink runs
    into the image's edge (a page cropped through a trace: no crossing to read)."""
    w = dark.shape[1]
    if dark[r, k] < 0.5:
        return np.nan
    while 0 < k + step < w - 1 and dark[r, k + step] >= 0.5:
        k += step
    if dark[r, k + step] >= 0.5:
        return np.nan
    return k + step * (dark[r, k] - 0.5) / (dark[r, k] - dark[r, k + step])


def _origin_from_ink_ends(traced, dark, rho, x0, duration, fs, pxps, pulses):
    """Correction (px) of the time origin ``x0`` from the sub-pixel ends of the ink and
    the stroke's cap (:func:`_end_shift`), or None. A round duration was anchored on the
    end; one that is not was measured from the traces' start, which then anchors the
    origin; without a pulse both ends are read (on a bilevel scan each end is a whole
    pixel, and the two are independent) and averaged."""
    from_end = duration * 2 == round(duration * 2)
    reads = []
    if from_end:
        reads.append(_end_shift(traced, dark, rho, x0 + (duration - 1.0 / fs) * pxps))
    if not from_end or not any(p is not None for p in pulses):
        reads.append(_end_shift(traced, dark, rho, x0, start=True))
    reads = [v for v in reads if v is not None]
    return float(np.mean(reads)) if reads else None


def _end_shift(traced, dark, rho, x_ref, start=False):
    """Correction (px) of the last sample's column ``x_ref`` from the traces' ends (or,
    with ``start``, of the first sample's column from their starts).

    The binary end of the ink is a whole pixel, and the rows of a page end at the same
    time, so their mean does not dither: the origin was off by up to half a pixel plus
    the error of a cap model built on the quantized stroke thickness (1.0-pt traces: 0.8
    px, two samples at 500 Hz and 200 dpi). Here each row's end is the sub-pixel
    half-darkness crossing of the stroke's darkness ``dark`` (before the chroma test:
    an end pixel over a red grid line is red) along the rows of its last sample, which
    lies the stroke's half width ``rho`` (measured on the flanks) before it, as with
    projecting caps. A round cap's crossing, averaged over a pixel's height, reaches a
    little less far (``ecgcore.plot`` at 1.0-1.6 pt: origins 0.2-0.3 px early where
    only the end is read). A butt cap ends at the last sample itself: such a page reads
    ``rho`` late, which the shape of a square end cannot tell from a projecting one. On
    a bilevel image the crossing falls on a pixel's edge, as the binary end did.

    Returns None when the ends are not read: the stroke's width was not measured or is
    under ``_END_MIN_RHO``, fewer than two rows end on ink, or the correction exceeds
    ``1 + rho`` px (the ends disagree with the ink mask's, e.g. a speck joined to a
    row's end).
    """
    if not rho >= _END_MIN_RHO:
        return None
    h, w = dark.shape
    lim = min(t[2] for t in traced) if start else max(t[3] for t in traced)
    step = -1 if start else 1
    edges = []
    for t in traced:
        xs, ys = t[5], t[6]
        if abs((t[2] if start else t[3]) - lim) > 0.5 or len(xs) < 8 or t[7] < 0.5:
            continue
        # the cap is centred on the end sample: its row is the one to cross, from there
        r = int(round(float(np.interp(x_ref, xs, ys))))
        k = int(round(x_ref))
        if not (1 <= r < h - 1 and 1 <= k < w - 2):
            continue
        for _ in range(int(2 * rho) + 2):   # x_ref may lie past the ink
            if dark[r, k] >= 0.5 or not 1 <= k - step < w - 2:
                break
            k -= step
        if dark[r, k] >= 0.5:
            # the cap's extreme: the furthest crossing of the rows round the end
            # sample's (that row is read from the traced line, to a pixel)
            c = np.array([_crossing(dark, rr, k, step) for rr in (r - 1, r, r + 1)])
            if np.isfinite(c).any():
                edges.append(step * float(np.nanmax(step * c)))
    if len(edges) < 2:
        return None
    shift = float(np.median(edges)) - step * (rho - _CAP_SHORT_PX) - x_ref
    return shift if abs(shift) <= 1.0 + rho else None


def _vertex_phase(traced, pxs):
    """Sub-sample correction (px) of the time origin from the polyline's vertices.

    Every renderer draws a lead as straight segments between its samples, so the
    traced centre line bends only at ``x_org + k * pxs``. When a sample spans at
    least 1.2 px (100 Hz at 200 dpi: 1.97 px) the bends are visible: the phase of
    the traced line's |second difference| at the sample period, summed over all
    leads, gives the vertices' offset from the assumed lattice, to a small fraction
    of a pixel (ink ends only give the origin to +-0.5 px, which at 100 Hz is a
    quarter sample: several dB on every QRS edge).

    Parameters
    ----------
    traced : list of (name, xa, xb, x_org, xs, ys, frac) per lead, page px.
    pxs : float, px per sample.

    Returns
    -------
    float or None
        The shift (px, within half a sample) to add to every lead's origin; None
        when samples are too close together or the vertex lattice is not clear.
    """
    if not (pxs >= 1.2):
        return None
    z, tot = 0j, 0.0
    for name, xa, xb, xorg, xs, ys, frac in traced:
        if frac < 0.5 or len(xs) < 16:
            continue
        c = np.arange(int(np.ceil(xs[0])) + 1, int(np.floor(xs[-1])) - 1, dtype=np.float64)
        if len(c) < 8:
            continue
        y = np.interp(c, xs, ys)
        d2 = np.abs(y[2:] - 2.0 * y[1:-1] + y[:-2])
        # a kink between two columns shares its second difference between them in
        # proportion to its distance, so the weighted phase is sub-pixel; the largest
        # bends (QRS tips) are clipped so that a few do not outvote the lattice
        d2 = np.minimum(d2, np.percentile(d2, 95))
        ph = np.exp(-2j * np.pi * (c[1:-1] - xorg) / pxs)
        z += np.sum(d2 * ph)
        tot += float(np.sum(d2 * d2))
    # with no lattice the phasors add up like a random walk, |z| ~ sqrt(sum d2^2): ask
    # for a resultant well above that (6 sigma) before trusting its phase
    if not (tot > 0 and abs(z) > 6.0 * np.sqrt(tot)):
        return None
    return float(-np.angle(z) / (2 * np.pi) * pxs)


def _vote(values, standard, default, tol=0.06):
    """Setting most pulses agree on: each pulse snapped to a standard value, then the mode."""
    snapped = [_snap(v, standard, default, tol) for v in values]
    if not snapped:
        return default, "assumed"
    std = [round(v, 3) for v, f in snapped if f is None]
    if not std:   # no pulse reads as a standard setting: use the median measurement
        return _snap(float(np.median(values)), standard, default, tol)
    return float(max(set(std), key=lambda k: (std.count(k), k == default))), None


def _snap(value, standard, default, tol=0.06):
    """Nearest standard setting within ``tol`` (relative); the measured value otherwise;
    flags say which."""
    if value is None or not np.isfinite(value) or value <= 0:
        return default, "assumed"
    std = np.asarray(standard)
    j = int(np.argmin(np.abs(std / value - 1)))
    if abs(std[j] / value - 1) < tol:
        return float(std[j]), None
    return float(value), "nonstandard"


def _find_rows(binary, ppy, path):
    """Image rows of the trace baselines (top to bottom)."""
    from scipy.ndimage import maximum_filter1d, uniform_filter1d
    from scipy.signal import find_peaks

    h, w = binary.shape
    k = 4
    wk = (w // k) * k
    cols = binary[:, :wk].reshape(h, wk // k, k).any(axis=2)
    near = maximum_filter1d(cols, size=max(3, int(round(3 * ppy))), axis=0)
    cover = uniform_filter1d(near.mean(axis=1, dtype=np.float32), max(3, int(round(ppy))))
    top = float(cover.max())
    if top < 0.15:
        raise DigitizeError(f"no ECG trace rows found (no ink line crosses more than "
                            f"{100 * top:.0f}% of the page)", path)
    peaks, _ = find_peaks(cover, height=max(0.15, 0.45 * top), distance=max(2, int(8 * ppy)),
                          prominence=0.1 * top)
    if len(peaks) == 0:
        raise DigitizeError("no ECG trace rows found", path)
    peaks = _add_weak_rows(binary, cover, list(peaks), top, ppy)
    # refine to the most inked image row near each peak: the isoelectric line
    proj = binary.sum(axis=1, dtype=np.int64)
    half = int(3 * ppy)
    out = []
    for p in peaks:
        a, b = max(0, p - half), min(h, p + half + 1)
        out.append(a + int(np.argmax(proj[a:b])))
    return np.array(sorted(set(out)), np.int64)


def _close_gaps(occ, n):
    """Gaps under ``n`` px in a 1-D occupancy joined (a binary closing). scipy's closing
    erodes from an empty border, which cut the last ``n / 2`` columns off a trace that
    runs into the image's edge (a cropped page: its end read 12 px = 0.06 s early at 200
    dpi); padded, the ends stay where the ink ends."""
    from scipy.ndimage import binary_closing

    return binary_closing(np.pad(occ, n), np.ones(n, bool))[n:-n]


def _add_weak_rows(binary, cover, rows, top, ppy):
    """Rows whose trace wanders (baseline drift, large waves) spread their ink over many
    image rows, so their coverage peak is low. Layouts space rows evenly: a weaker peak
    is a trace row when it continues the lattice of the strong rows (one pitch from an
    accepted row, within 15 %) and a continuous ink line runs through its band."""
    from scipy.signal import find_peaks

    if len(rows) < 2:
        return np.asarray(rows)
    rows = sorted(int(r) for r in rows)
    pitch = float(np.median(np.diff(rows)))
    weak, props = find_peaks(cover, height=max(0.08, 0.15 * top), distance=max(2, int(8 * ppy)),
                             prominence=0.05 * top)
    h, w = binary.shape
    # the strong rows' longest continuous ink run, as the yardstick of a trace line
    def longest(r):
        a, b = max(0, int(r - 0.35 * pitch)), min(h, int(r + 0.35 * pitch) + 1)
        occ = _close_gaps(binary[a:b].any(axis=0), max(3, int(ppy)))
        if not occ.any():
            return 0
        d = np.diff(np.concatenate([[0], occ.astype(np.int8), [0]]))
        return int((np.flatnonzero(d == -1) - np.flatnonzero(d == 1)).max())
    ref = np.median([longest(r) for r in rows])
    order = np.argsort(-props["peak_heights"])
    changed = True
    while changed:
        changed = False
        for j in order:
            p = int(weak[j])
            dist = np.abs(np.asarray(rows) - p)
            if dist.min() < 0.6 * pitch or not (0.85 * pitch <= dist.min() <= 1.15 * pitch):
                continue
            if longest(p) >= 0.5 * ref:
                rows.append(p)
                rows.sort()
                changed = True
    return np.asarray(rows)


def _stroke_thickness(binary, rows, pitch):
    """Median vertical run length of ink on the flat parts of the traces (px)."""
    h = binary.shape[0]
    vals = []
    for r in rows:
        a, b = max(0, int(r - 4)), min(h, int(r + 5))
        cnt = binary[a:b].sum(axis=0)
        cnt = cnt[(cnt > 0) & (cnt < 9)]
        if len(cnt):
            vals.append(np.median(cnt))
    return float(np.median(vals)) if vals else 2.0


def _row_extents(binary, ink, rows, pitch, ppx, ppy):
    """Per row: (first, last) ink column of the trace and the calibration pulse, if any."""
    h, w = binary.shape
    ext, pulses = [], []
    for r in rows:
        a, b = max(0, int(r - 0.3 * pitch)), min(h, int(r + 0.3 * pitch) + 1)
        band = binary[a:b]
        occ = band.any(axis=0)
        # join gaps shorter than 3 mm (flat stretches drawn thin, separator gaps)
        occ = _close_gaps(occ, max(3, int(3 * ppx)))
        idx = np.flatnonzero(occ)
        if len(idx) == 0:
            ext.append((0, 0, []))
            pulses.append(None)
            continue
        # runs longer than 15 mm are trace (labels and specks are shorter)
        cuts = np.flatnonzero(np.diff(idx) > 1)
        starts = np.concatenate([[idx[0]], idx[cuts + 1]])
        ends = np.concatenate([idx[cuts], [idx[-1]]])
        long = (ends - starts) >= 15 * ppx
        if not long.any():
            long = (ends - starts) == (ends - starts).max()
        runs = [(int(s0), int(e0)) for s0, e0 in zip(starts[long], ends[long])]
        xs, xe = runs[0][0], runs[-1][1]
        ext.append((xs, xe, runs))
        pa, pb = max(0, int(r - 0.6 * pitch)), min(h, int(r + 0.2 * pitch) + 1)
        p = _find_pulse(_pulse_mask(binary[pa:pb], ink[pa:pb]), pa, xs, ppx, ppy)
        if p is not None:
            p["trace_start"] = _trace_start(band.any(axis=0), p["x_end"], ppx)
        pulses.append(p)
    return ext, pulses


def _trace_start(occ, x_pulse_end, ppx):
    """First ink column of the trace after a pulse that stands apart from it (a gap of
    1 px to 5 mm after its falling edge); None when the pulse runs into the trace."""
    w = len(occ)
    k = int(x_pulse_end) + 1
    stop = min(w, k + int(5 * ppx))
    while k < stop and occ[k]:      # the falling edge's own width
        k += 1
    gap = k
    while k < stop and not occ[k]:
        k += 1
    if k == gap or k >= stop:
        return None
    return int(k)


def _pulse_mask(binary, ink):
    """``binary`` plus the faint pixel pairs of thin straight strokes: two neighbours
    (across a column or a row) both under the ink threshold whose ink sums over it.

    A pulse's edges are exactly vertical and its top exactly horizontal; a thin line
    that falls between two pixel columns (a 100-dpi page, blurred, resampled by the
    deskew) darkens both by half, and neither passes the threshold: the pulse's edges
    vanished from the mask and the pulse was lost (speed, gain and time origin then
    assumed). Pairs with a pixel already over the threshold add nothing, so strokes
    the threshold sees keep their width."""
    weak = np.where(binary, 0.0, ink)
    pair_x = (weak[:, 1:] + weak[:, :-1] >= 0.5) & (weak[:, 1:] > 0.15) & (weak[:, :-1] > 0.15)
    pair_y = (weak[1:] + weak[:-1] >= 0.5) & (weak[1:] > 0.15) & (weak[:-1] > 0.15)
    out = binary.copy()
    out[:, 1:] |= pair_x
    out[:, :-1] |= pair_x
    out[1:] |= pair_y
    out[:-1] |= pair_y
    return out


def _find_pulse(band, row_off, xs, ppx, ppy):
    """A rectangular 1-mV pulse at the start of a row: two tall edges joined at the top.

    ``band`` is the ink mask of the rows around the trace row (wide enough to hold a
    20 mm/mV pulse); ``xs`` the first ink column of the row. Heights are measured
    between line centres (the top line's row of most ink, the foot's lowest ink row
    less half a stroke), so stroke thickness does not bias the gain.
    """
    w = band.shape[1]
    # the pulse may stand apart from the trace (its top outside the trace band, so the
    # row's first long ink run starts at its falling edge): search from 12 mm before
    x_lo = max(0, int(xs - 12 * ppx))
    c1 = min(w, int(xs + 16 * ppx))
    win = band[:, x_lo:c1]
    xs = x_lo
    cnt = win.sum(axis=0)
    tall = cnt >= 2.0 * ppy
    if not tall.any():
        return None
    idx = np.flatnonzero(tall)
    cuts = np.flatnonzero(np.diff(idx) > 1)
    groups = np.split(idx, cuts + 1)
    # the first pair of tall edges joined by a flat top line is the pulse (text and QRS
    # complexes make tall columns too, but no top line of the pair's width)
    for g in range(len(groups) - 1):
        e1, e2 = groups[g], groups[g + 1]
        width_px = float(e2.mean() - e1.mean())
        if not (1.5 * ppx <= width_px <= 12 * ppx):
            continue
        inner = win[:, int(e1[-1]) + 1:int(e2[0])]
        if inner.shape[1] < 2:
            continue
        proj = inner.sum(axis=1)
        top = int(np.argmax(proj))
        if proj[top] >= 0.8 * inner.shape[1]:
            break
    else:
        return None
    # the foot: where the ink run of the tallest edge column, from the top line down, ends
    feet = []
    for e in (e1, e2):
        lo, hi = max(0, int(e[0]) - 1), int(e[-1]) + 2
        col = win[:, lo:hi].any(axis=1)     # slanted, anti-aliased edges span columns
        col = col | np.roll(col, 1) | np.roll(col, -1)   # bridge one-pixel breaks
        off = np.flatnonzero(~col[top:])
        feet.append(top + (int(off[0]) if len(off) else len(col) - top) - 1)
    # an edge run can only be lengthened (a trace leaving the pulse downwards joins it),
    # never shortened: the shorter edge ends at the foot
    foot_px = int(min(feet))
    # stroke thickness from the top line's vertical extent
    run = top
    while run + 1 < len(proj) and proj[run + 1] >= 0.5 * proj[top]:
        run += 1
    t0 = top
    while t0 - 1 >= 0 and proj[t0 - 1] >= 0.5 * proj[top]:
        t0 -= 1
    thick = run - t0 + 1
    top_c = 0.5 * (t0 + run)
    foot_c = foot_px - (thick - 1) / 2
    height_mm = (foot_c - top_c) / ppy
    if height_mm < 1.5:
        return None
    return {"x_start": xs + int(e1[0]), "x_end": xs + int(e2[-1]), "top": row_off + top_c,
            "foot": row_off + foot_c, "height_mm": float(height_mm),
            "width_mm": width_px / ppx}


def _lead_windows(layout, extents, pulses, pxps, ppx, strips, flags, fs=500.0,
                  thickness=2.0, width=None):
    """(lead, row index, x_start, x_end, blanked (lo, hi) column intervals) per drawn
    lead; x0; duration.

    Time is anchored on the end of the ink: the trace's start may be hidden by the
    calibration pulse's tail or sit an unknown distance after it, its end is clean.
    A page of duration D drawn at ``fs`` ends with the sample at D - 1/fs (renderers put
    sample i at i / fs), which is 2 px at 100 Hz and 200 dpi, half a sample: enough to
    cost several dB on QRS edges, so that last sample period is taken off.

    The last ink column is not the last sample either: the stroke's cap reaches past
    it by 0 (butt cap) to half the line width (round or projecting cap), and the ink
    mask keeps a pixel once about 0.31 of it is covered. With the cap style unknown,
    the middle of that range is taken. The mask's vertical run of a stroke of width
    ``lw`` holds on average ``lw + 1 - 2 x 0.31`` pixels, so ``lw = thickness - 0.38``
    and the last sample sits ``lw / 4 - 0.31`` px before the last ink column (0.34 px
    for a 3-px run; at most ~0.4 px off for any cap, against up to 1.2 px when the cap
    is ignored).

    A page cropped through its traces (the ink runs into the image's right edge,
    ``width``) has no clean end: it is anchored on its start instead (the pulse's edge,
    else the first ink), and its duration is taken as the standard 10 s when what is
    left fits in it, flagged ``trace_cut_at_page_edge`` (the seconds missing). A page
    cropped through its starts (the ink begins at the left edge and no pulse is left)
    is anchored on its end with that duration.
    """
    tail = 1.0 / fs
    cap = max(0.0, (float(thickness) - 0.38) / 4.0 - 0.31)
    x_end = _row_end(extents, ppx) - cap
    cut = width is not None and x_end + cap >= width - 2.0
    starts = []
    for (xs, xe, _), p in zip(extents, pulses):
        if p is not None and cut and p.get("trace_start") is not None:
            # no end to anchor on: the trace's own first ink, where it stands apart
            starts.append(p["trace_start"] + cap)
        elif p is not None:
            # the trace begins after the pulse's falling edge (some renderers leave a tail)
            starts.append(p["x_end"] + 0.5 * ppx)
        else:
            starts.append(xs + cap)   # the first sample lies inside the ink, as the last
    x0_raw = float(np.median(starts))
    if layout == "6x2":
        out, x0, dur = _windows_6x2(extents, x0_raw, x_end, pxps, ppx, flags, tail, cap, cut)
        return _blank_pulse_edges(out, pulses, ppx), x0, dur
    dur_raw = (x_end - x0_raw) / pxps + tail
    dur = round(dur_raw * 2) / 2
    # the ink starting at the image's left edge, no pulse: a page cropped through its
    # starts (what ink is left there may be the pulse's tail), anchored on the end
    cut_left = not cut and all(p is None for p in pulses) and \
        all(e[0] <= 1 for e in extents if e[1] > e[0])
    if cut:
        x0, dur = x0_raw, _uncut_duration(dur_raw, flags)
    elif cut_left:
        dur = _uncut_duration(dur_raw, flags)
        x0 = x_end - (dur - tail) * pxps
    elif dur > 0 and (abs(dur - dur_raw) < 0.3 and any(p is not None for p in pulses)
                      or abs(dur - dur_raw) < _ROUND_DURATION_S):
        # a pulse's tail hides where the trace starts: trust a round duration from the
        # end; without a pulse, when both ends of the ink give one within their reading
        x0 = x_end - (dur - tail) * pxps
    else:
        x0, dur = x0_raw, dur_raw
        flags.setdefault("duration_unrounded", True) if abs(dur - round(dur * 2) / 2) > 0.05 \
            else None
    span = dur * pxps
    out = []
    if layout in _STRIPS_DEFAULT:
        cw = span / 4
        # the strips first: where a strip repeats a panel's lead, its full length is kept
        for k, name in enumerate(strips):
            out.append((name, 3 + k, x0, x0 + span, [], x0))
        for ri in range(3):
            for c, name in enumerate(_COLS_3x4[ri]):
                xa, xb = x0 + c * cw, x0 + (c + 1) * cw
                blank = ([_tick(xa, ppx)] if c > 0 else []) + ([_tick(xb, ppx)] if c < 3 else [])
                out.append((name, ri, xa, xb if c < 3 else x0 + span, blank, x0))
    elif layout == "12x1":
        for ri, name in enumerate(STANDARD_12):
            out.append((name, ri, x0, x0 + span, [], x0))
    return _blank_pulse_edges(out, pulses, ppx), x0, dur


def _tick(x, ppx):
    """The columns (lo, hi) a separator tick at column ``x`` may cover."""
    return (x - _TICK_MM * ppx, x + _TICK_MM * ppx)


def _blank_pulse_edges(windows, pulses, ppx):
    """Windows that begin at their row's calibration pulse also blank its falling edge
    and whatever of the pulse lies in the window: where the trace runs on from the
    pulse's foot (ecg-image-kit pages draw the pulse over the trace's first 0.025 s),
    the tracer climbed the edge and the lead's first samples read the pulse's 1 mV (a
    lead's first 0.06 s held 22-89 % of its error on the kit's clean pages: lead I or
    III at 5-12 dB). Blanked, those samples are not read (NaN)."""
    out = []
    for name, ri, xa, xb, blank, xorg in windows:
        p = pulses[ri] if ri < len(pulses) else None
        if p is not None and xa <= p["x_end"] + 1.0:
            # from the window's start: the pulse's top may reach into it too
            blank = list(blank) + [(xa - 1.0, p["x_end"] + 1.0)]
        out.append((name, ri, xa, xb, blank, xorg))
    return out


def _strip_names(layout, rhythm_leads, path):
    """The strips' provisional names: the caller's, checked as ecgcore.plot checks them,
    else the layout's standard. Six rows may still turn out to be 3x4+3, so a layout
    without strips keeps the caller's names (their count is checked when they are used)."""
    if layout not in _STRIPS_DEFAULT:
        if rhythm_leads is None:
            return ()
        names = (rhythm_leads,) if isinstance(rhythm_leads, str) else tuple(rhythm_leads)
        bad = [n for n in names if n not in STANDARD_12]
        if bad:
            raise DigitizeError(f"rhythm_leads= names unknown leads {bad}", path)
        return names
    try:
        return rhythm_leads_for(layout, rhythm_leads)
    except ConfigError as exc:
        raise DigitizeError(str(exc), path) from None


def _trace_windows(windows, ink, wt, rows, pitch, ppx, thickness):
    """Trace each window with the DP kernel: per window ``(name, row index, xa, xb, xorg,
    xs, ys, share of the path on ink, path cost per column)``, xs/ys in page pixels; and
    the stroke's half width measured on the steep flanks (px, median over windows; 0
    when not measured)."""
    from ._trace_kernels import column_points, dp_trace

    h = ink.shape[0]
    traced, rhos = [], []
    for name, ri, xa, xb, blank, xorg in windows:
        r0 = int(max(0, rows[ri] - 0.95 * pitch))
        r1 = int(min(h, rows[ri] + 0.95 * pitch))
        xa_i, xb_i = int(np.floor(xa)), int(np.ceil(xb)) + 1
        xa_i, xb_i = max(0, xa_i), min(ink.shape[1], xb_i)
        if xb_i - xa_i < 4 or r1 - r0 < 4:
            continue
        sub = np.ascontiguousarray(ink[r0:r1, xa_i:xb_i])
        wsub = np.ascontiguousarray(wt[r0:r1, xa_i:xb_i])
        for lo, hi in blank:   # separator ticks at column joins, a pulse's edge: not signal
            c0 = int(np.floor(lo)) - xa_i
            c1 = int(np.ceil(hi)) + 1 - xa_i
            sub[:, max(0, c0):max(0, c1)] = 0.0
            wsub[:, max(0, c0):max(0, c1)] = 0.0
        path_rows, total = dp_trace(sub, float(rows[ri] - r0), 0.5 * pitch, 0.3, 0.5, 0.01)
        xs, ys, good, on_ink, rho = column_points(sub, wsub, path_rows, 0.45,
                                                  max(0.0, (thickness - 1) / 2), _ENVELOPE, -1.0)
        if rho > 0:
            rhos.append(rho)
        if good.sum() >= 2:   # interpolate over paper gaps instead of trusting them
            xs, ys = xs[good], ys[good]
        traced.append((name, ri, xa, xb, xorg, xs + xa_i, ys + r0, float(on_ink.mean()),
                       float(total) / sub.shape[1]))
    return traced, (float(np.median(rhos)) if rhos else 0.0)


# A strip repeats a panel when their traced drawings differ by less than this share of
# their size, and by less than half as much as from any other panel. The difference of
# two tracings of the same samples is tracing noise, so it is smoothed over 1 mm and its
# linear trend (residual skew) removed before it is measured. Measured on ecgcore.plot
# pages of 10 real records (clean, 100 dpi, blur + noise + JPEG + 3 deg rotation):
# repeats 0.00-0.27 (95 % under 0.12), the closest other panel 0.08 and more on 6x2 pages
# read as 3x4+3; at 0.25 / 0.5: 105 strips named right, 0 wrong, 3 left unnamed (two
# leads of one record drawn almost alike, V4 and V5), no 6x2 strip matched.
_STRIP_MATCH = 0.25
_STRIP_RATIO = 0.5


def _strip_leads(traced, ppx):
    """For each traced rhythm strip (row 3 and below, in order): ``(lead, errors)``, the
    3x4 panel it repeats (None when no panel matches clearly) and the error against
    each panel's lead.

    A strip and the grid share one time axis, so under the panel of the strip's own lead
    (one quarter of the page) the two rows show the same samples; the panels of other
    leads, in their own quarters, do not."""
    from scipy.ndimage import uniform_filter1d

    panels = [t for t in traced if t[1] < 3]
    k = max(3, int(round(ppx)))
    found = []
    for strip in (t for t in traced if t[1] >= 3):
        errs = {}
        for name, _, xa, xb, _, xs, ys, _, _ in panels:
            # whole columns inside both drawings, 1 mm clear of the separator ticks
            lo = max(xa + ppx, xs[0], strip[5][0])
            hi = min(xb - ppx, xs[-1], strip[5][-1])
            cols = np.arange(np.ceil(lo), np.floor(hi) + 1)
            if len(cols) < 4 * k:
                continue
            dp = np.interp(cols, xs, ys)
            ds = np.interp(cols, strip[5], strip[6])
            dp -= np.median(dp)
            ds -= np.median(ds)
            size = float(np.mean(np.abs(ds)) + np.mean(np.abs(dp)))
            d = ds - dp
            t = cols - cols.mean()
            d -= np.polyval(np.polyfit(t, d, 1), t)
            errs[name] = 2.0 * float(np.mean(np.abs(uniform_filter1d(d, k)))) / max(size, 1.0)
        order = sorted(errs, key=errs.get)
        best = errs[order[0]] if order else float("inf")
        second = errs[order[1]] if len(order) > 1 else float("inf")
        clear = best < _STRIP_MATCH and best < _STRIP_RATIO * second
        found.append((order[0] if clear else None, errs))
    return found


def _name_strips(traced, ppx, flags, given=False, found=None):
    """Rename the traced rhythm strips after the panels they repeat (unless the caller
    named them) and record in ``flags`` what was matched, assumed or guessed.
    ``found``: :func:`_strip_leads` of ``traced``, when the caller has it already.

    A strip that repeats no panel clearly keeps its standard name when that lead is
    among the plausible ones (within twice the best error); otherwise the standard
    name is certainly wrong and the closest panel's lead is taken, flagged uncertain
    (two leads drawn almost alike, such as V4 and V5 of one record)."""
    strips = [t for t in traced if t[1] >= 3]
    if given:
        flags["rhythm_leads"] = flags["rhythm_leads_given"] = [t[0] for t in strips]
        return traced
    names, assumed, uncertain = [], [], []
    if found is None:
        found = _strip_leads(traced, ppx)
    for t, (hit, errs) in zip(strips, found):
        if hit is None and errs:
            best = min(errs, key=errs.get)
            if errs.get(t[0], np.inf) > 2.0 * errs[best] and errs[best] < _STRIP_MATCH:
                hit = best
                uncertain.append(best)
        names.append(hit if hit is not None else t[0])
        if hit is None:
            assumed.append(t[0])
    flags["rhythm_leads"] = names
    if assumed:
        flags["rhythm_lead_assumed"] = assumed
    if uncertain:
        flags["rhythm_lead_uncertain"] = uncertain
    renamed = iter(names)
    return [(next(renamed),) + t[1:] if t[1] >= 3 else t for t in traced]


def _uncut_duration(dur_raw, flags):
    """A cropped page's duration (s) from the part left: the standard 10 s when it fits
    (a little more ink than 10 s is a pulse's tail cut with the page)."""
    dur = 10.0 if 5.0 < dur_raw < 10.5 else float(np.ceil(dur_raw * 2 - 0.1) / 2)
    flags["trace_cut_at_page_edge"] = round(max(0.0, dur - dur_raw), 3)
    return dur


def _windows_6x2(extents, x0_raw, x_end, pxps, ppx, flags, tail=0.002, cap=0.0, cut=False):
    """6x2: limb leads left, chest leads right. Halves separated by a visible gap are drawn
    simultaneously (each from t = 0, as ecgcore.plot does); contiguous halves continue the
    time axis (the right half starts where the left one ends). Times are anchored on the
    ends of the ink (see :func:`_lead_windows`); on a page cropped through its traces
    (``cut``) on the starts. ``x0_raw`` and ``x_end`` are the rows' first and last
    sample columns as :func:`_lead_windows` reads them."""
    two = _middle_gaps(extents, ppx)
    out = []
    if two:
        left_end = float(np.median([g[0] for g in two])) - cap
        right_start = float(np.median([g[1] for g in two]))
        # the right half starts on clean ink (no pulse): its length sets the duration
        d_raw = (x_end - right_start) / pxps + tail
        if cut:   # the left half is whole: its length sets the duration
            d_raw = (left_end - x0_raw) / pxps + tail
        dur = round(d_raw * 2) / 2
        if not (dur > 0 and abs(dur - d_raw) < 0.3):
            dur = max(left_end - x0_raw, x_end - right_start) / pxps + tail
            flags["duration_unrounded"] = True
        x0 = left_end - (dur - tail) * pxps
        # cut: the right half's first sample lies inside its first ink, as a row's does
        xr = right_start + cap if cut else x_end - (dur - tail) * pxps
        if cut:
            flags["trace_cut_at_page_edge"] = round(max(0.0, dur - (x_end - xr) / pxps - tail), 3)
        for ri in range(6):
            out.append((STANDARD_12[ri], ri, x0, left_end, [], x0))
            out.append((STANDARD_12[6 + ri], ri, xr, x_end, [], xr))
        flags["6x2_halves_simultaneous"] = True
        return out, x0, dur
    d_raw = (x_end - x0_raw) / pxps + tail
    dur = round(d_raw * 2) / 2
    if cut:
        x0, dur = x0_raw, _uncut_duration(d_raw, flags)
    elif dur > 0 and abs(dur - d_raw) < 0.3:
        x0 = x_end - (dur - tail) * pxps
    else:
        x0, dur = x0_raw, d_raw
        flags["duration_unrounded"] = True
    mid = x0 + 0.5 * dur * pxps
    for ri in range(6):
        out.append((STANDARD_12[ri], ri, x0, mid, [_tick(mid, ppx)], x0))
        out.append((STANDARD_12[6 + ri], ri, mid, x_end, [_tick(mid, ppx)], x0))
    return out, x0, dur






def _middle_gaps(extents, ppx):
    """The ``(left end, right start)`` of the gap between side-by-side 6x2 halves in each
    row that shows it, or [] when the page has no such gap. The halves' gap lies at one
    column in every row, near the middle of the page; a trace that wanders out of its
    row's band or fades leaves gaps too, but at random places, so at least two thirds of
    the rows must show a gap within 3 mm of the rows' median one."""
    lo = min(e[0] for e in extents)
    hi = max(e[1] for e in extents)
    gaps = []
    for _, _, runs in extents:
        inner = [(a[1], b[0]) for a, b in zip(runs[:-1], runs[1:])]
        if inner:   # the gap nearest the middle of the page
            gaps.append(min(inner, key=lambda g: abs(0.5 * (g[0] + g[1]) - 0.5 * (lo + hi))))
    if 3 * len(gaps) < 2 * len(extents):
        return []
    mid = float(np.median([0.5 * (a + b) for a, b in gaps]))
    if not (lo + 0.3 * (hi - lo) < mid < lo + 0.7 * (hi - lo)):
        return []
    same = [g for g in gaps if abs(0.5 * (g[0] + g[1]) - mid) <= 3 * ppx]
    return same if 3 * len(same) >= 2 * len(extents) else []


def _row_end(extents, ppx):
    """Last trace column of the page. Every row of the standard layouts ends at the same
    time, but a faint or blurred row's last ink fades early and renderers may stop some
    rows one sample short, so the reading comes from the latest rows: the mean of the
    row ends within 1 mm of the latest one. Each end is a whole pixel, but the rows'
    last segments leave the pixel grid at different slopes and heights, so their mean
    dithers below a pixel (the latest end alone is up to a pixel off: half a sample at
    500 Hz and 50 mm/s). A latest end more than 1 mm beyond the next one (a speck or a
    stroke of handwriting joined to that row's end) is dropped first."""
    ends = sorted((float(e[1]) for e in extents), reverse=True)
    while len(ends) > 1 and ends[0] - ends[1] > ppx:
        ends.pop(0)
    late = [e for e in ends if ends[0] - e <= ppx]
    return float(np.mean(late))
