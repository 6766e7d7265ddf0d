"""``ecgcore demo``: the main job end to end on simulated records (no download, no path).

Simulates a batch of 12-lead records, writes them as WFDB, reads them back and
describes them (like ``ecgcore info``), then runs every later stage that is
installed: preprocessing into a model-ready dataset, delineation and measurements.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time

import numpy as np

import ecgcore


def add_parser(sub):
    p = sub.add_parser("demo", help="run the main job on simulated records", description=__doc__)
    p.add_argument("--n", type=int, default=200, help="number of simulated records (default 200)")
    p.add_argument("--out", default="ecgcore-demo", metavar="DIR",
                   help="output folder (default ./ecgcore-demo)")
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args) -> int:
    from .simulate import write_simulated
    t0 = time.perf_counter()
    wfdb_dir = os.path.join(args.out, "wfdb")
    print(f"[1] simulating {args.n} 12-lead records (10 s, 500 Hz, mixed rhythms)")
    recs = ecgcore.simulate(args.n, seed=args.seed, rhythm="mixed", noise="mild")
    paths = write_simulated(recs, wfdb_dir, "wfdb")
    print(f"    wrote WFDB records to {wfdb_dir}")

    print("[2] reading them back")
    back = [r for r in ecgcore.read_many(paths) if r]
    worst = max(float(np.max(np.abs(a.signal - b.signal))) for a, b in zip(recs, back))
    flagged = sum(not r.quality.ok for r in back)
    print(f"    read {len(back)}/{len(paths)}; max |written - read| = {worst * 1000:.3f} µV; "
          f"{flagged} with quality flags")
    d = back[0].to_dict()
    print(f"    e.g. {os.path.basename(paths[0])}: {d['fs']:g} Hz, {d['duration_s']:.1f} s, "
          f"leads {' '.join(d['leads'])}")
    if len(back) != len(paths):
        return 1

    if importlib.util.find_spec("ecgcore.pipeline") is not None:
        from ecgcore.cli import main as cli_main
        ds = os.path.join(args.out, "dataset_ecgfm")
        print(f"[3] preprocessing to the ecgfm model input -> {ds}")
        rc = cli_main(["preprocess", wfdb_dir, "--preset", "ecgfm", "--out", ds, "--workers", "1"])
        if rc:
            return rc
    if importlib.util.find_spec("ecgcore.delineation") is not None:
        from ecgcore.cli import main as cli_main
        out_csv = os.path.join(args.out, "measures.csv")
        print(f"[4] delineating and measuring -> {out_csv}")
        rc = cli_main(["measure", wfdb_dir, "--out", out_csv, "--workers", "1"])
        if rc:
            return rc
    png = os.path.join(args.out, "sim_00000.png")
    marks = None
    if importlib.util.find_spec("ecgcore.delineation") is not None:
        marks = ecgcore.delineate(back[0])
    ecgcore.plot(back[0], png, marks=marks,
                 title=f"simulated record 0 ({recs[0].meta['rhythm']}), fiducial marks from "
                       "ecgcore.delineate" if marks is not None else "simulated record 0")
    print(f"[5] the first record on ECG paper -> {png}")
    print(f"done in {time.perf_counter() - t0:.1f} s; outputs in {args.out}", file=sys.stderr)
    return 0
