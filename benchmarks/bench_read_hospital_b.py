"""Side-by-side read speed: SCP-ECG and EDF in ecgcore vs the peers, one run.

Peers (each asked for the same thing: every signal in physical units):

* SCP-ECG: ecgdatakit 2.x ``FileParser.parse`` + per-lead sample arrays
  (the only SCP reader that installs from PyPI; facts/formats.md §12).
* EDF: pyedflib ``EdfReader`` + ``readSignal`` (physical) for every signal,
  and ecgdatakit.

Usage::

    python benchmarks/bench_read_hospital_b.py [--repeat 30] [--shared ../shared]

Prints per-file median CPU milliseconds (``time.process_time``: the machine
is shared, and CPU time is what a loaded core charges each reader), records/s
per core and the ratio peer / ecgcore (> 1 means ecgcore is faster). Readers
are timed in interleaved rounds so load spikes hit them alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np


def _time_interleaved(fns, repeat):
    """Median CPU seconds per call of each function, calls interleaved."""
    for fn in fns:
        fn()                               # warm-up (imports, caches, page cache)
    out = [[] for _ in fns]
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t0 = time.process_time()
            fn()
            out[k].append(time.process_time() - t0)
    return [statistics.median(o) for o in out]


def ecgcore_read(path):
    from ecgcore.io import read
    return lambda: read(path)


def ecgdatakit_read(path):
    from ecgdatakit import FileParser

    def run():
        rec = FileParser.parse(path)
        return [np.asarray(ld.samples, dtype=np.float64) for ld in rec.leads]
    return run


def pyedflib_read(path):
    import pyedflib

    def run():
        with pyedflib.EdfReader(path) as f:
            return [f.readSignal(i) for i in range(f.signals_in_file)]
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30)
    here = Path(__file__).resolve().parent.parent
    ap.add_argument("--shared", default=os.environ.get("ECGCORE_SHARED", here.parent / "shared"))
    args = ap.parse_args(argv)
    data = Path(args.shared) / "data"
    cases = [("SCP-ECG", data / "scp_ecg" / "ecgtoolkit_Example.scp",
              [("ecgdatakit", ecgdatakit_read)]),
             ("EDF", data / "edf" / "contec_0000050.ECG.edf",
              [("pyedflib", pyedflib_read), ("ecgdatakit", ecgdatakit_read)])]
    print(f"{'format':8} {'reader':11} {'ms/file':>9} {'rec/s/core':>11} {'peer/ecgcore':>13}")
    for fmt, path, peers in cases:
        if not path.exists():
            print(f"{fmt:8} skipped: {path} absent")
            continue
        names, fns = ["ecgcore"], [ecgcore_read(str(path))]
        for name, make in peers:
            try:
                fn = make(str(path))
                fn()
            except Exception as exc:   # a peer that cannot read the file is reported, not fatal
                print(f"{fmt:8} {name:11} failed: {type(exc).__name__}: {exc}")
                continue
            names.append(name)
            fns.append(fn)
        times = _time_interleaved(fns, args.repeat)
        t_ours = times[0]
        for name, t in zip(names, times):
            print(f"{fmt:8} {name:11} {t * 1e3:9.2f} {1 / t:11.1f} {t / t_ours:13.2f}")

if __name__ == "__main__":
    main()
