"""Perspective (keystone) correction of photographed pages, read from the ECG grid.

A page photographed at an angle is a projective image of the paper: its grid
lines converge and their spacing changes across the page. The rest of the
raster pipeline assumes one rotation and one scale per axis, so even a 1 %
keystone moves the far columns by several pixels and a 2 % one hides the grid
period altogether. The paper's own grid measures the distortion:

1. the page is cut into tiles of about 40 mm; in each, the angle of the
   horizontal and of the vertical grid lines (projection profile, as
   :func:`.grid.estimate_skew` does for the whole page) and their spacing
   along the image axes (autocorrelation at the 5-mm period, as
   :func:`.grid.grid_period`) give the local gradient of the paper's
   coordinates ``(u, v)`` (mm) in image pixels;
2. a homography ``u = (a X + b Y) / (g X + h Y + 1)``,
   ``v = (d X + e Y) / (g X + h Y + 1)`` (``X, Y`` centred and normalised
   image coordinates) is fitted to those gradients (robust least squares:
   tiles on text or on a trace's QRS are outvoted);
3. when it departs from the best affine map by more than a pixel
   anywhere on the page, the page is rectified: resampled onto the paper's
   own coordinates at one scale (square pixels, grid lines straight and level);
4. on the rectified page the grid must be one lattice of square cells: the
   phase of the 5-mm and 1-mm grid in 30-mm tiles measures what the
   homography left (a pixel or so at the page's ends) and what is not
   projective at all (paper bowed on the scanner glass, or curled); a smooth
   quadratic field fitted to it is applied in the same, single, cubic
   resampling (:func:`refine_lattice`, :func:`warp`).

A sharp crease is not a smooth field; it is left to the tracer.
"""

from __future__ import annotations

import numpy as np

__all__ = ["grid_map", "rough_scale", "local_grid", "fit_homography", "rectify_map", "warp",
           "lattice_correction", "refine_lattice", "identity_map"]

# tiles of this size (mm) hold 8 major grid periods: enough for the autocorrelation
# at twice the 5-mm period, small enough that converging lines stay straight in them
_TILE_MM = 40.0
# a page is resampled when the homography and its best affine map disagree by more
# than this many pixels somewhere on the page (a rotated flat scan measures 0.3-0.55 px
# of noise; a 0.5 % keystone 11 px)
_MIN_DEVIATION_PX = 1.0


def grid_map(vmax, vmin, bg, dark):
    """The grid's own darkness, for measuring it: on a coloured grid the traces (dark
    in every channel) are taken out, since a tachycardia's QRS strokes are columns of
    ink that pull a tile's phase; a grey grid has only ``dark``."""
    g = dark - np.clip(1.0 - vmax / bg, 0.0, 1.0)
    np.clip(g, 0.0, 1.0, out=g)
    return g if float(g.mean()) > 0.5 * float(dark.mean()) else dark


def _best_angle(ys, xs, w, n, centre, span):
    """Angle (degrees) of the sharpest projection profile within ``centre +- span``."""
    from .grid import _projection

    def energy(a):
        p = _projection(ys, xs, w, a, n)
        return float(p @ p)

    # coarse steps of 0.5 deg out from the page's angle, while the energy still rises
    # (tiles of a flat page stop after two each way, a steep photo's go on to the span)
    best, a0 = energy(centre), centre
    for sign in (1.0, -1.0):
        a = centre + sign * 0.5
        while abs(a - centre) <= span + 1e-9:
            v = energy(a)
            if v > best:
                best, a0 = v, a
            elif abs(a - a0) >= 1.0 - 1e-9:
                break
            a += sign * 0.5
    # then 0.1-deg steps uphill from the best coarse angle, and a parabola through the top
    step = 0.1
    e = {0: best}
    for k in (-1, 1):
        e[k] = energy(a0 + k * step)
    i = 0
    while abs(i) < 5:
        j = i + (1 if e[i + 1] > e[i - 1] else -1)
        if e[j] <= e[i]:
            break
        i = j
        if i + 1 not in e:
            e[i + 1] = energy(a0 + (i + 1) * step)
        if i - 1 not in e:
            e[i - 1] = energy(a0 + (i - 1) * step)
    den = e[i - 1] - 2 * e[i] + e[i + 1]
    shift = 0.5 * (e[i - 1] - e[i + 1]) / den if den < 0 else 0.0
    return float(a0 + (i + float(np.clip(shift, -0.5, 0.5))) * step)


def local_grid(dark: np.ndarray, px_per_mm: float, angle_deg: float = 0.0,
               tile_mm: float = _TILE_MM, span_deg: float = 6.0, probe: bool = False):
    """Local grid geometry in tiles of ``tile_mm``.

    Parameters
    ----------
    dark : float32 (h, w), non-whiteness of the page (grid and ink), 0 = paper.
    px_per_mm : float, rough grid scale (px/mm), within ~10 % everywhere.
    angle_deg : float, the page's overall skew (:func:`.grid.estimate_skew`).
    tile_mm : float, tile size in mm.
    span_deg : float, how far a tile's line angles may differ from ``angle_deg``.
    probe : bool, measure only the tiles at the corners, the edges' middles and the
        centre (a quick check that a flat scan needs no correction).

    Returns
    -------
    centres : float64 (n, 2), tile centres (x, y) in image pixels.
    grads : float64 (n, 4), per tile ``(du/dx, du/dy, dv/dx, dv/dy)`` in mm per
        pixel, ``u`` along the grid's horizontal lines and ``v`` down the page.
    strength : float64 (n,), the weaker axis's autocorrelation at the 5-mm
        period (0-1); tiles without a grid are left out.
    """
    from . import grid as G

    k = max(1, int(px_per_mm // 4.0))        # keep ~4 px per mm: the 5-mm period resolves
    img = G._block_reduce_mean(dark, k) if k > 1 else dark
    ppm = px_per_mm / k
    side = int(round(tile_mm * ppm))
    h, w = img.shape
    if side < 64 or h < side or w < side:
        return np.zeros((0, 2)), np.zeros((0, 4)), np.zeros(0)
    ny, nx = max(1, h // side), max(1, w // side)
    oy, ox = (h - ny * side) // 2, (w - nx * side) // 2
    centres, grads, strength = [], [], []
    iys, ixs = range(ny), range(nx)
    if probe:
        iys, ixs = sorted({0, ny // 2, ny - 1}), sorted({0, nx // 2, nx - 1})
    for iy in iys:
        for ix in ixs:
            y0, x0 = oy + iy * side, ox + ix * side
            tile = np.ascontiguousarray(img[y0:y0 + side, x0:x0 + side])
            ys, xs, wt = G._ink_points(tile, 5, 0.8, stride=7)
            if len(wt) < 4 * side:
                continue
            # horizontal lines y = y0 + x tan(th); vertical lines x = x0 + y tan(tv)
            th = _best_angle(ys, xs, wt, side, angle_deg, span_deg)
            tv = _best_angle(xs, ys, wt, side, -angle_deg, span_deg)
            prof_v = G._projection(ys, xs, wt, th, side)
            prof_u = G._projection(xs, ys, wt, tv, side)
            py, sy = G.grid_period(prof_v, len(prof_v), hint=ppm)
            px, sx = G.grid_period(prof_u, len(prof_u), hint=ppm)
            if px is None or py is None or min(sx, sy) < 0.2:
                continue
            # v = (y - x tan th) / (px/mm along y), u = (x - y tan tv) / (px/mm along x)
            dvdy = 1.0 / (py * k)
            dudx = 1.0 / (px * k)
            grads.append((dudx, -np.tan(np.radians(tv)) * dudx,
                          -np.tan(np.radians(th)) * dvdy, dvdy))
            centres.append(((x0 + side / 2) * k, (y0 + side / 2) * k))
            strength.append(min(sx, sy))
    if not grads:
        return np.zeros((0, 2)), np.zeros((0, 4)), np.zeros(0)
    return np.asarray(centres, float), np.asarray(grads, float), np.asarray(strength, float)


def _model(p, X, Y):
    """Paper coordinates and their gradients under the normalised homography."""
    a, b, d, e, g, hh = p
    den = g * X + hh * Y + 1.0
    u = (a * X + b * Y) / den
    v = (d * X + e * Y) / den
    return u, v, (a - g * u) / den, (b - hh * u) / den, (d - g * v) / den, (e - hh * v) / den


def fit_homography(centres, grads, strength, shape):
    """Fit the homography to the tiles' gradients (see the module docstring).

    Returns ``(params, centre, norm)``: ``params = (a, b, d, e, g, h)`` maps
    ``X = (x - cx) / norm``, ``Y = (y - cy) / norm`` to paper mm; None when fewer
    than 6 tiles were measured or the fit is implausible.
    """
    from scipy.optimize import least_squares

    if len(grads) < 6:
        return None
    h, w = shape[:2]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    norm = max(h, w) / 2.0
    X = (centres[:, 0] - cx) / norm
    Y = (centres[:, 1] - cy) / norm
    G = grads * norm                        # mm per normalised unit
    scale = float(np.median(np.abs(G[:, [0, 3]])))
    wt = np.sqrt(np.clip(strength, 0.05, 1.0))

    def resid(p):
        _, _, ux, uy, vx, vy = _model(p, X, Y)
        r = np.stack([ux - G[:, 0], uy - G[:, 1], vx - G[:, 2], vy - G[:, 3]], axis=1)
        return (r * (wt[:, None] / scale)).ravel()

    p0 = np.array([np.median(G[:, 0]), np.median(G[:, 1]), np.median(G[:, 2]),
                   np.median(G[:, 3]), 0.0, 0.0])
    # soft L1 at 1 % of the scale: a tile fooled by a trace or text is outvoted
    fit = least_squares(resid, p0, loss="soft_l1", f_scale=0.01, x_scale="jac")
    p = fit.x
    if not fit.success or not np.all(np.isfinite(p)) or max(abs(p[4]), abs(p[5])) > 0.3:
        return None
    return p, (cx, cy), norm


def _affine_deviation_px(p, cx, cy, norm, shape, px_per_mm):
    """Largest distance (px) between the homography and its best affine map over the
    image, sampled on a 9 x 9 lattice."""
    h, w = shape[:2]
    gx, gy = np.meshgrid(np.linspace(0, w - 1, 9), np.linspace(0, h - 1, 9))
    X, Y = (gx.ravel() - cx) / norm, (gy.ravel() - cy) / norm
    u, v = _model(p, X, Y)[:2]
    A = np.stack([X, Y, np.ones_like(X)], axis=1)
    cu, *_ = np.linalg.lstsq(A, u, rcond=None)
    cv, *_ = np.linalg.lstsq(A, v, rcond=None)
    dev = np.hypot(u - A @ cu, v - A @ cv)      # mm
    return float(dev.max() * px_per_mm)


def rectify_map(dark: np.ndarray, px_per_mm: float, angle_deg: float = 0.0, full=None):
    """The perspective correction a page needs, or None when it needs none.

    Nine tiles of ``dark`` are measured first; the whole lattice, of ``full`` (an
    array, or a function returning one: the grid's own darkness, :func:`grid_map`,
    costs a pass over the page that a flat page need not pay) or else ``dark``, only
    when they see a distortion or are too few to say.

    Returns a dict with ``params, centre, norm`` (:func:`fit_homography`),
    ``px_per_mm`` (the output's square-pixel scale: the page's mean), ``deviation_px``
    (how far the homography departs from an affine map) and ``tiles`` (tiles
    measured); None when the grid is too sparse to measure or the page is
    already affine to within half a pixel.
    """
    for probe in (True, False):
        img = dark
        if not probe and full is not None:
            img = full() if callable(full) else full
        centres, grads, strength = local_grid(img, px_per_mm, angle_deg, probe=probe)
        fit = fit_homography(centres, grads, strength, dark.shape)
        if fit is None:
            if probe:
                continue
            return None
        p, (cx, cy), norm = fit
        # output scale: the paper's mean px/mm at the image centre (det of the Jacobian)
        jac = abs(p[0] * p[3] - p[1] * p[2]) / norm ** 2          # mm^2 per px^2
        scale = 1.0 / np.sqrt(jac)
        dev = _affine_deviation_px(p, cx, cy, norm, dark.shape, scale)
        if dev < _MIN_DEVIATION_PX:
            return None
    return {"params": p, "centre": (cx, cy), "norm": norm, "px_per_mm": float(scale),
            "deviation_px": dev, "tiles": int(len(grads))}


def warp(images, m: dict, fill: float = 1.0, max_growth: float = 1.3, order="spline",
         correction=None):
    """Resample 2-D float images onto the paper's coordinates of ``m``
    (:func:`rectify_map`): square pixels at ``m["px_per_mm"]``, grid lines level.

    A cubic B-spline by default (:func:`.grid.remap`): bilinear interpolation at a
    fraction of a pixel widens a thin trace unevenly across the page, and the time
    origin (read from the ends and the bends of the ink) moves with it (a 0.37-px
    bilinear shift cost a 100 Hz page 12 dB, a cubic one 3 dB; the spline read photos
    0.4-1.4 dB better than Keys's cubic convolution). The output covers the
    image's mapped corners, at most ``max_growth`` times the input's size per axis
    (around the page centre); outside the photo it is ``fill``. ``correction``
    (:func:`lattice_correction`) moves each output pixel's sample by a smooth field
    measured on a first warp. Returns a list of float32 arrays, clipped to the
    inputs' range unless bilinear.
    """
    from . import grid as G

    a, b, d, e, g, hh = m["params"]
    cx, cy = m["centre"]
    norm, s = m["norm"], m["px_per_mm"]
    h, w = images[0].shape
    X = (np.array([0, w - 1, w - 1, 0]) - cx) / norm
    Y = (np.array([0, 0, h - 1, h - 1]) - cy) / norm
    u, v = _model(m["params"], X, Y)[:2]
    u0, u1 = float(u.min()), float(u.max())
    v0, v1 = float(v.min()), float(v.max())
    # bounded around the centre (u, v = 0): a far corner of a steep photo must not blow
    # the output up
    half_w, half_h = max_growth * w / (2 * s), max_growth * h / (2 * s)
    u0, u1 = max(u0, -half_w), min(u1, half_w)
    v0, v1 = max(v0, -half_h), min(v1, half_h)
    ow, oh = int(np.ceil((u1 - u0) * s)) + 1, int(np.ceil((v1 - v0) * s)) + 1
    # output pixel -> paper mm (S) -> normalised image point (inverse homography, with
    # M = [[a, b, 0], [d, e, 0], [g, h, 1]]) -> image pixel (C)
    S = np.array([[1.0 / s, 0.0, u0], [0.0, 1.0 / s, v0], [0.0, 0.0, 1.0]])
    minv = np.linalg.inv(np.array([[a, b, 0.0], [d, e, 0.0], [g, hh, 1.0]]))
    C = np.array([[norm, 0.0, cx], [0.0, norm, cy], [0.0, 0.0, 1.0]])
    H = C @ minv @ S
    outs = []
    for im in images:
        out = G.remap(im, H, (oh, ow), order=order, fill=fill, field=correction)
        if order != 1:
            np.clip(out, min(float(im.min()), fill), max(float(im.max()), fill), out=out)
        outs.append(out)
    return outs


def rough_scale(dark: np.ndarray, angle_deg: float = 0.0):
    """Grid scale (px/mm) of the page's central half, along its skew: where a
    keystone is mildest, so a distorted page still shows one period. None when
    the centre shows no grid."""
    from . import grid as G

    h, w = dark.shape
    crop = dark[h // 4: h - h // 4, w // 4: w - w // 4]
    # half resolution on large pages: the 5-mm period stays 15+ px, the search a quarter
    k = 2 if min(crop.shape) >= 600 else 1
    crop = G._block_reduce_mean(crop, k) if k > 1 else np.ascontiguousarray(crop)
    ys, xs, wt = G._ink_points(crop, 5, 0.8, stride=7)
    if len(wt) < 64:
        return None
    pu = G._projection(xs, ys, wt, -angle_deg, crop.shape[0])
    pv = G._projection(ys, xs, wt, angle_deg, crop.shape[1])
    px, sx = G.grid_period(pu, len(pu))
    if px is not None and sx > 0.2:
        py, sy = G.grid_period(pv, len(pv), hint=px)
        if py is not None and sy > 0.2:
            return k * float(np.sqrt(px * py))
    py, sy = G.grid_period(pv, len(pv))
    if py is not None and sy > 0.2:
        px, sx = G.grid_period(pu, len(pu), hint=py)
        if px is not None and sx > 0.2:
            return k * float(np.sqrt(px * py))
    return None


def _terms(X, Y):
    one = np.ones_like(X) if np.ndim(X) else 1.0
    return [one, X, Y, X * X, X * Y, Y * Y]


def _field(corr, x, y):
    """The correction's displacement (px) at output pixels ``x, y``."""
    (cx, cy), norm, (kx, ky) = corr["centre"], corr["norm"], corr["coef"]
    X, Y = (x - cx) / norm, (y - cy) / norm
    t = _terms(X + 0 * Y, Y + 0 * X)
    return sum(k * ti for k, ti in zip(kx, t)), sum(k * ti for k, ti in zip(ky, t))


def _phase(profile, x0, period, kernel=None):
    """Position (px, modulo ``period``) of a lattice of lines in ``profile`` (which
    starts at pixel ``x0``) and the strength of its Fourier component. ``kernel``:
    ``exp(-2 pi i k / period)`` for k < len(profile), when already at hand."""
    if kernel is None:
        kernel = np.exp(-2j * np.pi * np.arange(len(profile)) / period)
    z = np.dot(profile - profile.mean(), kernel) * np.exp(-2j * np.pi * x0 / period)
    return float(-np.angle(z) * period / (2 * np.pi)), float(np.abs(z))


def _wrap(d, period):
    return (d + period / 2) % period - period / 2


def _robust_fit(A, d, ok, rounds=3):
    """Least squares of ``d`` on ``A`` over ``ok``, dropping points beyond 3 MADs
    of the fit each round. Returns (coefficients, points kept) or None."""
    k = ok.copy()
    if k.sum() < A.shape[1] + 4:
        return None
    for _ in range(rounds):
        c, *_ = np.linalg.lstsq(A[k], d[k], rcond=None)
        res = np.abs(d - A @ c)
        mad = max(float(np.median(res[k])), 0.1)
        k = ok & (res < 3.0 * 1.4826 * mad)
        if k.sum() < A.shape[1] + 4:
            return None
    c, *_ = np.linalg.lstsq(A[k], d[k], rcond=None)
    return c, k


def lattice_correction(dark: np.ndarray, px_per_mm, tile_mm: float = 30.0):
    """What a rectified page still lacks: the grid's own lattice, measured.

    The homography is fitted to gradients, which leave the lines' positions good to
    a pixel or two at the page's ends, and curled paper is not a homography. On the
    rectified page the grid must be one lattice of square cells, so in each tile
    the phase of the column and row profiles at the 5-mm period (unambiguous within
    2.5 mm), refined at the 1-mm period where the minor grid shows, gives the
    lattice's local displacement (px) against the page's central tile; a cubic
    field in ``x, y`` is fitted to it (robust: tiles whose phase is off by more than
    3 MADs from the fit are dropped, twice).

    ``px_per_mm`` is the grid period the page should have: one number, or (x, y).
    Returns a correction for :func:`warp` (``coef`` of the x and y fields, ``centre``,
    ``norm``, ``residual_px``: the displacements' rms after the fit, ``span_px``: the
    largest displacement corrected), or None when fewer than 10 tiles show the grid.
    """
    h, w = dark.shape
    ppx, ppy = (px_per_mm, px_per_mm) if np.ndim(px_per_mm) == 0 else px_per_mm
    side = int(round(tile_mm * max(ppx, ppy)))
    if side < 32:
        return None
    ny, nx = h // side, w // side
    if ny * nx < 10:
        return None
    oy, ox = (h - ny * side) // 2, (w - nx * side) // 2
    k = np.arange(side)
    kern = {p: np.exp(-2j * np.pi * k / p) for p in (ppx, 5.0 * ppx, ppy, 5.0 * ppy)}
    rows = []
    for iy in range(ny):
        for ix in range(nx):
            y0, x0 = oy + iy * side, ox + ix * side
            t = dark[y0:y0 + side, x0:x0 + side]
            pc, pr = t.sum(axis=0, dtype=np.float64), t.sum(axis=1, dtype=np.float64)
            noise = np.sqrt(side) * max(float(pc.std()), float(pr.std()), 1e-9)
            vals = [x0 + side / 2, y0 + side / 2]
            for prof, start, p1 in ((pc, x0, ppx), (pr, y0, ppy)):
                a5, s5 = _phase(prof, start, 5.0 * p1, kern[5.0 * p1])
                a1, s1 = _phase(prof, start, p1, kern[p1])
                vals += [a5, s5 / noise, a1, s1 / noise]
            rows.append(vals)
    r = np.array(rows)
    # the lattice is the grid: a tile where neither the 5-mm nor the 1-mm lines show is
    # left out (paper margin, a block of text)
    ok = (r[:, 3] > 0.5) & (r[:, 7] > 0.5)
    if ok.sum() < 10:
        return None
    r = r[ok]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    ref = int(np.argmin(np.hypot(r[:, 0] - cx, r[:, 1] - cy)))
    norm = max(h, w) / 2.0
    X, Y = (r[:, 0] - cx) / norm, (r[:, 1] - cy) / norm
    A = np.stack(_terms(X, Y), axis=1)
    disp, coef, keep = [], [], np.ones(len(X), bool)
    for col, p1 in ((2, ppx), (6, ppy)):          # x then y
        p5 = 5.0 * p1
        # the 5-mm phase is unambiguous but noisy (a QRS stroke is a column of ink):
        # its robust fit is the trend; each tile's 1-mm phase is then read on the 1-mm
        # lattice point nearest that trend. The trend carries the reference tile's own
        # error, so it is first moved onto the 1-mm lattice by the circular mean of the
        # tiles' differences (else a trend half a period off flips tiles between
        # neighbouring lattice points)
        d5 = _wrap(r[:, col] - r[ref, col], p5)
        c5 = _robust_fit(A, d5, r[:, col + 1] > 1.0)
        if c5 is None:
            return None
        use1 = r[:, col + 3] > 1.0
        d1 = _wrap(r[:, col + 2] - r[ref, col + 2], p1)
        trend = A @ c5[0]
        if use1.any():
            z = np.sum(r[use1, col + 3] * np.exp(2j * np.pi * (d1 - trend)[use1] / p1))
            trend = trend + float(np.angle(z)) * p1 / (2 * np.pi)
        fine = d1 + np.round((trend - d1) / p1) * p1
        d = np.where(use1, fine, d5)
        c = _robust_fit(A, d, use1 | (r[:, col + 1] > 1.0))
        if c is None:
            return None
        disp.append(d)
        coef.append(c[0])
        keep &= c[1]
    res = np.hypot(*(d - A @ c for d, c in zip(disp, coef)))
    gx, gy = np.meshgrid(np.linspace(0, w - 1, 9), np.linspace(0, h - 1, 9))
    corr = {"coef": tuple(coef), "centre": (cx, cy), "norm": norm}
    fx, fy = _field(corr, gx, gy)
    corr["residual_px"] = float(np.sqrt(np.mean(res[keep] ** 2)))
    corr["span_px"] = float(np.hypot(fx - fx.mean(), fy - fy.mean()).max())
    return corr


def refine_lattice(dark: np.ndarray, m: dict, rounds: int = 3, px_per_mm=None, first=None):
    """The lattice correction of a rectification (:func:`lattice_correction`), built
    up over quick bilinear warps of ``dark`` until what is left moves no pixel by
    more than half a pixel (a steep photo's first residual can exceed the 1-mm
    lattice's half period in places; each round halves it or better). Returns the
    summed correction, or None when the first round finds no grid. ``px_per_mm``:
    the grid period (one number or (x, y)) when it is not ``m``'s output scale.
    ``first``: the first round's correction when the caller measured it already."""
    total = None
    for k in range(rounds):
        if k == 0 and first is not None:
            c = first
        else:
            img = warp([dark], m, fill=0.0, order=1, correction=total)[0]
            c = lattice_correction(img, m["px_per_mm"] if px_per_mm is None else px_per_mm)
        if c is None:
            break
        if total is None:
            total = c
        else:
            total = dict(total, coef=tuple(a + b for a, b in zip(total["coef"], c["coef"])),
                         residual_px=c["residual_px"])
        if c["span_px"] < 0.5:
            break
    if total is not None:
        gx, gy = np.meshgrid(np.linspace(0, dark.shape[1] - 1, 9),
                             np.linspace(0, dark.shape[0] - 1, 9))
        fx, fy = _field(total, gx, gy)
        total["span_px"] = float(np.hypot(fx - fx.mean(), fy - fy.mean()).max())
    return total


def identity_map(shape, px_per_mm: float) -> dict:
    """The map :func:`warp` reads as "leave the page as it is" (with a correction
    field, only that field moves pixels)."""
    h, w = shape[:2]
    norm = max(h, w) / 2.0
    k = norm / float(px_per_mm)
    return {"params": np.array([k, 0.0, 0.0, k, 0.0, 0.0]),
            "centre": ((w - 1) / 2.0, (h - 1) / 2.0), "norm": norm,
            "px_per_mm": float(px_per_mm), "deviation_px": 0.0}
