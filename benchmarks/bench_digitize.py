"""Digitisation accuracy (Challenge 2024 SNR) and speed.

    python benchmarks/bench_digitize.py [--n 5]

Vector PDFs: pages rendered by ecgcore.plot (all layouts, path simplification
off so the page holds the exact samples) and the two sample PDFs on the shelf.
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
            ref = rec.conform().signal.astype(float)
            drawn = np.zeros(ref.shape, bool)
            for p in res.panels:
                drawn[ecgcore.STANDARD_12.index(p.lead), p.samples] = True
            ref[~drawn] = np.nan
            rows.append((layout, path, ref))
    return rows


def _damage(src, dst, rng, angle=0.0, blur=0.0, noise=0.0, jpeg=None, shade=0.0):
    from PIL import Image, ImageFilter

    im = Image.open(src).convert("RGB")
    if angle:
        im = im.rotate(angle, resample=Image.BILINEAR, fillcolor=(255, 255, 255))
    if blur:
        im = im.filter(ImageFilter.GaussianBlur(blur))
    a = np.asarray(im).astype(np.float32)
    if shade:
        h, w = a.shape[:2]
        a *= (1 - shade * np.linspace(0, 1, w)[None, :] * np.linspace(0.3, 1, h)[:, None])[..., None]
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
        "clean 200 dpi, 50 mm/s 20 mm/mV": ({"speed": 50, "gain": 20}, {}),
        "grey grid (B/W)": ({"grid_color": "grey"}, {}),
        "100 dpi": ({"dpi": 100}, {}),
        "rotated 4 deg": ({}, {"angle": 4.0}),
        "blur 0.8 + noise 8 + JPEG 70": ({}, {"blur": 0.8, "noise": 8.0, "jpeg": 70}),
        "scanner shading + rotation -2 deg": ({}, {"shade": 0.35, "angle": -2.0}),
        "grey grid + blur + noise + JPEG + rotation 3 deg": (
            {"grid_color": "grey"}, {"blur": 0.7, "noise": 6.0, "jpeg": 75, "angle": 3.0}),
    }
    print("| raster page set (ecgcore.plot, 3x4+II unless said) | pages | mean SNR (dB) |")
    print("|---|---|---|")
    times = []
    for cname, (pkw, dkw) in conds.items():
        vals = []
        for k, (rname, rec) in enumerate(recs):
            pkw2 = dict(pkw)
            layout = pkw2.pop("layout", "3x4+II")
            path = os.path.join(tmp, f"r{k}.png")
            res = ecgcore.plot(rec, path, layout=layout, **pkw2)
            ref = rec.signal.astype(float).copy()
            drawn = np.zeros(ref.shape, bool)
            for p in res.panels:
                drawn[ecgcore.STANDARD_12.index(p.lead), p.samples] = True
            ref[~drawn] = np.nan
            if dkw:
                path = _damage(path, os.path.join(tmp, f"r{k}_d.png"), rng, **dkw)
            t = time.perf_counter()
            try:
                out = ecgcore.digitize(path, fs=rec.fs)
            except ecgcore.DigitizeError as exc:
                print(f"  {cname} {rname}: DigitizeError {exc.reason}")
                vals.append(0.0)
                continue
            dt = time.perf_counter() - t
            if cname.startswith("clean 200 dpi") and "50" not in cname:
                times.append(dt)
            vals.append(_snr_vs(ref, out))
        print(f"| {cname} | {len(vals)} | {np.mean(vals):.1f} ({', '.join(f'{v:.1f}' for v in vals)}) |")
    kit = os.path.join(SHARED, "data", "ecg_pages")
    if os.path.isdir(kit):
        print("\n| ecg-image-kit profile (shared/data/ecg_pages) | pages | mean SNR (dB) | min |")
        print("|---|---|---|---|")
        import glob
        for prof in ("clean", "scan", "lowres", "notes", "wrinkles", "rotnoise", "combo"):
            vals = []
            for png in sorted(glob.glob(os.path.join(kit, prof, "*.png"))):
                rec = os.path.basename(png)[:-6]
                z = np.load(os.path.join(kit, "ground_truth", prof, rec + ".npz"))
                ref = z["signal"].T.astype(float)
                fs = float(z["fs"])
                t = time.perf_counter()
                try:
                    out = ecgcore.digitize(png, fs=fs)
                except ecgcore.DigitizeError:
                    vals.append(0.0)
                    continue
                if prof == "clean":
                    times.append(time.perf_counter() - t)
                est = np.full(ref.shape, np.nan)
                for j, name in enumerate(str(n) for n in z["leads"]):
                    e = out.signal[out.leads.index(name)].astype(float)
                    m = min(len(e), ref.shape[1])
                    est[j, :m] = e[:m]
                vals.append(float(np.nanmean(challenge_snr(ref, est, fs))))
            print(f"| {prof} | {len(vals)} | {np.mean(vals):.1f} | {np.min(vals):.1f} |")
    times = np.array(times)
    print(f"\nraster speed at 200 dpi (one process, first call excluded): median "
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
    with tempfile.TemporaryDirectory() as tmp:
        pages = rendered(a.n, tmp)
        by = {}
        t_total, n_total = 0.0, 0
        for layout, path, ref in pages:
            t = time.perf_counter()
            out = ecgcore.digitize(path, fs=500)
            t_total += time.perf_counter() - t
            n_total += 1
            est = out.conform(ecgcore.STANDARD_12, derive=False, missing="nan").signal
            snr = challenge_snr(ref, est[:, :ref.shape[1]].astype(float), 500)
            by.setdefault(layout, []).append(np.nanmean(snr))
        print("| page set | pages | mean SNR (dB, 2024 metric) |")
        print("|---|---|---|")
        for layout, v in by.items():
            print(f"| ecgcore.plot vector PDF {layout} | {len(v)} | {np.mean(v):.1f} |")
        print(f"\nvector PDF speed (rendered pages): {n_total / t_total:.1f} pages/s "
              f"({1000 * t_total / n_total:.0f} ms/page, one process)")
    pdf = os.path.join(SHARED, "data", "pdf")
    if os.path.isdir(pdf):
        for name in ("dicomecgplot_anonymous_ecg_3x4_1.pdf", "cardiosoft_testmann.pdf"):
            path = os.path.join(pdf, name)
            ecgcore.digitize(path)
            t = time.perf_counter()
            for _ in range(5):
                out = ecgcore.digitize(path, fs=1000)
            dt = (time.perf_counter() - t) / 5
            line = f"{name}: {1000 * dt:.0f} ms/PDF"
            if name.startswith("dicom"):
                ref = ecgcore.read(os.path.join(SHARED, "data", "dicom", "pydicom_waveform_ecg.dcm"))
                r = ref.conform().signal.astype(float)
                e = out.conform(ecgcore.STANDARD_12, derive=False, missing="nan").signal
                E = np.full(r.shape, np.nan)
                E[:, :e.shape[1]] = e[:, :r.shape[1]]
                r[np.isnan(E)] = np.nan
                line += f", SNR vs DICOM {np.nanmean(challenge_snr(r, E, 1000)):.1f} dB"
            else:
                line += (f", Einthoven residual {1000 * np.nanstd(out['I'] + out['III'] - out['II']):.1f}"
                         f" uV, leads {','.join(out.leads)}")
            print(line)


if __name__ == "__main__":
    main()
