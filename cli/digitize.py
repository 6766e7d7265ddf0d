"""``ecgcore digitize INPUT... --out DIR``: paper ECGs (PDF, images) to WFDB or NPY records."""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor

from ecgcore._atomic import atomic_open

from ._common import expand_inputs, report_failure


def add_parser(sub):
    p = sub.add_parser("digitize", help="turn ECG PDFs/images into signals", description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories or globs")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--to", choices=("wfdb", "npy"), default="wfdb")
    p.add_argument("--fs", type=float, default=500.0, help="output sampling rate, Hz")
    p.add_argument("--layout", default="auto", choices=("auto", "3x4+II", "3x4", "6x2", "12x1"))
    p.add_argument("--workers", type=int, default=1)
    return p


def _one(item):
    path, out, fmt, fs, layout = item
    import ecgcore

    try:
        rec = ecgcore.digitize(path, layout=layout, fs=fs)
        stem = os.path.splitext(os.path.basename(path))[0]
        dest = os.path.join(out, stem + (".npy" if fmt == "npy" else ""))
        ecgcore.write(rec, dest, format=fmt)
        return path, None
    except ecgcore.ECGError as exc:
        return path, exc


def run(args) -> int:
    files = expand_inputs(args.inputs)
    if not files:
        print("ecgcore digitize: no input files", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    items = [(f, args.out, args.to, args.fs, args.layout) for f in files]
    failures = []
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            results = pool.map(_one, items)
            failures = _collect(results, len(items))
    else:
        failures = _collect(map(_one, items), len(items))
    if failures:
        with atomic_open(os.path.join(args.out, "errors.jsonl"), "w") as f:
            for path, exc in failures:
                f.write(json.dumps({"path": path, "error": type(exc).__name__,
                                    "message": getattr(exc, "reason", str(exc))}) + "\n")
    print(f"digitized {len(items) - len(failures)}/{len(items)} into {args.out}", file=sys.stderr)
    return 1 if failures else 0


def _collect(results, total):
    failures = []
    for i, (path, exc) in enumerate(results, 1):
        if exc is not None:
            failures.append((path, exc))
            report_failure(path, exc)
        if sys.stderr.isatty():
            print(f"\r[{i}/{total}]", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return failures
