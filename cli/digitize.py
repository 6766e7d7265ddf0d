"""``ecgcore digitize INPUT... --out DIR``: paper ECGs (PDF, images) to WFDB or NPY records.

Each page becomes one record under ``DIR``, named by its path relative to the inputs'
common folder (``scans/2019/p1.png`` -> ``DIR/2019/p1.hea``), so pages of one name in
different folders never overwrite each other. Inside folders only PDFs and images
are taken. A page that fails is named on stderr and in ``DIR/errors.jsonl`` and the
batch goes on; outputs are written atomically, so ``--resume`` after a kill skips
the pages whose record is already there.

``DIR/pages.csv`` says how each page was read, one row per page in input order:
the record written, vector or raster, layout, paper speed and gain, the leads'
mean and lowest confidence, the limb leads' residual against Einthoven's law
and the assumptions the reader made (``digitize_flags``), so that pages to check
by eye can be picked by filtering a table.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor

from ecgcore._atomic import atomic_open
from ecgcore.digitization import LAYOUTS
from ecgcore.record import STANDARD_12

from ._common import expand_inputs, output_names, report_failure

_PAGE_KINDS = {"pdf", "image"}


def add_parser(sub):
    p = sub.add_parser("digitize", help="turn ECG PDFs/images into signals", description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories or globs")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--to", choices=("wfdb", "npy"), default="wfdb")
    p.add_argument("--fs", type=float, default=500.0, help="output sampling rate, Hz")
    p.add_argument("--layout", default="auto", choices=LAYOUTS)
    p.add_argument("--rhythm-leads", metavar="LEADS",
                   help="raster pages: comma-separated leads of the rhythm strips under a 3x4 "
                        "grid (default: named after the panel each strip repeats)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--resume", action="store_true",
                   help="skip pages whose output record already exists (after a killed run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _dest(out: str, record_id: str, fmt: str) -> str:
    return os.path.join(out, *record_id.split("/")) + (".npy" if fmt == "npy" else "")


def _done(dest: str, fmt: str) -> bool:
    # the header (WFDB) or the sidecar (NPY) is moved into place last
    return os.path.exists(dest + (".json" if fmt == "npy" else ".hea"))


def _one(item):
    path, dest, fmt, fs, layout, strips = item
    import ecgcore

    try:
        rec = ecgcore.digitize(path, layout=layout, fs=fs, rhythm_leads=strips)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        ecgcore.write(rec, dest, format=fmt)
        return path, None, _page_row(path, dest, rec)
    except Exception as exc:  # noqa: BLE001 - a batch never stops for one bad page
        return path, exc, None


PAGE_COLUMNS = ("page", "record", "source_kind", "layout", "speed_mm_s", "gain_mm_mv",
                "confidence_mean", "confidence_min", "limb_residual", "flags")


def _page_row(path, dest, rec) -> dict:
    """One ``pages.csv`` row: how the page was read and how sure the reader is."""
    m = rec.meta
    conf = [float(v) for v in (m.get("confidence") or {}).values()]
    return {"page": path, "record": dest, "source_kind": m.get("source_kind"), "layout": m.get("layout"),
            "speed_mm_s": m.get("speed"), "gain_mm_mv": m.get("gain"),
            "confidence_mean": round(sum(conf) / len(conf), 3) if conf else "",
            "confidence_min": round(min(conf), 3) if conf else "",
            "limb_residual": "" if m.get("limb_residual") is None else m["limb_residual"],
            "flags": json.dumps(m.get("digitize_flags") or {}, sort_keys=True)}


def run(args) -> int:
    strips = [t.strip() for t in args.rhythm_leads.split(",") if t.strip()] \
        if args.rhythm_leads else None
    bad = [t for t in strips or () if t not in STANDARD_12]
    if bad:
        print(f"ecgcore digitize: --rhythm-leads names unknown leads {bad}; use the standard "
              f"12 ({', '.join(STANDARD_12)})", file=sys.stderr)
        return 2
    files = expand_inputs(args.inputs, containers=False, kinds=_PAGE_KINDS)
    if not files:
        print("ecgcore digitize: no input files", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    items = [(p, _dest(args.out, name, args.to), args.to, args.fs, args.layout, strips)
             for p, name in zip(files, output_names(files))]
    todo = [it for it in items if not (args.resume and _done(it[1], args.to))]
    n_done = len(items) - len(todo)
    if args.workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            failures, rows = _collect(pool.map(_one, todo), len(todo), args.no_progress)
    else:
        failures, rows = _collect(map(_one, todo), len(todo), args.no_progress)
    _write_pages(os.path.join(args.out, "pages.csv"), [it[0] for it in items], rows, args.resume)
    err_path = os.path.join(args.out, "errors.jsonl")
    if failures:
        with atomic_open(err_path, "w") as f:
            for path, exc in failures:
                f.write(json.dumps({"path": path, "error": type(exc).__name__,
                                    "message": getattr(exc, "reason", None) or str(exc)}) + "\n")
    elif os.path.exists(err_path):
        os.remove(err_path)  # a resumed run that now succeeds leaves no stale failures
    print(f"digitized {len(todo) - len(failures)}/{len(todo)} into {args.out}"
          + (f" ({n_done} already there)" if n_done else ""), file=sys.stderr)
    return 1 if failures else 0


def _collect(results, total, no_progress=False):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        tqdm = None
    bar = (tqdm(total=total, desc="ecgcore digitize", unit="page", file=sys.stderr,
                disable=no_progress, dynamic_ncols=True) if tqdm else None)
    failures, rows = [], {}
    for path, exc, row in results:
        if row is not None:
            rows[path] = row
        if exc is not None:
            failures.append((path, exc))
            if bar is not None:
                bar.clear()
            report_failure(path, exc)
        if bar is not None:
            bar.update(1)
            if failures:
                bar.set_postfix(failed=len(failures), refresh=False)
    if bar is not None:
        bar.close()
    return failures, rows


def _write_pages(path, pages, rows, resume):
    """``pages.csv`` in input order: this run's rows, and on ``--resume`` the earlier rows of
    pages that were not read again (written atomically)."""
    if resume and os.path.exists(path):
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                rows.setdefault(r.get("page"), r)
    with atomic_open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=PAGE_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows[p] for p in pages if p in rows)
