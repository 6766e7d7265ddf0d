"""Side-by-side: ecgcore vs the wfdb package reading 12-lead 10 s 500 Hz WFDB records.

Writes N records in format 16 and N in format 212 (realistic ECG-like
signals: a sum of Gaussian P/QRS/T waves per beat with per-lead amplitudes,
baseline wander and noise, seeded) to a temporary directory with
``wfdb.wrsamp``, then times ``ecgcore.io.wfdb.read`` and ``wfdb.rdrecord``
on the same files in one process and prints records/s and the ratio.

Usage::

    python benchmarks/bench_read.py [--n 300] [--repeat 3]

Each timing is the best of ``--repeat`` passes over all files, in CPU time
of this process (``time.process_time``): records/s per core, and on a
machine shared with other jobs a fairer clock than the wall (which also
counts the time other processes hold the core). Wall-clock rates are
printed beside them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def ecg_like(rng, n_leads=12, fs=500, duration=10.0):
    """A (n_samples, n_leads) mV array: Gaussian P/QRS/T beats, wander and noise."""
    n = int(fs * duration)
    t = np.arange(n) / fs
    hr = rng.uniform(50, 100)
    beats = np.arange(rng.uniform(0, 0.5), duration, 60.0 / hr)
    amp = rng.normal(1.0, 0.4, (n_leads, 3)) * np.array([0.15, 1.2, 0.3])
    sig = np.zeros((n_leads, n))
    for b in beats:
        for k, (dt, w) in enumerate(((-0.2, 0.025), (0.0, 0.01), (0.3, 0.04))):
            sig += amp[:, k:k + 1] * np.exp(-0.5 * ((t - b - dt) / w) ** 2)[None, :]
    sig += 0.1 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 6))[None, :]
    sig += rng.normal(0, 0.01, sig.shape)
    return sig.T


def make_records(root, n, fmt, seed=0):
    import wfdb
    rng = np.random.default_rng(seed)
    names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    paths = []
    base = ecg_like(rng)
    for i in range(n):
        # cheap variation per record: reuse one simulated beat train, shifted and rescaled
        sig = np.roll(base, int(rng.integers(0, 500)), axis=0) * rng.uniform(0.7, 1.3)
        name = f"r{fmt}_{i:05d}"
        gain = 1000.0 if fmt == 16 else 200.0
        wfdb.wrsamp(name, fs=500, units=["mV"] * 12, sig_name=names, p_signal=sig,
                    fmt=[str(fmt)] * 12, adc_gain=[gain] * 12, baseline=[0] * 12,
                    write_dir=root)
        paths.append(os.path.join(root, name))
    return paths


def time_reader(fn, paths, repeat):
    """(records/s in CPU time, records/s in wall time), best pass of each."""
    best_cpu = best_wall = float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        for p in paths:
            fn(p)
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - t0)
    return len(paths) / best_cpu, len(paths) / best_wall


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    import wfdb
    import ecgcore

    print(f"ecgcore vs wfdb {wfdb.__version__}: {args.n} records x 12 leads x 5000 samples, "
          f"best of {args.repeat}; load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as root:
        for fmt in (16, 212):
            paths = make_records(root, args.n, fmt)
            heas = [p + ".hea" for p in paths]
            # check equality on every file, so the timing compares like with like: the
            # float32 rounding of wfdb's float64 values, bit for bit
            for p, h in zip(paths, heas):
                a = ecgcore.read(h).signal
                b = wfdb.rdrecord(p).p_signal.T.astype(np.float32)
                assert np.array_equal(a, b, equal_nan=True), "readers disagree"
            ours, ours_w = time_reader(ecgcore.read, heas, args.repeat)
            theirs, theirs_w = time_reader(wfdb.rdrecord, paths, args.repeat)
            print(f"format {fmt:>3}: ecgcore.read {ours:8.0f} rec/s/core ({1e6 / ours:5.0f} us)  "
                  f"wfdb.rdrecord {theirs:6.0f} rec/s/core ({1e6 / theirs:5.0f} us)  "
                  f"ratio {ours / theirs:5.1f}x CPU time, {ours_w / theirs_w:5.1f}x wall")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
