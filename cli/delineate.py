"""``ecgcore delineate INPUT... --out marks.csv|parquet``: P/QRS/T marks of many ECGs.

One row per (record, beat, lead), lead ``global`` first: the nine marks as sample
indices (-1 = absent), the beat class and quality, and the record's flags.
Records run in parallel worker processes (``--workers``); failures go to
``errors.jsonl`` next to the output and do not stop the batch; ``--resume``
skips inputs already in the output. Exit 0 all ok, 1 some inputs failed, 2 usage.
"""

from __future__ import annotations

import json
import os
import sys

from ._common import expand_inputs


def add_parser(sub):
    p = sub.add_parser("delineate", help="P/QRS/T marks of many ECGs", description=__doc__)
    _common_args(p, "marks.csv")
    return p


def _common_args(p, example):
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories or globs")
    p.add_argument("--out", required=True, help=f"output table (.csv or .parquet), e.g. {example}")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--resume", action="store_true", help="skip inputs already in the output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _delineate_one(path):
    """Worker: read and delineate one file -> (path, list of row dicts | None, error | None)."""
    try:
        import ecgcore
        from ecgcore.delineation import delineate
        rec = ecgcore.read(path)
        d = delineate(rec)
        df = d.to_frame()
        df.insert(0, "source", path)
        df["fs"] = rec.fs
        df["no_atrial_activity"] = bool(d.flags.get("no_atrial_activity", False))
        df["flags"] = json.dumps({k: v for k, v in d.flags.items()}, default=str)
        return path, df.to_dict("records"), None
    except Exception as exc:  # noqa: BLE001 - a batch never stops for one bad file
        return path, None, f"{type(exc).__name__}: {exc}"


def run_batch(args, worker, name) -> int:
    """Shared driver of ``delineate`` and ``measure``: pool, progress, errors.jsonl, resume."""
    import pandas as pd
    out = args.out
    ext = os.path.splitext(out)[1].lower()
    if ext not in (".csv", ".parquet"):
        print(f"ecgcore {name}: --out must end in .csv or .parquet, got {out!r}", file=sys.stderr)
        return 2
    if ext == ".parquet":
        import importlib.util
        if not any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet")):
            print(f"ecgcore {name}: writing parquet needs pyarrow (pip install pyarrow); "
                  f"use a .csv output instead", file=sys.stderr)
            return 2
    paths = expand_inputs(args.inputs)
    if not paths:
        print(f"ecgcore {name}: no input files", file=sys.stderr)
        return 2
    done = set()
    old = None
    if args.resume and os.path.exists(out):
        old = pd.read_csv(out) if ext == ".csv" else pd.read_parquet(out)
        if "source" in old.columns:
            done = set(old["source"].astype(str))
    elif os.path.exists(out):
        os.remove(out)
    todo = [p for p in paths if p not in done]
    err_path = os.path.join(os.path.dirname(os.path.abspath(out)), "errors.jsonl")
    errors = []
    frames = []
    csv_header = not (ext == ".csv" and os.path.exists(out))
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is optional
        tqdm = None
    bar = tqdm(total=len(todo), desc=f"ecgcore {name}", unit="rec", file=sys.stderr,
               disable=args.no_progress) if tqdm else None

    def consume(results):
        nonlocal csv_header
        for path, rows, err in results:
            if err is not None:
                errors.append({"path": path, "error": err})
                print(f"ecgcore {name}: {path}: {err}", file=sys.stderr)
            elif rows:
                df = pd.DataFrame(rows)
                if ext == ".csv":  # stream, so an interrupted run can --resume
                    df.to_csv(out, mode="a", header=csv_header, index=False)
                    csv_header = False
                else:
                    frames.append(df)
            if bar is not None:
                bar.update(1)

    if args.workers and args.workers > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor
        from ecgcore.delineation.waves import warm_kernels
        warm_kernels()  # compiled once here; the forked workers inherit the kernels
        with ProcessPoolExecutor(args.workers) as ex:
            consume(ex.map(worker, todo, chunksize=max(1, min(16, len(todo) // (4 * args.workers)))))
    else:
        consume(map(worker, todo))
    if bar is not None:
        bar.close()
    if ext == ".parquet":
        parts = ([old] if old is not None else []) + frames
        if parts:
            pd.concat(parts, ignore_index=True).to_parquet(out, index=False)
    with open(err_path, "a" if args.resume else "w") as f:
        for e in errors:
            f.write(json.dumps(e) + "\n")
    print(f"ecgcore {name}: {len(todo) - len(errors)} ok, {len(errors)} failed, "
          f"{len(paths) - len(todo)} skipped (resume) -> {out}"
          + (f" (errors in {err_path})" if errors else ""), file=sys.stderr)
    return 1 if errors else 0


def run(args) -> int:
    return run_batch(args, _delineate_one, "delineate")
