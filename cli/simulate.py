"""``ecgcore simulate --n N --out DIR``: write simulated 12-lead records (WFDB or NPY)."""

from __future__ import annotations

import json
import os

import ecgcore
from ecgcore._atomic import atomic_open
from ecgcore.synthetic import NOISE_LEVELS, RHYTHMS, iter_simulate


def add_parser(sub):
    p = sub.add_parser("simulate", help="write simulated 12-lead records with true fiducials",
                       description=__doc__)
    p.add_argument("--n", type=int, default=10, help="number of records (default 10)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--fs", type=float, default=500.0)
    p.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument("--rhythm", choices=RHYTHMS, default="mixed")
    p.add_argument("--noise", choices=sorted(NOISE_LEVELS), default="mild")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--to", choices=("wfdb", "npy"), default="wfdb")
    return p


def write_simulated(records, out: str, to: str = "wfdb", progress: bool = True,
                    total: int | None = None) -> list[str]:
    """Write records (any iterable, e.g. :func:`ecgcore.synthetic.iter_simulate`, so that
    memory holds one record) as ``sim_00000`` ... plus a ``fiducials.jsonl`` with the
    true marks, which appears when the last record is written."""
    os.makedirs(out, exist_ok=True)
    paths = []
    it = records
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(records, desc="writing", unit="rec", total=total)
    with atomic_open(os.path.join(out, "fiducials.jsonl"), "w") as f:
        for i, rec in enumerate(it):
            stem = os.path.join(out, f"sim_{i:05d}")
            if to == "wfdb":
                ecgcore.write(rec, stem, format="wfdb")
                paths.append(stem + ".hea")
            else:
                ecgcore.write(rec, stem + ".npy", format="npy")
                paths.append(stem + ".npy")
            f.write(json.dumps({"record": os.path.basename(stem), "rhythm": rec.meta["rhythm"],
                                "fs": rec.fs, **{k: v.tolist() for k, v in
                                                 rec.meta["fiducials"].items()}}) + "\n")
    return paths


def _stale_records(out: str, n: int, to: str) -> list[str]:
    """``sim_NNNNN`` files in ``out`` that writing ``n`` records as ``to`` would leave as they are."""
    import re
    if not os.path.isdir(out):
        return []
    keep = {"wfdb": (".hea", ".dat"), "npy": (".npy", ".npy.json")}[to]
    mine = {f"sim_{i:05d}{ext}" for i in range(n) for ext in keep}
    pat = re.compile(r"sim_\d{5}\.(hea|dat|npy|npy\.json)")
    return sorted(os.path.join(out, f) for f in os.listdir(out) if pat.fullmatch(f) and f not in mine)


# Shortest record offered: at the slowest simulated heart rate (50 bpm) a shorter one may hold
# no whole beat, and the simulator has nothing to place.
MIN_DURATION_S = 2.0


def run(args) -> int:
    import math
    import sys
    bad = None
    if args.n < 1:
        bad = f"--n must be at least 1, got {args.n}"
    elif not (math.isfinite(args.fs) and args.fs > 0):
        bad = f"--fs must be a positive sampling rate in Hz, got {args.fs:g}"
    elif not (math.isfinite(args.duration) and args.duration >= MIN_DURATION_S):
        bad = f"--duration must be at least {MIN_DURATION_S:g} s, got {args.duration:g}"
    elif args.seed < 0:
        bad = f"--seed must be >= 0, got {args.seed}"
    elif os.path.exists(args.out) and not os.path.isdir(args.out):
        bad = f"--out {args.out}: exists and is not a directory"
    stale = _stale_records(args.out, args.n, args.to) if not bad else []
    if stale:
        # fiducials.jsonl describes only this run's records: an older run's extra records left
        # beside them would be read as simulated records without true marks
        bad = (f"--out {args.out} holds {len(stale)} file(s) of an earlier simulation that this run "
               f"would not overwrite (e.g. {os.path.basename(stale[0])}); remove them or choose "
               f"another folder")
    if bad:
        print(f"ecgcore simulate: {bad}", file=sys.stderr)
        return 2
    try:
        # one record at a time: --n 100000 would not fit in memory as a list
        recs = iter_simulate(args.n, fs=args.fs, duration=args.duration, seed=args.seed,
                             rhythm=args.rhythm, noise=args.noise)
    except ecgcore.ECGError as exc:
        print(f"ecgcore simulate: {exc}", file=sys.stderr)
        return 2
    try:
        paths = write_simulated(recs, args.out, args.to, total=args.n)
    except OSError as exc:
        print(f"ecgcore simulate: cannot write {exc.filename or args.out}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    except ecgcore.ECGError as exc:   # raised while a record is generated or written
        print(f"ecgcore simulate: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(paths)} records to {args.out}")
    return 0
