"""Digitisation accuracy (Challenge 2024 SNR) and speed.

    python benchmarks/bench_digitize.py [--n 5]

Vector PDFs: pages rendered by ecgcore.plot (all layouts, path simplification
off so the page holds the exact samples) and the two sample PDFs on the shelf.
Raster pages are not benchmarked: the raster pipeline is not written yet.
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3)
    a = ap.parse_args()
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
