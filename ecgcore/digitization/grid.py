"""ECG paper geometry from a raster page: deskew, grid period (scale), trace ink.

All functions take the two channel extremes of an RGB page as float32 arrays in
[0, 1]: ``vmax`` (the brightest channel) and ``vmin`` (the darkest channel).
A coloured grid line is bright in one channel, so it is dark only in
``vmin``; the trace is dark in every channel, so it is dark in ``vmax`` too.
That separation works for any grid hue without matching exact colours
(facts/digitization.md §7.3); grey (black-and-white) grids are removed as
thin lines that span the page (:func:`trace_ink`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["background", "off_page", "estimate_skew", "remap", "rotate", "grid_period", "refine_period",
           "trace_ink"]


def _block_reduce_mean(a: np.ndarray, k: int) -> np.ndarray:
    h, w = (a.shape[0] // k) * k, (a.shape[1] // k) * k
    return a[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3), dtype=np.float32)


def background(vmax: np.ndarray, block: int = 64) -> np.ndarray:
    """Smooth paper brightness (scanner shading, stains), same shape as ``vmax``.

    The 90th percentile of the brightest channel in ``block``-px tiles (read on
    a 4x sub-sampled copy, since paper dominates every tile), bilinearly
    up-sampled. Dividing by it makes "dark" mean "darker than the paper here".
    """
    from scipy.ndimage import zoom, uniform_filter

    s = max(1, block // 16)
    sub = vmax[::s, ::s]
    b = 16
    h, w = (sub.shape[0] // b) * b, (sub.shape[1] // b) * b
    if h == 0 or w == 0:
        return np.full(vmax.shape, max(float(np.percentile(vmax, 90)), 1e-3), np.float32)
    tiles = sub[:h, :w].reshape(h // b, b, w // b, b).transpose(0, 2, 1, 3).reshape(h // b, w // b, -1)
    lev = np.percentile(tiles, 90, axis=2).astype(np.float32)
    lev = uniform_filter(lev, 3, mode="nearest")
    if float(lev.max() - lev.min()) < 0.06:
        return np.float32(max(float(np.median(lev)), 0.05))   # even paper: one level
    out = zoom(lev, (vmax.shape[0] / lev.shape[0], vmax.shape[1] / lev.shape[1]), order=1,
               mode="nearest", grid_mode=True)
    out = out[:vmax.shape[0], :vmax.shape[1]]
    if out.shape != vmax.shape:  # zoom rounding: pad with the edge
        out = np.pad(out, ((0, vmax.shape[0] - out.shape[0]), (0, vmax.shape[1] - out.shape[1])),
                     mode="edge")
    return np.maximum(out, 0.05)


def _ink_points(img: np.ndarray, size: int, q: float, stride: int = 1):
    """Coordinates (y, x) and weights of the darkest pixels of ``img`` (grid lines and
    traces) for projection profiles: the image minus its ``size``-px box mean (a uniform
    tint, coloured or stained paper, would favour angle 0 by edge effects), pixels above
    the ``q`` quantile (of every ``stride``-th pixel) and above 0.02."""
    from scipy.ndimage import uniform_filter

    hp = img - uniform_filter(img, size, mode="nearest")
    w = hp.ravel().astype(np.float64)
    keep = np.flatnonzero(w > max(0.02, float(np.quantile(w[::stride], q))))
    ys, xs = np.divmod(keep, img.shape[1])
    return ys.astype(np.float64), xs.astype(np.float64), w[keep]


def _projection(ys, xs, w, angle_deg: float, n: int) -> np.ndarray:
    """Projection profile of weighted points along the lines ``y = y0 + x tan(angle)``, of
    length ``n`` plus the shear's padding each side (``n``: the points' x and y extent)."""
    t = np.tan(np.radians(angle_deg))
    pad = int(np.ceil(abs(t) * n)) + 1
    r = np.rint(ys - xs * t).astype(np.int64) + pad
    return np.bincount(r, weights=w, minlength=n + 2 * pad)


def _profile_energy(img: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Sum of squared row sums after shearing ``img`` by each angle (projection profile)."""
    ys, xs, w = _ink_points(img, 7, 0.85)
    out = np.empty(len(angles_deg))
    for i, a in enumerate(angles_deg):
        prof = _projection(ys, xs, w, a, img.shape[1])
        out[i] = float(prof @ prof)
    return out


def estimate_skew(dark: np.ndarray, max_deg: float = 10.0) -> float:
    """Page rotation in degrees (positive: content turned counter-clockwise... on screen).

    Projection-profile search: the angle whose sheared row profile of the
    non-white pixels (grid lines and traces) has the most energy. Coarse on a
    strongly down-sampled copy, then refined on a finer one and by a parabola.

    Parameters
    ----------
    dark : float32 (h, w), non-whiteness of the page (grid and ink), 0 = paper.
    max_deg : float, largest rotation searched.

    Returns
    -------
    float
        The angle ``a`` (degrees) such that horizontal page lines run along
        ``y = y0 + x tan(a)`` in the image.
    """
    w = dark.shape[1]
    k = max(1, int(round(w / 550)))
    small = _block_reduce_mean(dark, 2 * k)
    coarse = np.arange(-max_deg, max_deg + 1e-9, 0.5)
    e = _profile_energy(small, coarse)
    a0 = float(coarse[int(np.argmax(e))])
    mid = _block_reduce_mean(dark, k)
    fine = a0 + np.arange(-0.5, 0.5 + 1e-9, 0.1)
    e = _profile_energy(mid, fine)
    i = int(np.argmax(e))
    a = float(fine[i])
    if 0 < i < len(fine) - 1:
        den = e[i - 1] - 2 * e[i] + e[i + 1]
        if den < 0:
            a += 0.1 * 0.5 * (e[i - 1] - e[i + 1]) / den
    return a


def remap(img: np.ndarray, H, shape, order: int = 3, fill: float = 1.0, field=None) -> np.ndarray:
    """Resample ``img`` through a projective map (the C++ kernel ``_kernels.warp``).

    Parameters
    ----------
    img : 2-D array, converted to contiguous float32.
    H : (3, 3) array mapping output pixel ``(x, y, 1)`` to the input's homogeneous point.
    shape : (rows, cols) of the output.
    order : 3 (Keys cubic convolution), "spline" (scipy's cubic B-spline: prefiltered
        here, sharper, a prefilter pass dearer) or 1 (bilinear).
    fill : value outside the input.
    field : dict, optional
        A displacement of each output pixel before ``H``: ``coef`` (two sequences of
        six coefficients of 1, X, Y, X^2, XY, Y^2), ``centre`` (x, y) and ``norm``
        with ``X = (x - cx) / norm`` (:func:`.perspective.lattice_correction`).

    Cubic convolution, not bilinear, by default: a bilinear resampling at a fraction of
    a pixel widens a thin trace unevenly, and the time origin (read from the ink's ends
    and bends) moves with it.
    """
    from .._kernels import warp as _warp

    src = np.ascontiguousarray(img, dtype=np.float32)
    if order == "spline":
        from scipy.ndimage import spline_filter
        src = spline_filter(src, 3, output=np.float32, mode="nearest")
        order = 4
    Hm = np.asarray(H, np.float64).reshape(3, 3)
    if not np.all(np.isfinite(Hm)):
        raise ValueError("remap: the map has non-finite entries")
    oh, ow = int(shape[0]), int(shape[1])
    if field is None:
        coef, cx, cy, norm = [0.0] * 12, 0.0, 0.0, 1.0
    else:
        coef = [float(v) for v in np.concatenate([np.ravel(field["coef"][0]),
                                                  np.ravel(field["coef"][1])])]
        if len(coef) != 12:
            raise ValueError("remap: a field has six coefficients per axis")
        (cx, cy), norm = field["centre"], float(field["norm"])
    return _warp.warp(src, oh, ow, [float(v) for v in Hm.ravel()], coef, field is not None,
                      float(cx), float(cy), norm, int(order), float(fill))


def rotate(img: np.ndarray, angle_deg: float, fill: float = 1.0, order=3) -> np.ndarray:
    """Rotate ``img`` about its centre so that lines along ``tan(angle)`` become horizontal
    (cubic convolution by default, see :func:`remap`); values clipped to the input's range."""
    t = np.radians(angle_deg)
    c, s = np.cos(t), np.sin(t)
    h, w = img.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    # output (x, y) samples the input at x' = c (x - cx) - s (y - cy) + cx,
    # y' = s (x - cx) + c (y - cy) + cy
    H = [[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0.0, 0.0, 1.0]]
    out = remap(img, H, (h, w), order=order, fill=fill)
    if order != 1:
        np.clip(out, float(img.min()), float(img.max()), out=out)
    return out


def _autocorr(p: np.ndarray) -> np.ndarray:
    import scipy.fft as sfft

    p = p - p.mean()
    n = len(p)
    f = sfft.rfft(p, sfft.next_fast_len(2 * n))
    ac = sfft.irfft(f * np.conj(f))[:n]
    return ac / ac[0] if ac[0] > 0 else ac


def _peak(ac, lo, hi):
    lo, hi = max(1, int(lo)), min(len(ac) - 2, int(hi))
    if hi <= lo:
        return None, 0.0
    i = lo + int(np.argmax(ac[lo:hi + 1]))
    y0, y1, y2 = ac[i - 1], ac[i], ac[i + 1]
    den = y0 - 2 * y1 + y2
    d = 0.5 * (y0 - y2) / den if den < 0 else 0.0
    return i + float(np.clip(d, -0.5, 0.5)), float(y1)


def grid_period(profile: np.ndarray, page_len_px: int, hint: float | None = None):
    """Pixels per millimetre from a grid profile (mean darkness along rows or columns).

    The autocorrelation of the high-passed profile peaks at every multiple of
    the 1-mm period and most strongly at multiples of the 5-mm period. The
    first clear peak gives the period; it is taken as 5 mm when calling it
    1 mm would make the page narrower than 120 mm (the minor grid is lost on
    low-resolution or blurred pages). The estimate is refined on the peak
    near the largest 5-mm multiple in the first 40 % of lags, which pins
    px/mm to about 0.05 %.

    Parameters
    ----------
    profile : 1-D array, mean darkness per image column (or row).
    page_len_px : int, length of the page along the profile (px).
    hint : float, optional
        Expected px/mm (e.g. from the other axis): the 5-mm peak is then looked
        for within 10 % of ``5 * hint`` instead of from the first peak, which
        recovers the period when blur hides the minor grid and trace ink hides
        the first major peak.

    Returns
    -------
    px_per_mm : float or None
        None when the profile shows no periodic grid.
    strength : float
        The autocorrelation at the 5-mm period (0-1): how grid-like the page is.
    """
    from scipy.ndimage import uniform_filter1d

    p = np.asarray(profile, np.float64)
    n = len(p)
    if n < 64:
        return None, 0.0
    hp = p - uniform_filter1d(p, size=max(9, n // 20), mode="nearest")
    ac = _autocorr(hp)
    # local maxima above a floor, from lag 2 on
    lags = np.arange(2, min(n // 3, 400))
    if len(lags) < 3:
        return None, 0.0
    a = ac[lags]
    is_pk = (a > ac[lags - 1]) & (a >= ac[lags + 1]) & (a > 0.15)
    if not is_pk.any():
        return None, 0.0
    if hint is not None:
        major, strength = _peak(ac, 4.5 * hint, 5.5 * hint)
        if major is None or strength < 0.1 or not (4.5 * hint < major < 5.5 * hint):
            return None, 0.0
    else:
        first = int(lags[np.flatnonzero(is_pk)[0]])
        p1, _ = _peak(ac, first - 1, first + 1)
        # the strongest peak among 1..6 multiples tells the 5-mm period when the minor
        # grid shows
        mult = np.array([_peak(ac, k * p1 - 1.5, k * p1 + 1.5)[1] for k in range(1, 7)])
        if mult[4] > max(mult[3], mult[5]) + 0.05 and n / p1 > 120:
            major = 5 * p1
        elif n / p1 < 120:
            major = p1          # the first peak is already the 5-mm period
        else:
            major = 5 * p1      # minor grid only seen (uniform grid): trust the 1-mm reading
        strength = _peak(ac, major - 2, major + 2)[1]
    # refine on ever farther multiples (2, 4, 8, ...) of the major period, so that each
    # search window surely holds the true peak; the window stays under half a minor
    # period wide each side, else a neighbouring 1-mm peak (as strong as the 5-mm one on
    # pages with faint major lines) can capture the search and drift the period
    m_max = int(0.4 * n / major)
    m = 2
    half = 0.09 * major
    while m <= m_max:
        pk, v = _peak(ac, m * major - half, m * major + half)
        if pk is None or v < 0.3 * strength:
            break
        major = pk / m
        m *= 2
    return major / 5.0, float(strength)


def refine_period(profile: np.ndarray, px_per_mm: float, n_parts: int = 6,
                  iterations: int = 2) -> float:
    """Sub-pixel grid period from the drift of the grid's phase along the page.

    The profile's Fourier component at the 1-mm period is measured in
    ``n_parts`` stretches of the page; a period that is slightly off makes
    that phase drift linearly along the page, and the slope of the (unwrapped,
    amplitude-weighted) phase corrects it. Each stretch holds tens of grid
    lines, so pixel snapping of single lines (renderers round line positions
    to the pixel grid) averages out; over a 2000-px page the period comes out
    to about 0.002 % (0.04 px of drift end to end), 3-5 times tighter than the
    autocorrelation peak of :func:`grid_period`.

    Parameters
    ----------
    profile : 1-D array, mean darkness per image column (or row).
    px_per_mm : float, the period to refine (px per mm), within ~1 % of the truth.
    n_parts : int, number of stretches the page is cut into.
    iterations : int, refinement passes.

    Returns
    -------
    float
        px per mm; the input unchanged when the phase is not measurable (a
        profile too short, no grid component, or a correction above 1 %).
    """
    p = np.asarray(profile, np.float64)
    n = len(p)
    per = float(px_per_mm)
    if not (per > 1.0) or n < 8 * n_parts * per:
        return per
    k = max(1, int(round(per)))
    # remove the slow trend (shading, trace rows) so only the line lattice remains
    p = p - np.convolve(p, np.ones(k) / k, mode="same")
    x = np.arange(n, dtype=np.float64)
    edges = np.linspace(0, n, n_parts + 1).astype(np.int64)
    centres = 0.5 * (edges[:-1] + edges[1:])
    new = per
    for _ in range(iterations):
        z = np.array([np.sum(p[a:b] * np.exp(-2j * np.pi * x[a:b] / new))
                      for a, b in zip(edges[:-1], edges[1:])])
        amp = np.abs(z)
        # without a lattice the phasors add like a random walk (|z| ~ the stretch's
        # rms x sqrt(length)); a grid's lines add coherently, sqrt(lines) times more
        noise = np.sqrt([np.sum(p[a:b] ** 2) for a, b in zip(edges[:-1], edges[1:])])
        if np.any(amp < 3.0 * noise):
            return per
        ph = np.unwrap(np.angle(z))
        # lines at x = phi + j P: the phase at trial period T drifts by -2 pi (P/T - 1) / P
        # per px, so the slope s gives P = T (1 - s T / (2 pi)) to first order
        slope = float(np.polyfit(centres, ph, 1, w=amp)[0])
        new = new * (1.0 - slope * new / (2 * np.pi))
    if abs(new / per - 1) > 0.01:
        return per
    return float(new)


def _lattice_level(level: np.ndarray, period: float) -> np.ndarray:
    """The grid's share of a per-row darkness profile: at each phase of the 5-mm grid
    period ``period`` (~1-px bins), the level the grid reaches in most periods.

    A grey grid line darkens its row at every period; a flat stretch of a thick trace
    darkens its baseline row too (more than half the row when the trace is thicker
    than ~0.3 mm), but only in the few trace rows. Per phase bin the upper quartile
    over the periods keeps the grid and drops those few rows; the maximum over the
    neighbouring bins follows a thin line that rasterisation puts one pixel up or
    down from one period to the next."""
    n = level.shape[0]
    if not period or n < 6 * period:
        return level
    nb = max(1, int(np.round(period)))   # ~1-px bins of equal width: each gets every period
    bins = np.minimum((np.arange(n) % period) * (nb / period), nb - 1).astype(np.int64)
    q = np.zeros(nb, level.dtype)
    for b in range(nb):
        sel = level[bins == b]
        if sel.size:
            q[b] = np.quantile(sel, 0.75)
    expected = np.maximum(np.maximum(q, np.roll(q, 1)), np.roll(q, -1))
    return np.minimum(level, expected[bins])


def trace_ink(vmax: np.ndarray, vmin: np.ndarray, bg: np.ndarray, soft: bool = False,
              period_y: float | None = None, grid: bool = True, darkness: bool = False):
    """Probability-like map (0-1) of trace ink: dark in every channel, not a grid line.

    * darkness of the brightest channel relative to the paper: a coloured grid
      stays bright in its own channel, a black trace does not;
    * low chroma: coloured handwriting and stamps are suppressed;
    * minus the robust darkness level of each full row and column: grey grid
      lines span the page, the trace covers a small share of any row or column,
      so the row/column median is the grid line (thin-line suppression).

    ``period_y`` (pixels per mm, when the grid was found) keeps only the grid's part
    of each row's level (:func:`_lattice_level`); ``grid=False`` (no grid found on the
    page) removes no row level at all.

    With ``soft=True`` also returns the weights for sub-pixel centres: the same
    darkness before the noise floor and the ramp clip it, so the partly covered
    (anti-aliased) pixels at a stroke's edges keep their share. ``darkness=True``
    (with ``soft``) returns those weights before the chroma test as well: a stroke's
    partly covered end pixel over a red grid line is red, and the chroma test blanks
    it (ecg-image-kit pages end on a major grid line), while its darkness in the
    brightest channel is the stroke's coverage.
    """
    inv = 1.0 / bg
    d = 1.0 - vmax * inv
    chroma = (vmax - vmin) * inv
    np.clip(d, 0.0, 1.0, out=d)
    rowlev = np.median(d[:, ::3], axis=1)
    if not grid:
        # a page without a grid (a thresholded black-and-white scan): nothing to remove,
        # and a thin trace's flat baseline can fill more than half of its pixel row
        rowlev = np.zeros_like(rowlev)
    elif period_y:
        # only the grid's part of a row's level: a thick trace's flat baseline covers
        # most of its row and would be taken for a grid line (and erased)
        rowlev = _lattice_level(rowlev, 5.0 * float(period_y))
    collev = np.median(d[::3, :], axis=0)
    d -= np.maximum(rowlev[:, None], collev[None, :])
    soft_w = np.clip(d, 0.0, 1.0) if soft else None
    d -= 0.12
    d *= 1.0 / 0.38
    np.clip(d, 0.0, 1.0, out=d)
    chroma -= 0.2
    chroma *= -1.0 / 0.3
    chroma += 1.0
    np.clip(chroma, 0.0, 1.0, out=chroma)
    d *= chroma
    if soft:
        dark = soft_w.astype(np.float32) if darkness else None
        soft_w *= chroma
        out = d.astype(np.float32, copy=False), soft_w.astype(np.float32, copy=False)
        return out + (dark,) if darkness else out
    return d.astype(np.float32, copy=False)


# Ink blobs smaller than this (mm, along both axes) are specks, not strokes: at 200 dpi
# up to 4 px, at 100 dpi up to 2 px. A trace, a pulse or a label letter is longer.
_SPECK_MM = 0.6


def remove_specks(ink: np.ndarray, *maps: np.ndarray, px_per_mm: float = 8.0) -> int:
    """Erase specks in place: scanner dust, fax and bilevel speckle, pepper noise.

    A speck is a connected blob of ink (over 0.1, eight-connected) that spans under
    ``_SPECK_MM`` both across and down; its faint JPEG halo goes with it. Left in,
    specks near a trace row chained (the row finder joins ink gaps under 3 mm) into a
    run across the whole page, which moved the row's first ink column and with it the
    search window of the calibration pulse, and the tracer jumped to specks near the
    trace: 0.1 % of pixels flipped to black read -3 dB, 2x2-px dust -3.5 dB. Blobs
    touching a stroke are part of it and stay. ``maps`` (the same shape: the tracer's
    weights) are erased at the same pixels. Returns the number of pixels erased.

    The blobs are found on a 2x2 max-pooled mask at 150 dpi and above (a quarter of
    the pixels to label, ~10 ms for a 200-dpi page).
    """
    from scipy.ndimage import find_objects, label

    h, w = ink.shape
    mask = ink > 0.1
    s = 2 if px_per_mm >= 6.0 else 1
    if s == 2:
        mask = np.pad(mask, ((0, h % 2), (0, w % 2)))
        mask = mask[0::2, 0::2] | mask[1::2, 0::2] | mask[0::2, 1::2] | mask[1::2, 1::2]
    lab, n = label(mask, np.ones((3, 3), bool))
    if n == 0:
        return 0
    limit = _SPECK_MM * px_per_mm / s
    small = np.zeros(n + 1, bool)
    for k, sl in enumerate(find_objects(lab), 1):
        small[k] = sl[0].stop - sl[0].start < limit and sl[1].stop - sl[1].start < limit
    if not small.any():
        return 0
    kill = small[lab]
    if s == 2:
        kill = np.repeat(np.repeat(kill, 2, axis=0), 2, axis=1)[:h, :w]
    kill &= ink > 0
    n_px = int(np.count_nonzero(kill))
    for m in (ink,) + maps:
        if m is not None:
            m[kill] = 0.0
    return n_px


def _box_dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1)-square, as two 1-D maximum filters."""
    from scipy.ndimage import maximum_filter1d

    m = maximum_filter1d(mask.view(np.uint8), 2 * r + 1, axis=0)
    return maximum_filter1d(m, 2 * r + 1, axis=1).view(bool)


def _shadowed_paper_kept(low, grow, vmin, s, px_per_mm):
    """``low`` and ``grow`` of :func:`off_page` without the dark regions that are paper
    in shadow: paper shows its grid, a table does not. Judged on each dark region's
    interior (1.5 mm in from its edge, where no lit paper is near): more than 6 % of
    its pixels 12 % darker than their 1-mm surround (a grid line) make it paper
    (measured: shadowed grid paper 18 %, a plain table with camera noise and JPEG
    0-1 %). A region too thin to have an interior (a wedge of table) stays dark."""
    from scipy.ndimage import uniform_filter, label

    h2, w2 = low.shape
    vb = vmin[:h2 * s, :w2 * s]
    if vb.shape != (h2 * s, w2 * s):
        vb = np.pad(vb, ((0, h2 * s - vb.shape[0]), (0, w2 * s - vb.shape[1])), mode="edge")
    vb = vb.reshape(h2, s, w2, s).min(axis=(1, 3))       # 1-px lines survive the sub-sampling
    loc = uniform_filter(vb, max(3, int(round(px_per_mm / s)) | 1), mode="nearest")
    lines = vb < 0.88 * np.maximum(loc, 1e-3)
    r = max(1, int(round(1.5 * px_per_mm / s)))
    interior = ~_box_dilate(~low, r)
    lab, n = label(low)
    if n == 0:
        return low, grow
    n_in = np.bincount(lab[interior], minlength=n + 1)
    n_lines = np.bincount(lab[interior & lines], minlength=n + 1)
    paper = (n_in >= 50) & (n_lines > 0.06 * np.maximum(n_in, 1))
    paper[0] = False
    if not paper.any():
        return low, grow
    region = paper[lab]
    # nor may the table's mask grow into it through its half-lit rim
    return low & ~region, grow & ~_box_dilate(region, 3 * r)


def off_page(vmax: np.ndarray, px_per_mm: float = 8.0, vmin: np.ndarray | None = None
             ) -> np.ndarray | None:
    """Mask of what lies outside the paper: a photo's table, a scanner's black lid.

    Paper is the bright part of the image. What is much darker than it (under
    half the paper's brightness after a 3-mm box blur, which fades any trace or
    text stroke) and reaches the image's edge is background. From there the mask
    grows through dark pixels whose 3-mm surround is dark too: the thin tapering
    wedges that a photo's angle leaves between the paper's edge and the image
    border (the blur misses them, the row finder would take them for trace
    rows), but not a trace that runs into the background (its surround is
    paper). Last, it takes up to 1 mm of anything not bright paper, the blended
    pixels of the paper's edge. Returns None when there is no such region (a scan
    cropped to the page).

    Paper in shadow (a vignetted corner, the phone's shadow) can be as dark as a
    table, but it still shows its grid: with ``vmin`` (the darkest channel, where a
    coloured grid shows) given, a dark region that shows grid lines is kept as paper
    (:func:`_shadowed_paper_kept`).

    Parameters
    ----------
    vmax : float32 (h, w), the brightest channel in [0, 1].
    px_per_mm : float, rough scale (8 is 200 dpi).
    vmin : float32 (h, w), optional, the darkest channel.
    """
    from scipy.ndimage import uniform_filter, label

    s = 2 if min(vmax.shape) >= 256 else 1
    sub = vmax[::s, ::s]
    wide = uniform_filter(sub, max(3, int(round(3.0 * px_per_mm / s))), mode="nearest")
    paper = float(np.percentile(wide[::4, ::4], 90))
    low = wide < 0.5 * paper
    if not (low[0].any() or low[-1].any() or low[:, 0].any() or low[:, -1].any()):
        return None
    # dark pixels in a dark neighbourhood: a trace leaving the background is cut ~1.5 mm
    # from it (its 3-mm surround is paper), the thin tip of a wedge is not (it lies
    # against the image border, which the blur repeats)
    grow = ((sub < 0.6 * paper) & (wide < 0.8 * paper)) | low
    # a thin frame drawn round the image (a renderer's border line) is not a background
    # to remove: every dark pixel within 1 mm of the edge
    ys, xs = np.nonzero(low)
    depth = np.minimum(np.minimum(ys, low.shape[0] - 1 - ys), np.minimum(xs, low.shape[1] - 1 - xs))
    if int(depth.max()) <= max(1, int(round(px_per_mm / s))):
        return None
    if vmin is not None:
        low, grow = _shadowed_paper_kept(low, grow, vmin, s, px_per_mm)
        if not low.any():
            return None
    lab, _ = label(grow)
    seeds = np.zeros(lab.max() + 1, bool)
    lab_low, _ = label(low)
    edge = np.unique(np.concatenate([lab_low[0], lab_low[-1], lab_low[:, 0], lab_low[:, -1]]))
    edge = edge[edge > 0]
    if not len(edge):
        return None
    seeds[np.unique(lab[np.isin(lab_low, edge)])] = True
    seeds[0] = False
    mask = seeds[lab]
    # the paper's edge: pixels blended with the background (interpolation, JPEG, the
    # paper's shadow), up to 1 mm into whatever is not bright paper (a box dilation,
    # not a geodesic one: within 1 mm the difference is nil, the cost a tenth)
    r = max(1, int(round(px_per_mm / s)))
    mask |= _box_dilate(mask, r) & (sub < 0.85 * paper)
    if s > 1:
        # the sub-sampled mask misses the full-resolution rows of a stepped edge: one
        # sub-sampled pixel more, where the full-resolution pixel is not bright paper
        h, w = vmax.shape
        near = np.repeat(np.repeat(_box_dilate(mask, 1), s, axis=0), s, axis=1)[:h, :w]
        mask = np.repeat(np.repeat(mask, s, axis=0), s, axis=1)[:h, :w]
        mask |= near & (vmax < 0.85 * paper)
    return mask
