"""Digitisation accuracy (Challenge 2024 SNR) and speed.

    python benchmarks/bench_digitize.py [--n 5]

Vector PDFs: pages rendered by ecgcore.plot (all layouts, every sample a vertex) and
the two sample PDFs on the shelf; then pages saved WITH matplotlib's default path
simplification (ecgcore.plot with simplification forced back on, the matplotlib
generator; simulated and real records at 100, 250, 500 and 1000 Hz; the dicom-ecg-plot
PDF), read before (cubics between kept vertices) and after the reader rebuilds the
dropped samples (pdf_vector._fill_dropped).
Raster pages (``--raster``): pages rendered by ecgcore.plot from real records on the
shelf and a simulated one, clean and damaged (rotation, blur+noise+JPEG, 100 dpi, grey
grid, scanner shading), plus the ecg-image-kit page set in shared/data/ecg_pages per
profile; accuracy (2024 metric) and pages/s in one process.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import matplotlib
import numpy as np

import ecgcore
from ecgcore.digitization.metric import challenge_snr

SHARED = os.environ.get("ECGCORE_SHARED", os.path.join(os.path.dirname(__file__), "..", "..",
                                                       "shared"))


def rendered(n, tmp):
    rows = []
    recs = ecgcore.simulate(n=n, fs=500, duration=10, seed=1)
    recs = recs if isinstance(recs, list) else [recs]
    for k, rec in enumerate(recs):
        for layout in ("3x4+II", "3x4", "6x2", "12x1"):
            path = os.path.join(tmp, f"r{k}_{layout}.pdf")
            with matplotlib.rc_context({"path.simplify": False}):
                res = ecgcore.plot(rec, path, layout=layout)
            ref = res.reference(rec)
            rows.append((layout, path, ref))
    return rows


def _mpl_page(sig, fs, path, layout="3x4+II", simplify=False, speed=25.0, gain=10.0):
    """A page drawn with matplotlib's own calls (a second generator, not ecgcore.plot).

    A4 landscape, 1/5 mm grid, a calibration pulse joined to the start of each row's
    polyline, leads concatenated per row (dicom-ecg-plot style), labels above the
    columns, "Speed: .. mm/s  Limb: .. mm/mV" text. Returns ``sig`` NaN where not drawn.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    rows = ([["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"],
             ["II"]] if layout == "3x4+II" else [[a, b] for a, b in zip(ecgcore.STANDARD_12[:6],
                                                                       ecgcore.STANDARD_12[6:])])
    fig = Figure(figsize=(297 / 25.4, 210 / 25.4))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 297)
    ax.set_ylim(0, 210)
    ax.set_axis_off()
    for step, colour, lw in ((1, "#ffd0d0", 0.15), (5, "#f08080", 0.4)):
        xs, ys = np.arange(10.0, 287.01, step), np.arange(12.0, 198.01, step)
        ax.add_collection(LineCollection([((x, 12), (x, 198)) for x in xs]
                                         + [((10, y), (287, y)) for y in ys],
                                         colors=colour, linewidths=lw))
    n = sig.shape[1]
    x0 = 16.0 + 0.2 * speed
    pitch = 180.0 / len(rows)
    truth = np.full(sig.shape, np.nan)
    for r, row in enumerate(rows):
        base = 190.0 - pitch * (r + 0.6) + 0.7
        chunk = n // len(row)
        X = [[12.0, 13.0, 13.0, 13.0 + 0.2 * speed, 13.0 + 0.2 * speed, x0]]
        Y = [[base, base, base + gain, base + gain, base, base]]
        for c, name in enumerate(row):
            i = ecgcore.STANDARD_12.index(name)
            a, b = c * chunk, (c + 1) * chunk
            truth[i, a:b] = sig[i, a:b]
            X.append(x0 + np.arange(a, b) / fs * speed)
            Y.append(base + gain * sig[i, a:b])
            ax.text(X[-1][0] + 1.0, base + 0.3 * pitch, name, fontsize=8)
        ax.plot(np.concatenate(X), np.concatenate(Y), color="k", lw=0.6)
    ax.text(200, 5, f"Speed: {speed:g}mm/s   Limb: {gain:g}mm/mV", fontsize=7)
    with matplotlib.rc_context({"path.simplify": simplify}):
        fig.savefig(path, format="pdf")
    return truth


def _score(path, ref, fs, align=True):
    out = ecgcore.digitize(path, fs=fs)
    est = out.conform(ecgcore.STANDARD_12, derive=False, missing="nan").signal.astype(float)
    E = np.full(ref.shape, np.nan)
    n = min(E.shape[1], est.shape[1])
    E[:, :n] = est[:, :n]
    R = ref.copy()
    R[np.isnan(E)] = np.nan
    return float(np.nanmean(challenge_snr(R, E, fs, align=align))), out


def _real_records():
    """Real records at 100, 250, 500 and 1000 Hz (10 s; 12 rows, 2-lead records tiled)."""
    out = []
    for rel in ("ptbxl/00001_lr.hea", "qtdb/sel100.hea", "wfdb/JS00001.hea", "ludb/1.hea",
                "wfdb/s0010_re.hea"):
        p = os.path.join(SHARED, "data", rel)
        if not os.path.exists(p):
            continue
        rec = ecgcore.read(p)
        sig = rec.signal[:, :int(10 * rec.fs)].astype(float)
        if rec.n_leads >= 12 and set(ecgcore.STANDARD_12) <= set(rec.conform().leads):
            sig = rec.conform().signal[:12, :int(10 * rec.fs)].astype(float)
        else:                                   # a 2-lead Holter: its leads in turn
            sig = np.resize(sig, (12, sig.shape[1]))
        # drawn about its own baseline, as a plotter centres a trace (qtdb sits at +4.8 mV)
        sig = np.nan_to_num(sig - np.nanmedian(sig, axis=1, keepdims=True))
        out.append((rel, rec.fs, sig))
    return out


def _plot_simplified(rec, path, layout="3x4+II"):
    """An ecgcore.plot page saved the way matplotlib saves by default (traces simplified)."""
    res = ecgcore.plot(rec, None, layout=layout)
    for coll in res.figure.axes[0].collections:
        for p in coll.get_paths():
            p.should_simplify = True
    with matplotlib.rc_context({"path.simplify": True}):
        res.figure.savefig(path, format="pdf")
    ref = res.reference(rec)
    return ref


def simplified(tmp, speed=None):
    """Pages saved WITH matplotlib's default path simplification: SNR before / after the
    reader rebuilds the dropped samples (before = shape-preserving cubics alone).

    "Before" switches ``pdf_vector._fill_dropped`` off in this process; both readings
    use the same files. Returns rows for the vector table; adds two of the pages to
    ``speed`` (name -> path) for the timing table.
    """
    import ecgcore.digitization.pdf_vector as pv

    fill = pv._fill_dropped
    sets = {}
    sims = ecgcore.simulate(n=3, fs=500, duration=10, seed=21)
    sims = sims if isinstance(sims, list) else [sims]
    for k, rec in enumerate(sims):
        path = os.path.join(tmp, f"ps{k}.pdf")
        sets.setdefault("ecgcore.plot 3x4+II, simplified (simulated, 500 Hz)", []).append(
            (path, _plot_simplified(rec, path), 500.0))
        path = os.path.join(tmp, f"ms{k}.pdf")
        sets.setdefault("matplotlib generator 3x4+II, simplified (simulated, 500 Hz)", []).append(
            (path, _mpl_page(rec.conform().signal.astype(float), 500.0, path, simplify=True),
             500.0))
    for rel, fs, sig in _real_records():
        path = os.path.join(tmp, f"mr{len(sets)}_{int(fs)}.pdf")
        sets.setdefault(f"matplotlib generator 3x4+II, simplified, {rel} ({fs:g} Hz)", []).append(
            (path, _mpl_page(sig, fs, path, simplify=True), fs))
        if sig.shape[0] == 12 and rel != "qtdb/sel100.hea":
            path = os.path.join(tmp, f"pr{len(sets)}_{int(fs)}.pdf")
            rec = ecgcore.Record(sig.astype(np.float32), fs, list(ecgcore.STANDARD_12))
            sets.setdefault(f"ecgcore.plot 3x4+II, simplified, {rel} ({fs:g} Hz)", []).append(
                (path, _plot_simplified(rec, path), fs))
    pdf = os.path.join(SHARED, "data", "pdf", "dicomecgplot_anonymous_ecg_3x4_1.pdf")
    if os.path.exists(pdf):
        from scipy.signal import butter, lfilter
        ref = ecgcore.read(os.path.join(SHARED, "data", "dicom", "pydicom_waveform_ecg.dcm"))
        b, a = butter(1, [0.05 / 500, 40.0 / 500], btype="band")
        sets["dicomecgplot_anonymous_ecg_3x4_1.pdf vs the signal it drew (1000 Hz)"] = [
            (pdf, lfilter(b, a, ref.conform().signal.astype(float), axis=1), 1000.0)]
    if speed is not None:
        for name, items in sets.items():
            if name.startswith("ecgcore.plot 3x4+II, simplified (simulated"):
                speed["ecgcore.plot 3x4+II saved simplified, dropped samples rebuilt"] = \
                    items[0][0]
            if name.endswith("(1000 Hz)") and name.startswith("matplotlib generator"):
                speed["matplotlib generator, simplified, 1000 Hz, rebuilt"] = items[0][0]
    rows = []
    print("| simplified vector pages | pages | before (cubics) | after (rebuilt) | "
          "after, no alignment |")
    print("|---|---|---|---|---|")
    for name, items in sets.items():
        try:
            pv._fill_dropped = lambda curve, *a: curve
            before = [_score(p, r, fs)[0] for p, r, fs in items]
        finally:
            pv._fill_dropped = fill
        after = [_score(p, r, fs)[0] for p, r, fs in items]
        after0 = [_score(p, r, fs, align=False)[0] for p, r, fs in items]
        print(f"| {name} | {len(items)} | {np.mean(before):.1f} | {np.mean(after):.1f} | "
              f"{np.mean(after0):.1f} |")
        rows.append((name + " (rebuilt)", len(items), np.mean(after)))
    print()
    return rows


def _cpu_per_pdf(path, reps=5):
    ecgcore.digitize(path)
    t = time.process_time()
    for _ in range(reps):
        ecgcore.digitize(path)
    return (time.process_time() - t) / reps


def vector(n):
    """Vector-PDF accuracy (2024 metric) and CPU time per PDF, one process."""
    rows, speed = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        by = {}
        for layout, path, ref in rendered(n, tmp):
            by.setdefault(f"ecgcore.plot vector PDF {layout} (path.simplify off)", []).append(
                _score(path, ref, 500)[0])
            if layout == "3x4+II":
                speed.setdefault("ecgcore.plot 3x4+II, every sample a vertex", path)
        # as ecgcore.plot saves a page by default (it switches simplification off on its
        # trace paths, so every sample is a vertex)
        recs = ecgcore.simulate(n=n, fs=500, duration=10, seed=1)
        for k, rec in enumerate(recs if isinstance(recs, list) else [recs]):
            path = os.path.join(tmp, f"default{k}.pdf")
            res = ecgcore.plot(rec, path, layout="3x4+II")
            ref = res.reference(rec)
            by.setdefault("ecgcore.plot vector PDF 3x4+II as saved by default", []).append(
                _score(path, ref, 500)[0])
        rows += [(k, len(v), np.mean(v)) for k, v in by.items()]
        recs = ecgcore.simulate(n=n, fs=500, duration=10, seed=21)
        recs = recs if isinstance(recs, list) else [recs]
        real = []
        for rel in ("ptbxl/00001_lr.hea", "wfdb/JS00001.hea"):
            p = os.path.join(SHARED, "data", rel)
            if os.path.exists(p):
                real.append(ecgcore.read(p).conform())
        for layout in ("3x4+II", "6x2"):
            for simplify in (False, True):
                vals, vals0 = [], []
                for k, rec in enumerate(list(recs) + real):
                    path = os.path.join(tmp, f"m{k}_{layout}_{simplify}.pdf")
                    sig = rec.signal.astype(float)
                    ref = _mpl_page(sig, rec.fs, path, layout=layout, simplify=simplify)
                    vals.append(_score(path, ref, rec.fs)[0])
                    vals0.append(_score(path, ref, rec.fs, align=False)[0])
                    speed.setdefault(f"matplotlib generator {layout}, simplify={simplify}", path)
                rows.append((f"matplotlib generator {layout}, path.simplify "
                             f"{'on (default)' if simplify else 'off'}; no alignment: "
                             f"{np.mean(vals0):.1f}", len(vals), np.mean(vals)))
        rows += simplified(tmp, speed)
        print("| vector page set | pages | mean SNR (dB, 2024 metric) |")
        print("|---|---|---|")
        for name, k, v in rows:
            print(f"| {name} | {k} | {v:.1f} |")
        pdf = os.path.join(SHARED, "data", "pdf")
        if os.path.isdir(pdf):
            from scipy.signal import butter, lfilter
            path = os.path.join(pdf, "dicomecgplot_anonymous_ecg_3x4_1.pdf")
            ref = ecgcore.read(os.path.join(SHARED, "data", "dicom", "pydicom_waveform_ecg.dcm"))
            raw = ref.conform().signal.astype(float)
            # what dicom-ecg-plot (2013) drew: causal 1st-order 0.05-40 Hz Butterworth
            b, a = butter(1, [0.05 / 500, 40.0 / 500], btype="band")
            drawn = lfilter(b, a, raw, axis=1)
            s_drawn, out = _score(path, drawn, 1000)
            s_raw, _ = _score(path, raw, 1000)
            print(f"| dicomecgplot_anonymous_ecg_3x4_1.pdf vs the signal it drew (DICOM, 0.05-40 Hz) "
                  f"| 1 | {s_drawn:.1f} |")
            print(f"| dicomecgplot_anonymous_ecg_3x4_1.pdf vs the raw DICOM | 1 | {s_raw:.1f} |")
            path = os.path.join(pdf, "cardiosoft_testmann.pdf")
            out = ecgcore.digitize(path, fs=500)
            print(f"\ncardiosoft_testmann.pdf: Einthoven residual "
                  f"{1000 * np.nanstd(out['I'] + out['III'] - out['II']):.1f} uV, "
                  f"leads {','.join(out.leads)}")
            speed["dicomecgplot_anonymous_ecg_3x4_1.pdf"] = os.path.join(pdf, "dicomecgplot_anonymous_ecg_3x4_1.pdf")
            speed["cardiosoft_testmann.pdf (3 pages)"] = path
        print("\n| vector PDF (CPU time, one process) | ms/PDF | PDFs/s per core |")
        print("|---|---|---|")
        for name, path in speed.items():
            if path is None:
                continue
            dt = _cpu_per_pdf(path)
            print(f"| {name} | {1000 * dt:.1f} | {1 / dt:.0f} |")


def _keystone(w, h, k):
    """PIL PERSPECTIVE coefficients of a photo taken with the camera tilted back: the
    page's top edge ``k * w`` narrower on each side, top and bottom edges slanted."""
    d = k * w
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    dst = [(d, 0.3 * d), (w - d, 0), (w, h), (0, h - 0.2 * d)]
    A, B = [], []
    for (x, y), (X, Y) in zip(dst, src):
        A += [[x, y, 1, 0, 0, 0, -X * x, -X * y], [0, 0, 0, x, y, 1, -Y * x, -Y * y]]
        B += [X, Y]
    return tuple(np.linalg.solve(np.array(A, float), np.array(B, float)))


def _damage(src, dst, rng, angle=0.0, blur=0.0, noise=0.0, jpeg=None, shade=0.0,
            keystone=0.0, vignette=0.0, bow=0.0, fade=None):
    from PIL import Image, ImageFilter

    im = Image.open(src).convert("RGB")
    if bow:         # rows sag by ``bow`` of the height at the page's ends
        from scipy.ndimage import map_coordinates
        a = np.asarray(im).astype(np.float32)
        h, w = a.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        dy = bow * h * (2 * xx / w - 1) ** 2
        a = np.stack([map_coordinates(a[..., c], [yy - dy, xx], order=3, cval=255)
                      for c in range(3)], -1)
        im = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8))
    if keystone:    # a photo: perspective, and the table round the paper
        im = im.transform(im.size, Image.PERSPECTIVE, _keystone(*im.size, keystone),
                          resample=Image.BICUBIC, fillcolor=(80, 85, 95))
    if angle:
        fill = (80, 85, 95) if keystone else (255, 255, 255)
        im = im.rotate(angle, resample=Image.BILINEAR, fillcolor=fill)
    if blur:
        im = im.filter(ImageFilter.GaussianBlur(blur))
    a = np.asarray(im).astype(np.float32)
    if shade:
        h, w = a.shape[:2]
        a *= (1 - shade * np.linspace(0, 1, w)[None, :] * np.linspace(0.3, 1, h)[:, None])[..., None]
    if fade:        # faded thermal paper: darkness times lo..hi across, paper yellowed
        w = a.shape[1]
        a = 255 - (255 - a) * np.linspace(fade[0], fade[1], w)[None, :, None]
        a *= np.array([1.0, 0.96, 0.82])
    if vignette:    # a lamp off to one side, warm light
        h, w = a.shape[:2]
        r2 = (np.linspace(-0.3, 0.7, w)[None, :] ** 2 + np.linspace(-0.4, 0.6, h)[:, None] ** 2)
        a *= (1 - vignette * r2 / r2.max())[..., None] * np.array([1.0, 0.95, 0.85])
    if noise:
        a += rng.normal(0, noise, a.shape)
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if jpeg:
        dst = dst[:-4] + ".jpg"
        im.save(dst, quality=jpeg)
    else:
        im.save(dst)
    return dst


def _snr_vs(ref, out):
    est = out.conform(ecgcore.STANDARD_12, derive=False, missing="nan").signal.astype(float)
    e = np.full(ref.shape, np.nan)
    n = min(e.shape[1], est.shape[1])
    e[:, :n] = est[:, :n]
    return float(np.nanmean(challenge_snr(ref, e, out.fs)))


def raster(tmp):
    rng = np.random.default_rng(0)
    recs = []
    for rel in ("ptbxl/00001_lr.hea", "wfdb/JS00001.hea"):
        p = os.path.join(SHARED, "data", rel)
        if os.path.exists(p):
            recs.append((rel, ecgcore.read(p).conform()))
    sim = ecgcore.simulate(n=1, fs=500, duration=10, seed=3)
    recs.append(("simulate(seed=3)", (sim[0] if isinstance(sim, list) else sim).conform()))
    conds = {
        "clean 200 dpi": ({}, {}),
        "clean 200 dpi, 3x4 (no strip)": ({"layout": "3x4"}, {}),
        "clean 200 dpi, 6x2 (halves side by side)": ({"layout": "6x2"}, {}),
        "clean 200 dpi, 6x2c (contiguous, as carts print)": ({"layout": "6x2c"}, {}),
        "clean 200 dpi, 12x1": ({"layout": "12x1"}, {}),
        "clean 200 dpi, 3x4+3 (V1, II, V5 strips)": ({"layout": "3x4+3"}, {}),
        "clean 200 dpi, 3x4+2 (V1, II strips, five rows)": ({"layout": "3x4+2"}, {}),
        "clean 200 dpi, 3x4+1 with a V1 strip": ({"rhythm_leads": "V1"}, {}),
        "3x4+3, blur + noise + JPEG + rotation 3 deg": (
            {"layout": "3x4+3"}, {"blur": 0.8, "noise": 8.0, "jpeg": 70, "angle": 3.0}),
        "3x4+1 with an aVF strip, 100 dpi": ({"rhythm_leads": "aVF", "dpi": 100}, {}),
        "thick trace, 1.2 pt (0.42 mm)": ({"line_width": 1.2}, {}),
        "thick trace, 1.6 pt + blur + noise + JPEG": (
            {"line_width": 1.6}, {"blur": 0.8, "noise": 8.0, "jpeg": 70}),
        "clean 200 dpi, 50 mm/s 20 mm/mV": ({"speed": 50, "gain": 20}, {}),
        "grey grid (B/W)": ({"grid_color": "grey"}, {}),
        "100 dpi": ({"dpi": 100}, {}),
        "rotated 4 deg": ({}, {"angle": 4.0}),
        "blur 0.8 + noise 8 + JPEG 70": ({}, {"blur": 0.8, "noise": 8.0, "jpeg": 70}),
        "scanner shading + rotation -2 deg": ({}, {"shade": 0.35, "angle": -2.0}),
        "grey grid + blur + noise + JPEG + rotation 3 deg": (
            {"grid_color": "grey"}, {"blur": 0.7, "noise": 6.0, "jpeg": 75, "angle": 3.0}),
        "photo: keystone 1 %, table round the paper, noise + JPEG": (
            {}, {"keystone": 0.01, "noise": 4.0, "jpeg": 85}),
        "photo: keystone 3 % + rotation 2 deg + vignetting + noise + JPEG": (
            {}, {"keystone": 0.03, "angle": 2.0, "vignette": 0.4, "noise": 4.0, "jpeg": 85}),
        "photo: keystone 6 % + blur + noise + JPEG": (
            {}, {"keystone": 0.06, "blur": 0.6, "noise": 6.0, "jpeg": 80}),
        "paper bowed on the glass (rows sag 1 % of the height)": ({}, {"bow": 0.01}),
        "faded thermal print (ink at 30 % contrast, yellowed) + noise + JPEG": (
            {}, {"fade": (0.3, 0.3), "noise": 6.0, "jpeg": 80}),
        "faded unevenly (25 % to 50 % across the page) + noise + JPEG": (
            {}, {"fade": (0.25, 0.5), "noise": 6.0, "jpeg": 80}),
        "faded on one side (25 % rising to fresh across the page) + noise + JPEG": (
            {}, {"fade": (0.25, 1.0), "noise": 6.0, "jpeg": 80}),
    }
    print("| raster page set (ecgcore.plot, 3x4+II unless said) | pages | mean SNR (dB) |")
    print("|---|---|---|")
    times = []
    named = []
    for cname, (pkw, dkw) in conds.items():
        vals = []
        for k, (rname, rec) in enumerate(recs):
            pkw2 = dict(pkw)
            layout = pkw2.pop("layout", "3x4+II")
            path = os.path.join(tmp, f"r{k}.png")
            res = ecgcore.plot(rec, path, layout=layout, **pkw2)
            ref = res.reference(rec)
            if dkw:
                path = _damage(path, os.path.join(tmp, f"r{k}_d.png"), rng, **dkw)
            t = time.process_time()
            try:
                out = ecgcore.digitize(path, fs=rec.fs)
            except ecgcore.DigitizeError as exc:
                print(f"  {cname} {rname}: DigitizeError {exc.reason}")
                vals.append(0.0)
                continue
            dt = time.process_time() - t
            if cname in ("clean 200 dpi", "clean 200 dpi, 3x4 (no strip)"):   # 3x4 pages
                times.append(dt)
            vals.append(_snr_vs(ref, out))
            want = [r.lead for r in res.panels if r.rhythm]
            if want and (layout != "3x4+II" or want != ["II"]):
                named.append((cname, rname, out.meta["layout"], want,
                              out.meta["digitize_flags"].get("rhythm_leads")))
        per = ", ".join(f"{v:.1f}" for v in vals)
        print(f"| {cname} | {len(vals)} | {np.mean(vals):.1f} ({per}) |")
    if named:
        ok = sum(lay == {3: "3x4+3", 2: "3x4+2"}.get(len(w), "3x4+II") and w == got
                 for _, _, lay, w, got in named)
        print(f"\nlayout and rhythm strips named right on {ok} of {len(named)} pages with "
              "other strips than lead II")
        for c, r, lay, w, got in named:
            if got != w:
                print(f"  {c} {r}: layout {lay}, strips {got} (drawn {w})")
    kit = os.path.join(SHARED, "data", "ecg_pages")
    if os.path.isdir(kit):
        print("\n| ecg-image-kit profile (shared/data/ecg_pages) | pages | mean SNR (dB) | min |")
        print("|---|---|---|---|")
        import glob
        strip_ii = []
        for prof in ("clean", "scan", "lowres", "notes", "wrinkles", "rotnoise", "combo"):
            vals = []
            for png in sorted(glob.glob(os.path.join(kit, prof, "*.png"))):
                rec = os.path.basename(png)[:-6]
                z = np.load(os.path.join(kit, "ground_truth", prof, rec + ".npz"))
                ref = z["signal"].T.astype(float)
                fs = float(z["fs"])
                t = time.process_time()
                try:
                    out = ecgcore.digitize(png, fs=fs)
                except ecgcore.DigitizeError:
                    vals.append(0.0)
                    continue
                if prof == "clean":
                    times.append(time.process_time() - t)
                strip_ii.append(out.meta["digitize_flags"].get("rhythm_leads") == ["II"])
                est = np.full(ref.shape, np.nan)
                for j, name in enumerate(str(n) for n in z["leads"]):
                    e = out.signal[out.leads.index(name)].astype(float)
                    m = min(len(e), ref.shape[1])
                    est[j, :m] = e[:m]
                vals.append(float(np.nanmean(challenge_snr(ref, est, fs))))
            print(f"| {prof} | {len(vals)} | {np.mean(vals):.1f} | {np.min(vals):.1f} |")
        print(f"\nkit pages whose rhythm strip was named II from the panels: {sum(strip_ii)} of "
              f"{len(strip_ii)} read")
    times = np.array(times)
    print(f"\nraster speed at 200 dpi (CPU time, one process, first call excluded): median "
          f"{1000 * np.median(times[1:]):.0f} ms/page = {1 / np.median(times[1:]):.2f} pages/s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--raster", action="store_true", help="only the raster pages")
    a = ap.parse_args()
    if a.raster:
        with tempfile.TemporaryDirectory() as tmp:
            raster(tmp)
        return
    vector(a.n)


if __name__ == "__main__":
    main()
