"""Vector PDFs: read the ECG traces from the page's drawing paths (no rasterising).

Most carts and archives export ECGs as vector PDFs whose traces are stroked
polylines. Their vertices are the signal, so reading them is essentially
lossless (facts/digitization.md §10.1). The recipe (facts/formats.md §11):

1. collect every stroked path (pypdfium2 raw API, one bulk read per path via
   :func:`ecgcore._pdfium.path_segments`; form XObjects are recursed with their
   matrices composed) and the text layer with character boxes; dark pieces
   drawn end to start are joined into one polyline;
2. map page points to *display* coordinates (u rightwards = time, v upwards =
   voltage) from the page's ``/Rotate``;
3. traces are long, dark polylines monotonic in u; a calibration pulse drawn in
   the trace's own polyline is cut off; the paper scale is 72/25.4 pt per mm,
   checked against the grid period; speed (mm/s) and gain (mm/mV) come from the
   text layer and the calibration pulse (the pulse height wins when they
   disagree: it is the drawn 1 mV);
4. when the vertices sit on a regular lattice whose rate is a standard sampling
   rate, that lattice is the time axis (one vertex per sample, even where the
   renderer stretched N samples over N - 1 intervals or dropped vertices);
5. traces are grouped into rows by baseline; each lead label (nearest text)
   names a trace, or a column of a trace that concatenates several leads
   (equal columns of whole samples when the lattice is known);
6. the vertices are interpolated onto ``k / fs`` with shape-preserving cubics
   (exact at every vertex); where the lattice shows samples missing between
   vertices (matplotlib simplifies every path it saves unless told not to),
   those samples are first rebuilt from what the simplifier guarantees about
   them (:func:`_fill_dropped`).

What a page cannot give back: a renderer's own filtering (dicom-ecg-plot
band-passes 0.05-40 Hz before drawing) and most of what a simplifying writer
dropped: matplotlib keeps each dropped sample within 1/9 pt of a line through
the run's first two samples, which pins it across the line but not along it, so
on steep QRS edges its time is uncertain by about +-1/9 pt (+-1.6 ms at 25
mm/s) and its level by that times the slope. Rebuilding gains 0.5-3 dB over
cubics alone (about 29-38 dB on such pages, benchmarks/bench_digitize.py).
"""

from __future__ import annotations

import ctypes
import os
import re

import numpy as np

from .._pdfium import path_segments
from ..errors import DigitizeError
from ..record import Record, STANDARD_12, normalize_lead

__all__ = ["extract_page_content", "read_vector_pdf", "PT_PER_MM"]

PT_PER_MM = 72.0 / 25.4
_MOVETO = 2     # FPDF_SEGMENT_MOVETO
_LEAD_RE = re.compile(r"^(I|II|III|aVR|aVL|aVF|AVR|AVL|AVF|V[1-9]R?|V[1-9]r|D[1-3]|DI|DII|DIII)$")
# A number only where no digit precedes it: CardioSoft's text layer holds runs of a
# thousand digits, on which an unanchored \d+ backtracks quadratically (5 ms a page).
_SPEED_RE = re.compile(r"(?<![\d.,])(\d{1,4}(?:[.,]\d{1,3})?)\s*mm\s*/\s*s(?![a-z])", re.I)
_GAIN_RE = re.compile(r"(?<![\d.,])(\d{1,4}(?:[.,]\d{1,3})?)\s*mm\s*/\s*mV", re.I)


# --------------------------------------------------------------------------------------------
# page content
# --------------------------------------------------------------------------------------------
def _mat_mul(m1, m2):
    """Compose affine matrices (a, b, c, d, e, f): apply m1 first, then m2."""
    a1, b1, c1, d1, e1, f1 = m1
    a2, b2, c2, d2, e2, f2 = m2
    return (a1 * a2 + b1 * c2, a1 * b2 + b1 * d2, c1 * a2 + d1 * c2, c1 * b2 + d1 * d2,
            e1 * a2 + f1 * c2 + e2, e1 * b2 + f1 * d2 + f2)


def _walk_objects(raw, count, get, parent, paths):
    """Append ``(points (n, 2) in page pt, (r, g, b))`` for every subpath of every path.

    Form XObjects are recursed with their matrices composed. The vertices of a
    path come in one bulk read (:func:`ecgcore._pdfium.path_segments`); the
    per-object calls (type, matrix, colour) are what is left of the FFI cost.
    """
    get_type, get_matrix = raw.FPDFPageObj_GetType, raw.FPDFPageObj_GetMatrix
    n_segs, stroke = raw.FPDFPath_CountSegments, raw.FPDFPageObj_GetStrokeColor
    PATH, FORM = raw.FPDF_PAGEOBJ_PATH, raw.FPDF_PAGEOBJ_FORM
    r, g, b, a = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
    m = raw.FS_MATRIX()
    for i in range(count):
        obj = get(i)
        kind = get_type(obj)
        if kind == PATH:
            n = n_segs(obj)
            if n < 2:
                continue
        elif kind != FORM:
            continue
        get_matrix(obj, m)
        mat = (m.a, m.b, m.c, m.d, m.e, m.f)
        full = _mat_mul(mat, parent) if parent is not None else mat
        if kind == FORM:
            _walk_objects(raw, raw.FPDFFormObj_CountObjects(obj),
                          lambda j, o=obj: raw.FPDFFormObj_GetObject(o, j), full, paths)
            continue
        if not stroke(obj, r, g, b, a):
            r.value = g.value = b.value = 0
        col = (r.value, g.value, b.value)
        xy, types = path_segments(raw, obj, n)
        ca, cb, cc, cd, ce, cf = full
        if (ca, cb, cc, cd, ce, cf) != (1.0, 0.0, 0.0, 1.0, 0.0, 0.0):
            xy = np.column_stack([ca * xy[:, 0] + cc * xy[:, 1] + ce,
                                  cb * xy[:, 0] + cd * xy[:, 1] + cf])
        moves = np.flatnonzero(types[1:] == _MOVETO) + 1 if n > 2 else ()
        if not len(moves):
            paths.append((xy, col))
            continue
        bounds = [0, *moves.tolist(), n]
        for s0, s1 in zip(bounds[:-1], bounds[1:]):
            if s1 - s0 >= 2:
                paths.append((xy[s0:s1], col))


def _stitch(paths, tol=0.01):
    """Join dark polylines drawn one after another end to start into one.

    Some writers cut a trace into many short paths or subpaths (a new path every
    few dozen vertices, or one per sample block); each piece alone is too short
    to be told from text strokes. Consecutive pieces of one colour whose ends
    meet (within ``tol`` pt) are one line.
    """
    out = []
    run = None                     # pieces of the polyline being joined
    run_col = None
    for p, col in paths:
        if run is not None and col == run_col and abs(p[0, 0] - run[-1][-1, 0]) < tol \
                and abs(p[0, 1] - run[-1][-1, 1]) < tol:
            run.append(p[1:])
            continue
        if run is not None:
            out.append((np.concatenate(run) if len(run) > 1 else run[0], run_col))
        if _is_dark(col):
            run, run_col = [p], col
        else:
            run = None
            out.append((p, col))
    if run is not None:
        out.append((np.concatenate(run) if len(run) > 1 else run[0], run_col))
    return out


def _display_transform(rotation: int, width: float, height: float):
    """Page points -> display (u right, v up) for a page shown with /Rotate."""
    rot = int(rotation) % 360
    if rot == 90:
        return lambda p: np.column_stack([p[:, 1], -p[:, 0]])
    if rot == 180:
        return lambda p: np.column_stack([-p[:, 0], -p[:, 1]])
    if rot == 270:
        return lambda p: np.column_stack([-p[:, 1], p[:, 0]])
    return lambda p: p


def extract_page_content(page):
    """Stroked polylines and words of one pypdfium2 page, in display coordinates.

    Returns
    -------
    polylines : list of (ndarray (n, 2) u/v in pt, (r, g, b))
    words : list of (text, u_center, v_center, height_pt)
    text : str
        The page's whole text layer.
    """
    import pypdfium2.raw as raw

    paths = []
    _walk_objects(raw, raw.FPDFPage_CountObjects(page.raw),
                  lambda j: raw.FPDFPage_GetObject(page.raw, j), None, paths)
    w, h = page.get_size()
    to_disp = _display_transform(page.get_rotation(), w, h)
    polylines = [(to_disp(p), col) for p, col in _stitch(paths)]
    tp = page.get_textpage()
    text = tp.get_text_range() or ""
    words = []
    for m in re.finditer(r"\S+", text):
        word = m.group()
        if len(word) > 6 or not _LEAD_RE.match(word):
            continue
        boxes = [tp.get_charbox(i) for i in range(m.start(), m.end())]
        bx = np.array(boxes, float)  # left, bottom, right, top in page space
        corners = np.array([[bx[:, 0].min(), bx[:, 1].min()], [bx[:, 2].max(), bx[:, 3].max()]])
        c = to_disp(corners)
        words.append((word, float(c[:, 0].mean()), float(c[:, 1].mean()),
                      float(abs(c[1, 1] - c[0, 1]))))
    tp.close()
    return polylines, words, text


# --------------------------------------------------------------------------------------------
# scale
# --------------------------------------------------------------------------------------------
def _is_dark(col, _cache={}) -> bool:
    # a page has thousands of paths in a handful of colours: remember the answer
    dark = _cache.get(col)
    if dark is None:
        r, g, b = col
        dark = _cache[col] = max(r, g, b) < 160 and (0.299 * r + 0.587 * g + 0.114 * b) < 110
    return dark


def _grid_scale(polylines) -> float:
    """Paper scale factor from the grid period (1.0 when the page is printed 1:1)."""
    lines = [p for p, col in polylines if len(p) == 2 and not _is_dark(col)]
    if len(lines) < 6:
        return 1.0
    seg = np.asarray(lines)                           # (n, 2 points, u/v)
    du = np.abs(seg[:, 1, 0] - seg[:, 0, 0])
    dv = np.abs(seg[:, 1, 1] - seg[:, 0, 1])
    pos = seg[(du < 1e-3) & (dv > 20 * PT_PER_MM), 0, 0]   # long vertical lines
    if len(pos) < 6:
        return 1.0
    d = np.diff(np.unique(np.round(pos, 2)))
    d = d[d > 0.5]
    if not len(d):
        return 1.0
    period = float(np.median(d))
    best = min((abs(np.log(period / (k * PT_PER_MM))), k) for k in (1.0, 5.0))[1]
    s = period / (best * PT_PER_MM)
    return s if 0.7 < s < 1.4 and abs(s - 1) > 0.01 else 1.0


def _find_pulses(polylines, pt_mm):
    """Calibration pulses: two equal vertical strokes joined by a horizontal top.

    Returns a list of (u_left, v_foot, height_pt, width_pt).
    """
    segs = []
    for p, col in polylines:
        if not _is_dark(col) or len(p) > 40:
            continue
        segs.append(np.column_stack([p[:-1], p[1:]]))
    if not segs:
        return []
    s = np.concatenate(segs)                       # u0 v0 u1 v1
    du = np.abs(s[:, 2] - s[:, 0])
    dv = s[:, 3] - s[:, 1]
    vert = s[(du < 0.05 * pt_mm) & (np.abs(dv) > 2.0 * pt_mm) & (np.abs(dv) < 45 * pt_mm)]
    hor = s[(np.abs(dv) < 0.05 * pt_mm) & (du > 0.5 * pt_mm)]
    out = []
    if len(vert) < 2 or not len(hor):
        return out
    u = vert[:, 0]
    lo = np.minimum(vert[:, 1], vert[:, 3])
    hi = np.maximum(vert[:, 1], vert[:, 3])
    # pairs of equal strokes 1-30 mm apart, found at once (a page can have hundreds of
    # short dark verticals: separators, marks, glyph stems)
    w_all = u[None, :] - u[:, None]
    pair = ((w_all > 1.0 * pt_mm) & (w_all < 30 * pt_mm)
            & (np.abs(lo[:, None] - lo[None, :]) <= 0.3 * pt_mm)
            & (np.abs(hi[:, None] - hi[None, :]) <= 0.3 * pt_mm))
    for i, j in zip(*np.nonzero(pair)):
        # a top (upward pulse) joining the two strokes
        top = hor[(np.abs(hor[:, 1] - hi[i]) < 0.3 * pt_mm)
                  & (np.minimum(hor[:, 0], hor[:, 2]) <= u[i] + 0.3 * pt_mm)
                  & (np.maximum(hor[:, 0], hor[:, 2]) >= u[j] - 0.3 * pt_mm)]
        if len(top):
            out.append((float(u[i]), float(lo[i]), float(hi[i] - lo[i]), float(u[j] - u[i])))
    return out


def _text_number(regex, text):
    m = regex.findall(text)
    if not m:
        return None
    vals = [float(v.replace(",", ".")) for v in m]
    vals = [v for v in vals if v > 0]
    return max(set(vals), key=vals.count) if vals else None


# --------------------------------------------------------------------------------------------
# traces, rows, labels
# --------------------------------------------------------------------------------------------
def _trace_candidates(polylines, pt_mm, pulses=None):
    """Long dark polylines that are functions of time, oriented left to right.

    A calibration pulse drawn in the same polyline as the trace (before or
    after it) is cut off and appended to ``pulses``; left in place it would
    shift the row's time origin and become part of the first lead.
    """
    out = []
    for p, col in polylines:
        if len(p) < 30 or not _is_dark(col):
            continue
        u = p[:, 0]
        ext = u.max() - u.min()
        if ext < 15 * pt_mm:
            continue
        if u[-1] < u[0]:
            p = p[::-1]
            u = p[:, 0]
        step = np.diff(u)
        if np.mean(step >= -0.02 * pt_mm) < 0.97:   # not a function of time: text, frames
            continue
        for end in (0, 1):                           # a pulse ahead of, then after, the trace
            q = p[::-1] if end else p
            cut = _cut_pulse(q, pt_mm)
            if cut is not None:
                q, pulse = cut
                p = q[::-1] if end else q
                if pulses is not None:
                    pulses.append(pulse)
        u = p[:, 0]
        if len(p) < 30 or u[-1] - u[0] < 15 * pt_mm:
            continue
        v = p[:, 1]
        out.append({"pts": p, "u0": float(u[0]), "u1": float(u[-1]),
                    "base": _mode(v, 0.05 * pt_mm)})
    return out


def _cut_pulse(p, pt_mm):
    """Split a calibration pulse off the start of a polyline (``p`` runs away from it).

    The pulse is a flat lead-in, a vertical stroke of 2-45 mm, a flat top of
    1-30 mm (one or more segments), a stroke of the same height back, and then
    usually a flat connector to where the trace starts. Returns ``(trace,
    (u_left, v_foot, height, width))`` with the connector dropped, or None
    when the polyline does not start that way. ``p`` may run right to left (a
    pulse after the trace); the returned u_left is then the pulse's right edge,
    which only serves as a position.
    """
    # software draws a pulse with exactly vertical edges and a flat top; 0.01 mm is
    # below the sample step of a trace even at 1 kHz and 25 mm/s (0.025 mm)
    tol = 0.01 * pt_mm
    n = min(len(p), 16)
    du = np.diff(p[:n, 0])
    dv = np.diff(p[:n, 1])
    i = 0
    while i < n - 1 and abs(dv[i]) < tol:            # flat lead-in
        i += 1
    if i >= n - 3 or abs(du[i]) > tol or not (2 * pt_mm < dv[i] < 45 * pt_mm):
        return None                                  # pulses point up (+1 mV)
    up = dv[i]
    j = i + 1
    width = 0.0
    while j < n - 1 and abs(dv[j]) < tol and abs(du[j]) > 0:
        width += abs(du[j])
        j += 1
    if j >= n - 1 or not (1 * pt_mm < width < 30 * pt_mm):
        return None
    if abs(du[j]) > tol or abs(dv[j] + up) > 0.3 * pt_mm:
        return None
    foot = j + 1
    v_foot = float(p[foot, 1])
    q = p[foot:]
    # the connector: flat at the foot level, much longer than a sample step
    while len(q) > 2 and abs(q[1, 1] - v_foot) < 0.01 * pt_mm \
            and abs(q[1, 0] - q[0, 0]) > 0.5 * pt_mm:
        q = q[1:]
    if len(q) > 2 and abs(q[1, 0] - q[0, 0]) < 1e-4 * pt_mm \
            and abs(q[0, 1] - v_foot) < 0.01 * pt_mm:
        q = q[1:]                            # the connector's end, under the first sample
    return q, (float(p[i, 0]), float(p[i, 1]), float(up), float(width))


def _mode(v, binw):
    """Most frequent level (the isoelectric line of an ECG trace)."""
    k = np.floor((v - v.min()) / binw).astype(np.int64)
    counts = np.bincount(k)
    # smooth over +-2 bins so a slightly sloping baseline still forms one peak
    counts = np.convolve(counts, np.ones(5), "same")
    return float(v.min() + (np.argmax(counts) + 0.5) * binw)


def _group_rows(traces, pt_mm):
    rows = []
    for tr in sorted(traces, key=lambda t: (-t["base"], t["u0"])):
        for row in rows:
            if abs(row["base"] - tr["base"]) < 4 * pt_mm and all(
                    tr["u0"] >= o["u1"] - 1.0 * pt_mm or tr["u1"] <= o["u0"] + 1.0 * pt_mm
                    for o in row["traces"]):
                row["traces"].append(tr)
                break
        else:
            rows.append({"base": tr["base"], "traces": [tr]})
    for row in rows:
        row["traces"].sort(key=lambda t: t["u0"])
    return rows


def _assign_labels(rows, words, pt_mm):
    """Attach each lead label to its trace.

    Renderers put labels at one consistent offset from their trace's baseline
    (above the start in most, just under the baseline on CardioSoft), but with a
    large gain a label can be as close to the row above as to its own. So the
    offset delta is chosen for the whole page: every candidate delta (a
    label-to-trace offset) is scored by how well labels then land on traces,
    with a penalty for traces left without a label and for two labels at one
    column of one trace.
    """
    traces = [tr for row in rows for tr in row["traces"]]
    for tr in traces:
        tr["labels"] = []
    if not words or not traces:
        return
    lu = np.array([w[1] for w in words])
    lv = np.array([w[2] for w in words])
    u0 = np.array([t["u0"] for t in traces])
    u1 = np.array([t["u1"] for t in traces])
    base = np.array([t["base"] for t in traces])
    ok = (lu[:, None] >= u0[None, :] - 20 * pt_mm) & (lu[:, None] <= u1[None, :])
    off = lv[:, None] - base[None, :]                    # (labels, traces)
    ok &= np.abs(off) < 120 * pt_mm
    if not ok.any():
        return
    penalty = 50.0 * pt_mm
    n_w, n_t = len(words), len(traces)
    # all candidate deltas at once: (deltas, labels, traces)
    deltas = np.unique(np.round(off[ok], 1))
    resid = np.where(ok[None], np.abs(off[None] - deltas[:, None, None]), np.inf)
    pick = np.argmin(resid, axis=2)                                   # (D, L)
    r = np.take_along_axis(resid, pick[:, :, None], axis=2)[:, :, 0]
    hit = np.isfinite(r)
    cost = np.where(hit, np.minimum(r, penalty), penalty).sum(axis=1)
    used = np.zeros((len(deltas), n_t), np.int64)
    rows_d = np.repeat(np.arange(len(deltas)), n_w)
    np.add.at(used, (rows_d[hit.ravel()], pick.ravel()[hit.ravel()]), 1)
    cost += penalty * (used == 0).sum(axis=1)
    # two labels in one column of a trace: neighbours (by position) on the same trace
    # closer than 5 mm
    key_t = np.where(hit, pick, n_t)                  # misses sort last, as their own group
    order = np.lexsort((np.broadcast_to(lu, pick.shape), key_t), axis=1)
    kt = np.take_along_axis(key_t, order, axis=1)
    us = lu[order]
    clash = (kt[:, 1:] == kt[:, :-1]) & (kt[:, 1:] < n_t) & (np.diff(us, axis=1) < 5 * pt_mm)
    cost += penalty * clash.sum(axis=1)
    best = np.lexsort((np.abs(deltas), cost))[0]      # lowest cost, then smallest offset
    pick, good = pick[best], hit[best] & (r[best] < 10 * pt_mm)
    for i, (word, uc, _vc, _h) in enumerate(words):
        if good[i]:
            traces[pick[i]]["labels"].append((uc, word))
    for tr in traces:
        tr["labels"].sort()


# --------------------------------------------------------------------------------------------
# the sample lattice
# --------------------------------------------------------------------------------------------
# Sampling rates of ECG sources. A page whose trace vertices sit on a lattice of one of
# these rates (within _FS_TOL) was drawn one vertex per sample, so the vertex spacing, not
# the printed speed, is the time scale.
_COMMON_FS = (50.0, 100.0, 120.0, 125.0, 128.0, 150.0, 200.0, 240.0, 250.0, 256.0, 257.0,
              300.0, 360.0, 400.0, 500.0, 512.0, 600.0, 800.0, 1000.0, 1024.0, 1200.0,
              2000.0, 2048.0, 4000.0, 5000.0, 8000.0, 10000.0)
# A renderer that maps N samples onto a width meant for N + 1 (matplotlib's xlim
# [0, N - 1], for one) is off by 1/N, i.e. 1e-4 for 10 s at 1 kHz. Printer device grids
# (300 or 600 dpi at 25 or 50 mm/s: 295.3 or 590.6 steps/s) are 1.6 % away from any rate
# in the list, so 0.25 % separates the two.
_FS_TOL = 0.0025


def _sample_lattice(u, pt_mm):
    """Spacing (pt) of the regular lattice a trace's vertices sit on, or None.

    Renderers draw one vertex per sample; simplifying renderers (matplotlib's
    default) drop vertices but keep the survivors at their sample positions. So
    the smallest vertex step is one sample interval and every vertex lies on a
    whole number of them. The spacing is refined over growing spans so that
    rounding to the nearest lattice index stays exact on 10^4-sample rows.
    """
    if len(u) < 20:
        return None
    d = np.diff(u)
    pos = d[d > 1e-3 * pt_mm]          # vertical strokes (same time) carry no spacing
    if len(pos) < 10:
        return None
    near = pos[pos < 1.5 * pos.min()]
    if len(near) < 5:
        return None
    delta = float(np.median(near))
    x = u - u[0]
    span = 50.0
    while True:
        sel = x <= span * delta
        k = np.round(x[sel] / delta)
        if k[-1] <= 0:
            return None
        kk = k - k.mean()
        delta = float(np.dot(kk, x[sel] - x[sel].mean()) / np.dot(kk, kk))
        if sel.all():
            break
        span *= 10.0
    k = np.round(x / delta)
    resid = x - delta * k
    resid -= np.median(resid)
    if not delta > 0 or np.mean(np.abs(resid) < 0.1 * delta) < 0.995:
        return None
    return delta


def _lattice_rate(traces, pt_s, pt_mm):
    """Time scale (pt per second) from the traces' sample lattice, and its rate.

    Returns ``(pt_per_s, fs)``: the lattice spacing times the snapped sampling
    rate when the traces agree on one rate from :data:`_COMMON_FS`, else the
    nominal ``pt_s`` (from the printed speed) and None.
    """
    deltas, rates = [], []
    # the four longest traces settle it (a page's rows share one rate) at a third of the cost
    for tr in sorted(traces, key=lambda tr: -len(tr["pts"]))[:4]:
        delta = _sample_lattice(tr["pts"][:, 0], pt_mm)
        if delta is None:
            continue
        fs_page = pt_s / delta
        best = min(_COMMON_FS, key=lambda f: abs(np.log(fs_page / f)))
        if abs(fs_page / best - 1.0) > _FS_TOL:
            return pt_s, None          # a lattice, but not samples (a device grid)
        deltas.append(delta)
        rates.append(best)
    if not rates or len(set(rates)) != 1:
        return pt_s, None
    return float(np.median(deltas)) * rates[0], rates[0]


# --------------------------------------------------------------------------------------------
# the reader
# --------------------------------------------------------------------------------------------
def _open(path):
    try:
        import pypdfium2 as pdfium
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise DigitizeError(f"reading PDFs needs pypdfium2 ({exc})", path) from None
    try:
        return pdfium.PdfDocument(os.fspath(path))
    except Exception as exc:  # pdfium raises its own PdfiumError for damaged files
        raise DigitizeError(f"not a readable PDF ({exc})", path) from None


def page_has_images(page) -> bool:
    import pypdfium2.raw as raw

    for i in range(raw.FPDFPage_CountObjects(page.raw)):
        if raw.FPDFPageObj_GetType(raw.FPDFPage_GetObject(page.raw, i)) == raw.FPDF_PAGEOBJ_IMAGE:
            return True
    return False


def read_vector_pdf(path, fs: float = 500.0, layout: str = "auto", pages=None) -> Record:
    """Digitise a vector PDF ECG from its drawing paths.

    Parameters
    ----------
    path : str or path-like
        The PDF.
    fs : float
        Output sampling rate, Hz.
    layout : str
        Recorded in ``meta``; the vector reader finds rows and leads itself.
    pages : sequence of int, optional
        Pages to read (default all). Leads from several pages share t = 0.

    Returns
    -------
    Record
        The 12 standard leads (NaN where not drawn) plus any extra labelled
        leads (V3R, V7, ...), in mV at ``fs``.

    Raises
    ------
    DigitizeError
        No vector ECG traces found, or none could be named.
    """
    from .._pdfium import PDFIUM_LOCK
    with PDFIUM_LOCK:
        doc = _open(path)
        try:
            return _read_doc(doc, path, float(fs), layout, pages)
        finally:
            doc.close()


def _read_doc(doc, path, fs, layout, pages):
    n_pages = len(doc)
    if n_pages == 0:
        raise DigitizeError("the PDF has no pages", path)
    segments = []        # (lead, t_start, t_end, curve, end inclusive)
    meta_pages = []
    speed_used = gain_used = None
    flags = {}
    pt_mm_used = PT_PER_MM
    for pi in (range(n_pages) if pages is None else pages):
        page = doc[pi]
        polylines, words, text = extract_page_content(page)
        page.close()
        pt_mm = PT_PER_MM * _grid_scale(polylines)
        joined = []
        traces = _trace_candidates(polylines, pt_mm, joined)
        if not traces:
            continue
        speed_txt = _text_number(_SPEED_RE, text)
        gain_txt = _text_number(_GAIN_RE, text)
        pulses = _find_pulses(polylines, pt_mm) + joined
        gain_pulse = float(np.median([p[2] for p in pulses])) / pt_mm if pulses else None
        gain = gain_txt
        if gain_pulse is not None and (gain is None or abs(gain_pulse / gain - 1) > 0.05):
            if gain is not None:
                flags["gain_text_disagrees_with_pulse"] = True
            gain = gain_pulse
        if gain is None:
            gain = 10.0
            flags["gain_assumed"] = True
        speed = speed_txt
        if speed is None:
            if pulses:  # a pulse is usually 0.2 s wide
                speed = float(np.median([p[3] for p in pulses])) / pt_mm / 0.2
                flags["speed_from_pulse_width"] = True
            else:
                speed = 25.0
                flags["speed_assumed"] = True
        rows = _group_rows(traces, pt_mm)
        _assign_labels(rows, words, pt_mm)
        pt_mv = pt_mm * gain
        pt_s, fs_lattice = _lattice_rate(traces, pt_mm * speed, pt_mm)
        dt = 1.0 / fs_lattice if fs_lattice else 0.0
        # Off a sample lattice, a writer may snap the vertices to its device grid
        # (CardioSoft: 0.24 pt, 1.7 ms at 50 mm/s), which can end a 5-s trace a
        # fraction of a sample early: its end is known to half a grid step. On a
        # lattice the times are exact.
        end_tol = 0.0 if dt else 0.5 * _grid_step(traces) / pt_s
        longest = max(tr["u1"] - tr["u0"] for tr in traces)
        # traces drawn one after another: a gap of more than 1.5 samples (or, with no
        # sample lattice, 2.5 mm) between one's end and the next's start is visible
        min_gap = 1.5 * pt_s * dt if dt else 2.5 * pt_mm
        for row in rows:
            # the pulse foot is the row's 0 mV when there is one on the row's level
            base = row["base"]
            for pu in pulses:
                if abs(pu[1] - base) < 3 * pt_mm and (pu[0] < row["traces"][0]["u0"]
                                                       or pu[0] > row["traces"][-1]["u1"]):
                    base = pu[1]
            inserted = _gaps_are_inserted(row["traces"], longest, pt_s * dt, min_gap)
            u_prev, u_origin = None, row["traces"][0]["u0"]
            for tr in row["traces"]:
                if u_prev is not None and tr["u0"] - u_prev[1] > min_gap:
                    # A visible gap. After a full-length trace in a row of two it starts
                    # another panel of the same time span (6x2 side by side): the time
                    # axis restarts. Otherwise (3x4 columns) it is either blank paper put
                    # between them (time goes on from the previous column's end) or
                    # samples left out (time goes on with the paper): see
                    # _gaps_are_inserted.
                    if u_prev[1] - u_prev[0] > 0.9 * longest and len(row["traces"]) <= 2:
                        u_origin = tr["u0"]
                    elif inserted:
                        t_next = (u_prev[1] - u_origin) / pt_s + dt
                        u_origin = tr["u0"] - t_next * pt_s
                u_prev = (tr["u0"], tr["u1"])
                names = [w for _, w in tr["labels"]]
                if not names:
                    flags["unlabelled_traces"] = flags.get("unlabelled_traces", 0) + 1
                    continue
                k = len(names)
                t = (tr["pts"][:, 0] - u_origin) / pt_s
                v = (tr["pts"][:, 1] - base) / pt_mv
                ta, tb = t[0], t[-1]
                edges = _column_edges(tr, ta, tb, k, u_origin, pt_s, dt)
                curve = _prepare_curve(t, v)
                if dt:
                    # vertices a simplifying writer dropped: rebuilt on the sample lattice
                    curve = _fill_dropped(curve, dt, pt_s, pt_mv)
                for j, name in enumerate(names):
                    # (lead, start, end, curve, and for the trace's last lead the
                    # tolerance of its end vertex (s), else None)
                    segments.append((normalize_lead(_canon_label(name)), edges[j], edges[j + 1],
                                     curve, end_tol if j == k - 1 else None))
        meta_pages.append({"page": pi, "speed": speed, "gain": gain, "pulses": len(pulses),
                           "fs_drawn": fs_lattice, "speed_drawn": pt_s / pt_mm,
                           "speed_text": speed_txt, "gain_text": gain_txt,
                           "gain_pulse": gain_pulse})
        speed_used, gain_used, pt_mm_used = speed, gain, pt_mm
    if not segments:
        if any(page_has_images(doc[i]) for i in range(n_pages)):
            raise DigitizeError("no vector ECG traces in the PDF (its pages are images)", path)
        raise DigitizeError("no vector ECG traces and no images in the PDF", path)
    return _assemble(segments, fs, path, {
        "source_kind": "vector", "layout": layout, "speed": speed_used, "gain": gain_used,
        "pt_per_mm": pt_mm_used, "pages": meta_pages, "digitize_flags": flags})


def _gaps_are_inserted(row_traces, longest, step, min_gap):
    """Whether the visible gaps between a row's columns are blank paper put between them.

    A renderer may separate consecutive columns by inserting space (time goes on
    from the previous column's last sample) or by leaving samples out (time goes
    on with the paper). The page's longest trace (the rhythm strip) covers the
    whole time span: the reading whose row length comes closer to it wins.
    Without such a strip the columns are taken as abutting in time (inserted).
    """
    tr = list(row_traces)
    if len(tr) < 2:
        return True
    gaps = [b["u0"] - a["u1"] for a, b in zip(tr[:-1], tr[1:])]
    if not any(g > min_gap for g in gaps):
        return True
    span_paper = tr[-1]["u1"] - tr[0]["u0"]
    span_inserted = sum(t["u1"] - t["u0"] for t in tr) + step * (len(tr) - 1)
    if span_paper > 1.1 * longest and span_inserted > 1.1 * longest:
        return True                         # no strip to compare with
    return abs(span_inserted - longest) <= abs(span_paper - longest)


def _canon_label(name: str) -> str:
    n = name.strip()
    if re.fullmatch(r"V[1-9][rR]", n):
        return n[:-1] + "R"
    return n


def _column_edges(tr, ta, tb, k, u_origin, pt_s, dt=0.0):
    """Time edges of the k leads concatenated in one polyline (k+1 values).

    ``dt`` is the sample interval when the vertices sit on a known sample
    lattice: the polyline then holds whole samples ``ta .. tb`` and k equal
    columns of ``(tb - ta + dt) / k`` each (2500 samples for a 10-s 1-kHz
    row of four 2.5-s leads, not 2499.75).
    """
    if k == 1:
        return [ta, tb]
    lab_t = np.array([(uc - u_origin) / pt_s for uc, _ in tr["labels"]])
    equal = ta + (tb - ta + dt) * np.arange(k + 1) / k
    # labels sit at (or just after) their column start; trust equal columns if they agree
    if np.all(np.abs(lab_t[1:] - equal[1:-1]) < 0.3 * (tb - ta) / k):
        edges = equal
    else:
        edges = np.concatenate([[ta], lab_t[1:] - (lab_t[0] - ta), [tb]])
    edges = list(edges)
    edges[-1] = tb
    return edges


# Tolerance (in samples) when a time falls on a sample: lattice times are exact up to
# float rounding, and a sample on a column edge must land in exactly one column.
_EPS = 1e-3


def _prepare_curve(t, v):
    """Knots and PCHIP slopes of a drawn trace, for :func:`_eval_curve`.

    Between the vertices the curve is a shape-preserving cubic (Fritsch-Carlson
    slopes, as in PCHIP): it passes through every vertex, never overshoots
    them, and follows a trace whose renderer dropped vertices (matplotlib's
    path simplification keeps one in two to one in six) more closely than
    straight chords do on smooth traces; :func:`_fill_dropped` then does better
    where the sample lattice is known.
    """
    tt = np.maximum.accumulate(np.asarray(t, np.float64))   # keep times sorted
    keep = np.empty(len(tt), bool)
    keep[:-1] = tt[1:] > tt[:-1]      # of repeated times (vertical strokes) keep the last
    keep[-1] = True
    tt, vv = tt[keep], np.asarray(v, np.float64)[keep]
    n = len(tt)
    d = np.zeros(n)
    if n < 3:
        if n == 2:
            d[:] = (vv[1] - vv[0]) / (tt[1] - tt[0])
        return tt, vv, d
    h = np.diff(tt)
    m = np.diff(vv) / h
    m0, m1, h0, h1 = m[:-1], m[1:], h[:-1], h[1:]
    w1, w2 = 2 * h1 + h0, h1 + 2 * h0
    same = (np.sign(m0) * np.sign(m1)) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        hm = (w1 + w2) / (w1 / m0 + w2 / m1)
    d[1:-1] = np.where(same, hm, 0.0)
    d[0] = _pchip_end(h[0], h[1], m[0], m[1])
    d[-1] = _pchip_end(h[-1], h[-2], m[-1], m[-2])
    return tt, vv, d


# matplotlib's path.simplify_threshold (rcParams default 1/9), in the writer's device units:
# points for PDF and SVG output.
_SIMPLIFY_TOL_PT = 1.0 / 9.0
# Where a run's line passes its end vertex: P_b sits this fraction of the tolerance off
# the line, on the side the trace turns to next (median measured on real and simulated
# ECGs simplified by matplotlib: 0.6; 0.4-0.7 score alike in the blend, within 0.2 dB).
_END_OFFSET = 0.5


def _fill_dropped(curve, dt, pt_s, pt_mv):
    """Fill the samples a simplifying writer dropped, where the time lattice is known.

    matplotlib's path simplifier (on by default for every ``savefig``) walks the
    polyline forward: a run starts at a kept vertex ``P_a``; its line ``L``
    goes through ``P_a`` and the next sample; samples are merged while their
    perpendicular distance from ``L`` stays below ``tol`` (1/9 pt) and the
    run's last sample ``P_b`` is kept when the following one breaks away. So
    the dropped samples of a run hug a line through ``P_a`` whose slope is
    known to within ``tol * sqrt(1 + s^2) / n`` (``n`` samples in the run), and
    ``P_b`` lies up to ``tol`` off it, mostly on the side the trace turns to
    next. Across the line a dropped sample is pinned to ``tol``; along it (in
    time) it is not, which on a steep edge of slope ``s`` leaves
    ``tol * sqrt(1 + s^2)`` of level open: that is where most of the remaining
    error is.

    Each dropped sample is the mean of two estimates with largely independent
    errors: the shape-preserving cubic through the kept vertices (smooth
    signals: a QRS edge spread over many samples) and that line, placed with
    ``P_b`` at :data:`_END_OFFSET` of the tolerance on the turning side (short,
    straight runs: noisy or sharp signals). Measured on 5 real records
    (100-1000 Hz) and simulated ones, the mean gains 0.1-3 dB per record over
    the cubic alone (single leads may lose up to ~0.6 dB). A smoothest-curve
    fit inside the corridor (least squares on second or third differences with
    the corridor as bounds) and plain cubic splines scored below the
    shape-preserving cubic: an ECG's corners are sharp at this scale. Where no
    vertex is missing the curve is returned unchanged.

    Parameters
    ----------
    curve : tuple
        ``(t, v, slopes)`` from :func:`_prepare_curve` (s, mV, mV/s).
    dt : float
        Sample interval of the drawn lattice, s.
    pt_s, pt_mv : float
        Page points per second and per millivolt (the writer's device units).

    Returns
    -------
    tuple
        A curve for :func:`_eval_curve` with a knot on every lattice sample
        between the first and last vertex.
    """
    tt, vv, _ = curve
    if len(tt) < 3:
        return curve
    k = (tt - tt[0]) / dt
    ki = np.round(k)
    if np.max(np.abs(k - ki)) > 0.05:       # not on one lattice: nothing to rebuild from
        return curve
    ki = ki.astype(np.int64)
    gap = np.diff(ki)
    if gap.max() < 2 or gap.min() < 1:
        return curve
    dx = dt * pt_s                           # pt per sample
    y = vv * pt_mv                           # pt
    m = np.diff(y) / (gap * dx)              # chord slopes
    # which way the trace turns after each run's end vertex (0 after the last run)
    turn = np.zeros(len(m))
    turn[:-1] = np.sign(m[1:] - m[:-1])
    g = np.flatnonzero(gap >= 2)
    n = gap[g].astype(np.float64)
    dy = y[g + 1] - y[g]
    tol = _SIMPLIFY_TOL_PT
    # slope of L with P_b at _END_OFFSET * tol from it on the turning side
    sl = m[g].copy()
    for _ in range(3):
        sl = (dy - _END_OFFSET * turn[g] * tol * np.sqrt(1 + sl * sl)) / (n * dx)
    # ... within what the simplifier allows: P_b less than tol from L, i.e.
    # |dy - n d1| < tol * sqrt(dx^2 + d1^2) / dx for the first step d1 = sl * dx
    kk = (tol / dx) ** 2
    a = n * n - kk
    ok = a > 0
    r = np.sqrt(np.maximum(kk * dy * dy + tol * tol * a, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = (n * dy - r) / a, (n * dy + r) / a
    d1 = np.where(ok, np.clip(sl * dx, lo, hi), m[g] * dx)
    # every dropped sample: its run, and its step from the run's start
    cnt = gap[g] - 1
    run = np.repeat(np.arange(len(g)), cnt)
    step = np.arange(len(run)) - np.repeat(np.cumsum(cnt) - cnt, cnt) + 1
    t_new = tt[g[run]] + step * dt
    v_line = (y[g[run]] + d1[run] * step) / pt_mv
    # a knot on every lattice sample, the kept vertices at their own times
    at = ki[g[run]] + step
    t_all = np.empty(ki[-1] + 1)
    v_all = np.empty(ki[-1] + 1)
    t_all[ki], v_all[ki] = tt, vv
    t_all[at] = t_new
    v_all[at] = 0.5 * (_eval_curve(curve, t_new) + v_line)
    return _prepare_curve(t_all, v_all)


def _pchip_end(h0, h1, m0, m1):
    # one-sided three-point slope, limited so the end interval stays monotone
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3 * m0):
        return 3 * m0
    return d


def _eval_curve(curve, tk):
    """The prepared curve at times ``tk`` (clamped to its ends, like np.interp)."""
    tt, vv, d = curve
    if len(tt) == 1:
        return np.full(len(tk), vv[0])
    j = np.clip(np.searchsorted(tt, tk, side="right") - 1, 0, len(tt) - 2)
    h = tt[j + 1] - tt[j]
    s = np.clip((tk - tt[j]) / h, 0.0, 1.0)
    s2, s3 = s * s, s * s * s
    return ((2 * s3 - 3 * s2 + 1) * vv[j] + (s3 - 2 * s2 + s) * h * d[j]
            + (3 * s2 - 2 * s3) * vv[j + 1] + (s3 - s2) * h * d[j + 1])


def _grid_step(traces) -> float:
    """The smallest horizontal step between the vertices of any trace (pt): the
    writer's device grid when it snaps vertices to one, else some small value."""
    steps = [np.diff(tr["pts"][:, 0]) for tr in traces if len(tr["pts"]) > 1]
    steps = np.concatenate(steps) if steps else np.zeros(0)
    steps = steps[steps > 0]
    return float(steps.min()) if steps.size else 0.0


def _assemble(segments, fs, path, meta):
    # the record ends with the latest trace end (known to within that trace's tolerance)
    t_end = max(s[2] + (s[4] or 0.0) for s in segments)
    n = int(np.floor(min(t_end, 600.0) * fs + _EPS)) + 1
    extra = sorted({s[0] for s in segments} - set(STANDARD_12))
    leads = list(STANDARD_12) + extra
    sig = np.full((len(leads), n), np.nan, np.float32)
    length = np.zeros(len(leads))
    conf = {}
    # longest segment first, so a rhythm strip wins over the short window of the same lead
    for name, a, b, curve, end_tol in sorted(segments, key=lambda s: -(s[2] - s[1])):
        i = leads.index(name)
        # a lead owns the samples a <= t < b; the last lead of a trace also its end vertex
        k0 = max(0, int(np.ceil(a * fs - _EPS)))
        last = end_tol is not None
        k1 = int(np.floor((b + end_tol) * fs + _EPS)) + 1 if last else int(np.ceil(b * fs - _EPS))
        k1 = min(n, k1)
        if k1 <= k0:
            continue
        tk = np.arange(k0, k1) / fs
        vals = _eval_curve(curve, tk)
        row = sig[i, k0:k1]
        fill = np.isnan(row)
        row[fill] = vals[fill]
        length[i] += b - a
        conf[name] = 1.0 if not meta["digitize_flags"] else 0.8
    for name in leads:
        conf.setdefault(name, 0.0)
    meta["confidence"] = conf
    meta["format"] = "pdf"
    return Record(sig, fs, leads, meta=meta, source=os.fspath(path))
