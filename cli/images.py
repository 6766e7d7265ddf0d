"""``ecgcore images INPUT... --out DIR``: ECG pages and signal records to an image dataset.

Builds the training dataset of image models (e.g. ``configs/image_ms_lvef.yaml``):
every input becomes one square RGB image, stored as uint8 shards with
``manifest.csv``, ``errors.jsonl`` (inputs that failed; the run goes on) and
``summary.json`` holding the image preset that training and ``ecgcore predict``
reuse. INPUT may be image files (PNG/JPEG/TIFF/BMP), PDFs (first page), signal
files in any format ecgcore reads (drawn with ``ecgcore.plot``), directories
(searched recursively), glob patterns, or manifest CSVs (a ``path`` column,
optional ``record_id`` and label columns). Record ids are the file names
without their suffix; inputs that share a file name (``site1/p1.png``,
``site2/p1.png``) get their folder in front (``site1/p1``, ``site2/p1``).
``--labels`` joins a labels CSV by record id into the manifest. Exit 0 when every input was converted, 1 when some failed (listed in
errors.jsonl), 2 on usage errors. An interrupted run continues with ``--resume``.
"""

from __future__ import annotations

import os
import sys

from ecgcore.plotting import LAYOUTS

from ._common import expand_inputs


def add_parser(sub):
    p = sub.add_parser("images", help="build an image dataset (for image models) from pages and records",
                       description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--out", required=True, metavar="DIR", help="output dataset directory (new or empty)")
    p.add_argument("--size", type=int, default=384, metavar="PX",
                   help="side of the square image in pixels (default 384, as the study)")
    g = p.add_argument_group("drawing signal records (ecgcore.plot)")
    g.add_argument("--layout", choices=LAYOUTS, default="6x2",
                   help="page layout of drawn records (default 6x2, what the study's network saw)")
    g.add_argument("--dpi", type=float, default=100.0,
                   help="drawing resolution of signal records in dots per inch (default 100)")
    g.add_argument("--line-width", type=float, default=0.6, metavar="PT",
                   help="trace width in points (default 0.6; thicker survives small --size)")
    g.add_argument("--draw-grid", action="store_true", help="draw the ECG paper grid under the traces")
    g = p.add_argument_group("pages (images and PDFs)")
    g.add_argument("--pdf-dpi", type=float, default=300.0,
                   help="PDF rendering resolution in dots per inch (default 300, as the study)")
    g.add_argument("--crop", default="auto", metavar="BOX",
                   help="lead-area crop: auto (the current detector, stored as auto2; default), "
                        "auto1 (the version-1 detector), none, old/new (the study's fixed "
                        "300-dpi boxes) or LEFT,TOP,RIGHT,BOTTOM in pixels")
    g.add_argument("--remove-grid", action="store_true", help="paint the coloured grid white")
    g.add_argument("--rearrange", action="store_true",
                   help="rearrange a 3x4 page into the study's 6x2 layout after cropping")
    p.add_argument("--labels", metavar="CSV", help="labels CSV joined to the inputs by record id")
    p.add_argument("--id-col", default="record_id", help="record-id column of --labels (default record_id)")
    p.add_argument("--name", default="mtecg", help="image preset name models ask for (default mtecg)")
    p.add_argument("--chunk-size", type=int, default=256, metavar="K", help="images per shard (default 256)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _crop_box(text: str):
    from ecgcore.errors import ConfigError
    t = text.strip().lower()
    if t in ("auto", "auto1", "auto2", "old", "new"):
        return t
    if t in ("none", "no", "off"):
        return None
    try:
        box = [int(v) for v in t.split(",")]
    except ValueError:
        box = []
    if len(box) != 4:
        raise ConfigError(f"--crop: expected auto, auto1, auto2, none, old, new or LEFT,TOP,RIGHT,BOTTOM, not {text!r}")
    return box


def run(args) -> int:
    from ecgcore.errors import ConfigError
    from ecgcore.models.train.images import build_image_dataset
    from ecgcore.pipeline import is_manifest_csv

    try:
        inputs, plain = [], []
        for inp in args.inputs:
            (inputs if is_manifest_csv(inp) else plain).append(inp)
        paths = expand_inputs(plain)
        missing = [p for p in paths if "::" not in p and not os.path.exists(p)]
        for p in missing:
            print(f"ecgcore images: {p}: no such file (will be reported in errors.jsonl)", file=sys.stderr)
        inputs += paths
        if not inputs:
            print("ecgcore images: no input files found", file=sys.stderr)
            return 2
        render = {"layout": args.layout, "dpi": args.dpi, "line_width": args.line_width,
                  "grid": bool(args.draw_grid)}
        summary = build_image_dataset(
            inputs, args.out, size=args.size, crop_box=_crop_box(args.crop),
            grid="remove" if args.remove_grid else "keep", rearrange=args.rearrange, dpi=args.pdf_dpi,
            render=render, name=args.name, chunk_size=args.chunk_size, workers=args.workers,
            resume=args.resume, progress=not args.no_progress, labels=args.labels, id_col=args.id_col)
    except ConfigError as exc:
        print(f"ecgcore images: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a worker died (OOM kill, full disk, ...)
        print(f"ecgcore images: run stopped: {type(exc).__name__}: {exc}. Finished shards are kept; "
              f"rerun the same command with --resume to continue.", file=sys.stderr)
        return 1
    n_fail = summary["n_records_failed"]
    lab = summary.get("labels")
    if lab and lab["n_unlabelled"]:
        print(f"ecgcore images: {lab['n_unlabelled']} input(s) have no row in {args.labels} "
              f"(e.g. {', '.join(lab['unlabelled_ids'][:3])})", file=sys.stderr)
    print(f"ecgcore images: {summary['n_records_ok']} images ({args.size} x {args.size}) in "
          f"{summary['n_shards']} shards ({summary['shards_resumed']} resumed) -> {args.out}; "
          f"{n_fail} failed" + (f" (see {os.path.join(args.out, 'errors.jsonl')})" if n_fail else ""),
          file=sys.stderr)
    return 1 if n_fail else 0
