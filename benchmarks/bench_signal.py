"""Side-by-side timing of ecgcore.signal against scipy on 12-lead, 10 s, 500 Hz records.

One core: run it as ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 taskset -c 0 python
benchmarks/bench_signal.py`` (the kernels are single-threaded anyway). Times are CPU
time per record (``time.process_time``), the best of a few repeats, so other load on
a shared machine inflates them less than wall time would. Prints records/s and ratios.

Chain: band-pass 0.5-40 Hz (Butterworth order 4, zero-phase) + 50 Hz notch (Q 30,
filtfilt) + resample to 250 Hz (resample_poly) + per-lead z-score + 5 s windows.

ECGFounder: the ``ecgfounder`` preset (``ecgcore.preprocess_batch``) against its scipy
reference in two forms: as published (``util.filter_bandpass`` + ``dataset.py``, facts/
ecgfounder_ccta.md section 1.4: per-channel loops of ``filtfilt`` (notch, then the 8th-order
(b, a) band-pass) and ``medfilt``, then the whole-array z-score, on float64 as
``wfdb.rdsamp`` returns it) and the same steps vectorised over the leads.

Chain kernel A/B (``--ab-old OLD.so``): this build's chain kernel against an older build of
``ecgcore/_kernels/chain*.so`` loaded in the same process, alternating.

Running-median A/B: the automatic kernel choice against the kernel it replaced, in the
same process, alternating (``running_median(x, k, False, method)``: 0 automatic, 1 the
register window, 3 the scalar block sort).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.signal as ss

import ecgcore.signal as S
# the ECGFounder scipy references, published and vectorised (benchmarks/ is on sys.path
# when a benchmark runs as a script)
from bench_pipeline import scipy_ecgfounder_published as ecgfounder_published  # noqa: E402
from bench_pipeline import scipy_ecgfounder_vectorised as ecgfounder_vectorised  # noqa: E402

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


def median_ab(x, ks=(201, 255, 301, 401, 511), rounds=5, repeats=3):
    """CPU seconds per record of running_median per method, best of alternating rounds."""
    from ecgcore._kernels import medfilt as mf
    out = {}
    for k in ks:
        old = 1 if k < 301 else 3  # the automatic choice before the zmm block sort
        best = {0: np.inf, old: np.inf}
        for _ in range(rounds):
            for m in best:
                for _ in range(repeats):
                    t = time.process_time()
                    mf.running_median(x, k, False, m)
                    best[m] = min(best[m], time.process_time() - t)
        out[k] = (best[0], best[old], old)
    return out


def chain_kernel_ab(batch, old_so, rounds=9):
    """Chain kernel of this build against another build's ``chain`` extension, in one process.

    ``old_so``: path of an older ``ecgcore/_kernels/chain*.so`` (e.g. built from ``git archive
    HEAD``). Both run the same plan (band-pass + notch + resample 500 -> 250, float32 rows,
    float64 state), alternating, best of ``rounds``; prints CPU us per record and the ratio.
    """
    import importlib
    import importlib.util
    from ecgcore._kernels import chain as new
    spec = importlib.util.spec_from_file_location("chain", old_so)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    F = importlib.import_module("ecgcore.signal.filters")
    R = importlib.import_module("ecgcore.signal.resample")
    stages = [F.butter_stage(FS, "bandpass", (0.5, 40.0)), F.notch_stage(FS, 50.0, 30.0)]
    plan = R.resample_plan(batch.shape[-1], FS, 250.0, "poly", batch.dtype)
    rows = batch.reshape(-1, batch.shape[-1])
    err = float(np.abs(new.run(rows, stages, plan, True) - old.run(rows, stages, plan, True)).max())
    cases = [("chain kernel, batch", lambda k: k.run(rows, stages, plan, True)),
             ("chain kernel, one record per call", lambda k: [k.run(r, stages, plan, True) for r in batch])]
    for name, fn in cases:
        best = {"old": np.inf, "new": np.inf}
        for _ in range(rounds):
            for lab, k in (("old", old), ("new", new)):
                t = time.process_time()
                fn(k)
                best[lab] = min(best[lab], time.process_time() - t)
        n = len(batch)
        print(f"A/B {name:<34s} old {best['old'] / n * 1e6:7.1f} us/record, this build "
              f"{best['new'] / n * 1e6:7.1f} us/record, x{best['old'] / best['new']:.2f} "
              f"(max |new - old| {err:.2e})", flush=True)


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
    ap.add_argument("--ab-old", default=None, metavar="SO",
                    help="also time the chain kernel against this older chain*.so, alternating")
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
    if args.ab_old:
        chain_kernel_ab(batch, args.ab_old)
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

    from ecgcore import presets
    x64 = batch[:4].astype(np.float64)  # wfdb.rdsamp gives float64
    pub = per_record(lambda b: [ecgfounder_published(r) for r in b], x64, args.repeats)
    vec = per_record(lambda b: [ecgfounder_vectorised(r) for r in b], x64, args.repeats)
    ef_batch = per_record(lambda b: presets.preprocess_batch(b, FS, "ecgfounder"), batch, args.repeats)
    # one record per call: more records and repeats than the batch rows, since each call is short
    # and the VM's noise would otherwise decide the row
    ef_rec = per_record(lambda b: [presets.preprocess_batch(r[None], FS, "ecgfounder") for r in b],
                        batch[:32], args.repeats * 3)
    err = max(float(np.abs(presets.preprocess_batch(batch[i:i + 1], FS, "ecgfounder")[0, 0]
                           - ecgfounder_published(x64[i])).max()) for i in range(4))
    # before/after in one run: the same preset with the median kernel the automatic
    # choice used before the zmm block sort (the register window, method 1, at k = 201)
    from ecgcore._kernels import medfilt as mf
    auto = mf.running_median
    mf.running_median = lambda x, k, subtract=False, method=0, exact=False: auto(
        x, k, subtract, method or (1 if k < 301 else 3), exact)
    try:
        ef_old = per_record(lambda b: presets.preprocess_batch(b, FS, "ecgfounder"), batch, args.repeats)
    finally:
        mf.running_median = auto
    ef_batch = min(ef_batch, per_record(lambda b: presets.preprocess_batch(b, FS, "ecgfounder"), batch, args.repeats))
    row("ecgfounder preset, batch vs published ref", ef_batch, pub)
    row("ecgfounder preset, batch vs vectorised ref", ef_batch, vec)
    row("ecgfounder preset, one record per call", ef_rec, pub)
    row("ecgfounder preset, batch, previous median kernel", ef_old, pub)
    print(f"  ecgfounder preset: this kernel vs the previous one in the same run: x{ef_old / ef_batch:.2f}")
    print(f"  ecgfounder preset: max |ours - published| = {err:.2e} (z-scored units); "
          f"{ef_batch / copy:.1f}x the time of a float32 copy")
    for k, (new, old, m) in median_ab(one[0]).items():
        print(f"running median k={k} float32, 12 x 5000: automatic {new / 60000 * 1e9:5.1f} ns/sample, "
              f"previous kernel (method {m}) {old / 60000 * 1e9:5.1f} ns/sample, x{old / new:4.2f}",
              flush=True)
    return rows


if __name__ == "__main__":
    main()
