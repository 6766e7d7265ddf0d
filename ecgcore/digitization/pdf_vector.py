"""Vector PDFs: read the ECG traces from the page's drawing paths (no rasterising).

Most carts and archives export ECGs as vector PDFs whose traces are stroked
polylines. Their vertices are the signal, so reading them is essentially
lossless (facts/digitization.md §10.1). The recipe (facts/formats.md §11):

1. collect every stroked path (pypdfium2 raw API; form XObjects are recursed
   with their matrices composed) and the text layer with character boxes;
2. map page points to *display* coordinates (u rightwards = time, v upwards =
   voltage) from the page's ``/Rotate``;
3. traces are long, dark polylines monotonic in u; the paper scale is
   72/25.4 pt per mm, checked against the grid period; speed (mm/s) and gain
   (mm/mV) come from the text layer and the calibration pulse (the pulse
   height wins when they disagree: it is the drawn 1 mV);
4. traces are grouped into rows by baseline; each lead label (nearest text)
   names a trace, or a column of a trace that concatenates several leads;
5. the non-uniform vertices are interpolated onto ``k / fs``.
"""

from __future__ import annotations

import ctypes
import os
import re

import numpy as np

from ..errors import DigitizeError
from ..record import Record, STANDARD_12, normalize_lead

__all__ = ["extract_page_content", "read_vector_pdf", "PT_PER_MM"]

PT_PER_MM = 72.0 / 25.4
_LEAD_RE = re.compile(r"^(I|II|III|aVR|aVL|aVF|AVR|AVL|AVF|V[1-9]R?|V[1-9]r|D[1-3]|DI|DII|DIII)$")
_SPEED_RE = re.compile(r"(\d+(?:[.,]\d+)?)\s*mm\s*/\s*s(?![a-z])", re.I)
_GAIN_RE = re.compile(r"(\d+(?:[.,]\d+)?)\s*mm\s*/\s*mV", re.I)


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
    # pdfium hands out one point per ctypes call, so this loop is the cost of a vector
    # page: bind every function once and keep per-point work to plain floats.
    get_type, get_matrix = raw.FPDFPageObj_GetType, raw.FPDFPageObj_GetMatrix
    n_segs, get_seg = raw.FPDFPath_CountSegments, raw.FPDFPath_GetPathSegment
    get_point, seg_type = raw.FPDFPathSegment_GetPoint, raw.FPDFPathSegment_GetType
    stroke = raw.FPDFPageObj_GetStrokeColor
    PATH, FORM, MOVETO = raw.FPDF_PAGEOBJ_PATH, raw.FPDF_PAGEOBJ_FORM, raw.FPDF_SEGMENT_MOVETO
    fx, fy = ctypes.c_float(), ctypes.c_float()
    px_, py_ = ctypes.byref(fx), ctypes.byref(fy)
    r, g, b, a = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
    m = raw.FS_MATRIX()
    for i in range(count):
        obj = get(i)
        kind = get_type(obj)
        if kind != PATH and kind != FORM:
            continue
        get_matrix(obj, m)
        mat = (m.a, m.b, m.c, m.d, m.e, m.f)
        full = _mat_mul(mat, parent) if parent is not None else mat
        if kind == FORM:
            _walk_objects(raw, raw.FPDFFormObj_CountObjects(obj),
                          lambda j, o=obj: raw.FPDFFormObj_GetObject(o, j), full, paths)
            continue
        n = n_segs(obj)
        if n < 2:
            continue
        if not stroke(obj, r, g, b, a):
            r.value = g.value = b.value = 0
        xs = [0.0] * n
        ys = [0.0] * n
        moves = []
        for k in range(n):
            seg = get_seg(obj, k)
            get_point(seg, px_, py_)
            xs[k] = fx.value
            ys[k] = fy.value
            if k and n > 2 and seg_type(seg) == MOVETO:
                moves.append(k)
        xs = np.array(xs)
        ys = np.array(ys)
        ca, cb, cc, cd, ce, cf = full
        X = ca * xs + cc * ys + ce
        Y = cb * xs + cd * ys + cf
        col = (r.value, g.value, b.value)
        bounds = [0] + moves + [n]
        for s0, s1 in zip(bounds[:-1], bounds[1:]):
            if s1 - s0 >= 2:
                paths.append((np.column_stack([X[s0:s1], Y[s0:s1]]), col))


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
    polylines = [(to_disp(p), col) for p, col in paths]
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
def _is_dark(col) -> bool:
    r, g, b = col
    return max(r, g, b) < 160 and (0.299 * r + 0.587 * g + 0.114 * b) < 110


def _grid_scale(polylines) -> float:
    """Paper scale factor from the grid period (1.0 when the page is printed 1:1)."""
    pos = []
    for p, col in polylines:
        if len(p) != 2 or _is_dark(col):
            continue
        du, dv = abs(p[1, 0] - p[0, 0]), abs(p[1, 1] - p[0, 1])
        if du < 1e-3 and dv > 20 * PT_PER_MM:
            pos.append(p[0, 0])
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
    for i in range(len(vert)):
        for j in range(len(vert)):
            w = u[j] - u[i]
            if not (1.0 * pt_mm < w < 30 * pt_mm):
                continue
            if abs(lo[i] - lo[j]) > 0.3 * pt_mm or abs(hi[i] - hi[j]) > 0.3 * pt_mm:
                continue
            # a top (upward pulse) joining the two strokes
            top = hor[(np.abs(hor[:, 1] - hi[i]) < 0.3 * pt_mm)
                      & (np.minimum(hor[:, 0], hor[:, 2]) <= u[i] + 0.3 * pt_mm)
                      & (np.maximum(hor[:, 0], hor[:, 2]) >= u[j] - 0.3 * pt_mm)]
            if len(top):
                out.append((float(u[i]), float(lo[i]), float(hi[i] - lo[i]), float(w)))
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
def _trace_candidates(polylines, pt_mm):
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
        v = p[:, 1]
        out.append({"pts": p, "u0": float(u[0]), "u1": float(u[-1]),
                    "base": _mode(v, 0.05 * pt_mm)})
    return out


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
    best = None
    for delta in np.unique(np.round(off[ok], 1)):
        resid = np.where(ok, np.abs(off - delta), np.inf)
        pick = np.argmin(resid, axis=1)
        r = resid[np.arange(len(words)), pick]
        hit = np.isfinite(r)
        cost = float(np.minimum(r[hit], penalty).sum()) + penalty * (~hit).sum()
        used = np.bincount(pick[hit], minlength=len(traces))
        cost += penalty * int((used == 0).sum())
        for j in np.flatnonzero(used > 1):       # two labels in one column of a trace
            us = np.sort(lu[hit & (pick == j)])
            cost += penalty * int((np.diff(us) < 5 * pt_mm).sum())
        key = (cost, abs(delta))
        if best is None or key < best[0]:
            best = (key, pick, hit & (r < 10 * pt_mm))
    _, pick, good = best
    for i, (word, uc, _vc, _h) in enumerate(words):
        if good[i]:
            traces[pick[i]]["labels"].append((uc, word))
    for tr in traces:
        tr["labels"].sort()


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
    segments = []        # (lead, t0, t_samples, values)
    meta_pages = []
    speed_used = gain_used = None
    flags = {}
    pt_mm_used = PT_PER_MM
    for pi in (range(n_pages) if pages is None else pages):
        page = doc[pi]
        polylines, words, text = extract_page_content(page)
        page.close()
        pt_mm = PT_PER_MM * _grid_scale(polylines)
        traces = _trace_candidates(polylines, pt_mm)
        if not traces:
            continue
        speed_txt = _text_number(_SPEED_RE, text)
        gain_txt = _text_number(_GAIN_RE, text)
        pulses = _find_pulses(polylines, pt_mm)
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
        pt_s, pt_mv = pt_mm * speed, pt_mm * gain
        for row in rows:
            # the pulse foot is the row's 0 mV when there is one on the row's level
            base = row["base"]
            for pu in pulses:
                if abs(pu[1] - base) < 3 * pt_mm and pu[0] < row["traces"][0]["u0"]:
                    base = pu[1]
            t_prev_end, u_prev_end, u_origin = None, None, row["traces"][0]["u0"]
            for tr in row["traces"]:
                if u_prev_end is not None and tr["u0"] - u_prev_end > 2.5 * pt_mm:
                    u_origin = tr["u0"]      # a visible gap: the time axis restarts
                u_prev_end = tr["u1"]
                names = [w for _, w in tr["labels"]]
                if not names:
                    flags["unlabelled_traces"] = flags.get("unlabelled_traces", 0) + 1
                    continue
                k = len(names)
                t = (tr["pts"][:, 0] - u_origin) / pt_s
                v = (tr["pts"][:, 1] - base) / pt_mv
                ta, tb = t[0], t[-1]
                edges = _column_edges(tr, ta, tb, k, u_origin, pt_s)
                for j, name in enumerate(names):
                    segments.append((normalize_lead(_canon_label(name)), edges[j], edges[j + 1],
                                     t, v))
        meta_pages.append({"page": pi, "speed": speed, "gain": gain, "pulses": len(pulses),
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


def _canon_label(name: str) -> str:
    n = name.strip()
    if re.fullmatch(r"V[1-9][rR]", n):
        return n[:-1] + "R"
    return n


def _column_edges(tr, ta, tb, k, u_origin, pt_s):
    """Time edges of the k leads concatenated in one polyline (k+1 values)."""
    if k == 1:
        return [ta, tb + 1e-9]
    lab_t = np.array([(uc - u_origin) / pt_s for uc, _ in tr["labels"]])
    equal = ta + (tb - ta) * np.arange(k + 1) / k
    # labels sit at (or just after) their column start; trust equal columns if they agree
    if np.all(np.abs(lab_t[1:] - equal[1:-1]) < 0.3 * (tb - ta) / k):
        edges = equal
    else:
        edges = np.concatenate([[ta], lab_t[1:] - (lab_t[0] - ta), [tb]])
    edges = list(edges)
    edges[-1] = tb + 1e-9
    return edges


def _assemble(segments, fs, path, meta):
    t_end = max(s[2] for s in segments)
    n = int(np.floor(min(t_end, 600.0) * fs + 1e-6)) + 1
    extra = sorted({s[0] for s in segments} - set(STANDARD_12))
    leads = list(STANDARD_12) + extra
    sig = np.full((len(leads), n), np.nan, np.float32)
    length = np.zeros(len(leads))
    conf = {}
    # longest segment first, so a rhythm strip wins over the short window of the same lead
    for name, a, b, t, v in sorted(segments, key=lambda s: -(s[2] - s[1])):
        i = leads.index(name)
        k0 = max(0, int(np.ceil(a * fs - 1e-6)))
        k1 = min(n, int(np.floor((b - 1e-9) * fs + 1e-6)) + 1)
        if k1 <= k0:
            continue
        tk = np.arange(k0, k1) / fs
        tt = np.maximum.accumulate(t)   # vertical strokes repeat a time; keep xp sorted
        vals = np.interp(tk, tt, v)
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
