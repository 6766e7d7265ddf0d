"""Side-by-side timing of ecgcore.signal against scipy on 12-lead, 10 s, 500 Hz records.

One core: run it as ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 taskset -c 0 python
benchmarks/bench_signal.py`` (the kernels are single-threaded anyway). Times are CPU
time per record (``time.process_time``), the best of a few repeats, so other load on
a shared machine inflates them less than wall time would. Prints records/s and ratios.

Chain: band-pass 0.5-40 Hz (Butterworth order 4, zero-phase) + 50 Hz notch (Q 30,
filtfilt) + resample to 250 Hz (resample_poly) + per-lead z-score + 5 s windows.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.signal as ss

import ecgcore.signal as S

FS = 500.0
STEPS = [("bandpass", {"low": 0.5, "high": 40.0}), ("notch", {"freq": 50.0}),
         ("resample", {"fs_out": 250.0}), ("zscore", {"scope": "lead"}), ("segment", {"length_s": 5.0})]
SOS = ss.butter(4, [0.5, 40.0], "bandpass", fs=FS, output="sos")
NB, NA = ss.iirnotch(50.0, 30.0, fs=FS)


def scipy_chain(x):
    y = ss.sosfiltfilt(SOS, x, axis=-1)
    y = ss.filtfilt(NB, NA, y, axis=-1)
    y = ss.resample_poly(y, 1, 2, axis=-1)
    y = (y - y.mean(-1, keepdims=True)) / y.std(-1, keepdims=True)
    n = y.shape[-1] // 1250
    y = y[..., :n * 1250].reshape(y.shape[:-1] + (n, 1250))
    return np.ascontiguousarray(np.moveaxis(y, -2, -3)).astype(np.float32)


def per_record(fn, batch, repeats):
    """Best CPU seconds per record over `repeats` runs of fn(batch)."""
    best = np.inf
    for _ in range(repeats):
        t = time.process_time()
        fn(batch)
        best = min(best, time.process_time() - t)
    return best / len(batch) if batch.ndim == 3 else best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    t = np.arange(5000) / FS
    batch = (np.cumsum(rng.standard_normal((args.records, 12, 5000)), axis=-1) * 0.01
             + np.exp(-((t % 0.8) - 0.4) ** 2 / 2e-4) + 0.05 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)
    one = batch[:1]
    rows = []

    def row(name, ours, ref):
        rows.append((name, ours, ref))
        ratio = ref / ours if ref else float("nan")
        print(f"{name:<46s} ecgcore {1 / ours:10.0f} rec/s   reference {1 / ref if ref else float('nan'):9.0f} rec/s"
              f"   x{ratio:6.1f}", flush=True)

    copy = per_record(lambda b: [r.copy() for r in b], batch, args.repeats * 3)
    print(f"plain float32 copy of a record: {1 / copy:.0f} rec/s")
    sc = per_record(lambda b: [scipy_chain(r) for r in b[:16]], batch[:16], args.repeats)
    ours_rec = per_record(lambda b: [S.chain(r, FS, STEPS) for r in b], batch, args.repeats)
    ours_batch = per_record(lambda b: S.chain(b, FS, STEPS), batch, args.repeats)
    row("chain, one record per call", ours_rec, sc)
    row(f"chain, batch of {args.records} records per call", ours_batch, sc)
    print(f"  chain vs plain copy: {ours_rec / copy:.1f}x (per record call), {ours_batch / copy:.1f}x (batch) "
          f"the time of a float32 copy")
    kern = [
        ("bandpass 0.5-40 (sosfiltfilt)", lambda b: S.bandpass(b, FS, 0.5, 40), lambda b: ss.sosfiltfilt(SOS, b)),
        ("notch 50 Hz (filtfilt)", lambda b: S.notch(b, FS), lambda b: ss.filtfilt(NB, NA, b)),
        ("resample 500->250 poly", lambda b: S.resample(b, FS, 250), lambda b: ss.resample_poly(b, 1, 2, axis=-1)),
        ("resample 400->500 linear (interp1d)", lambda b: S.resample(b, 400, 500, method="linear"),
         lambda b: __import__("scipy.interpolate").interpolate.interp1d(
             np.linspace(0, 6249, 5000), b, axis=-1)(np.arange(6250))),
        ("median baseline 0.4 s (medfilt k=201)", lambda b: S.median_baseline(b, FS, 0.4),
         lambda b: np.stack([r - ss.medfilt(r, 201) for r in b])),
        ("running median k=31 (branch-free sweep)", lambda b: S.running_median(b, 31),
         lambda b: np.stack([ss.medfilt(r, 31) for r in b])),
        ("running median k=501 (block sort)", lambda b: S.running_median(b, 501),
         lambda b: np.stack([ss.medfilt(r, 501) for r in b])),
        ("zscore per lead", lambda b: S.zscore(b),
         lambda b: (b - b.mean(-1, keepdims=True)) / b.std(-1, keepdims=True)),
    ]
    for name, ours, ref in kern:
        o = per_record(lambda b: [ours(r) for r in b], batch[:16], args.repeats)
        r = per_record(lambda b: [ref(x) for x in b], batch[:4], args.repeats)
        row(name + " [per record]", o, r)
    return rows


if __name__ == "__main__":
    main()
