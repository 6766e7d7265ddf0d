"""``ecgcore preprocess INPUT... --preset P --out DATASET``: many ECG files to a sharded dataset.

INPUT may be files, directories (searched recursively), glob patterns, or
manifest CSVs (a ``path`` column, optional ``record_id`` and label columns).
The dataset holds ``.npy`` shards that memory-map without ecgcore, a
manifest, ``errors.jsonl`` and ``summary.json``. Exit 0 when every record
was processed, 1 when some failed (listed in errors.jsonl), 2 on usage errors.
"""

from __future__ import annotations

import os
import sys

from ._common import expand_inputs


def add_parser(sub):
    p = sub.add_parser("preprocess", help="preprocess many ECGs into a sharded dataset",
                       description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--preset", required=True,
                   help="preset name (see 'ecgcore presets') or a YAML preset file")
    p.add_argument("--out", required=True, metavar="DATASET", help="output dataset directory")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: number of CPUs)")
    p.add_argument("--engine", choices=("local", "dask"), default="local")
    p.add_argument("--scheduler", default=None, metavar="ADDR",
                   help="dask.distributed scheduler address (with --engine dask)")
    p.add_argument("--chunk-size", type=int, default=256, metavar="K",
                   help="records per chunk and shard (default 256)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    p.add_argument("--manifest-format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--quality", choices=("basic", "full"), default="basic",
                   help="manifest quality flags: NaN/flat leads (basic), or also clipped leads "
                        "and implausible amplitudes (full, ~10 ms per record)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from ecgcore.errors import ConfigError
    from ecgcore.pipeline import is_manifest_csv, items_from_paths, read_manifest, run_pipeline

    try:
        items = []
        plain = []
        for inp in args.inputs:
            if is_manifest_csv(inp):
                items.extend(read_manifest(inp))
            else:
                plain.append(inp)
        paths = expand_inputs(plain)
        missing = [p for p in paths if not os.path.exists(p.rsplit("::", 1)[0] if "::" in p else p)
                   and not os.path.exists(p + ".hea")]
        for p in missing:
            print(f"ecgcore preprocess: {p}: no such file (will be reported in errors.jsonl)",
                  file=sys.stderr)
        items.extend(items_from_paths(paths))
        if not items:
            print("ecgcore preprocess: no input records found", file=sys.stderr)
            return 2
        summary = run_pipeline(items, preset=args.preset, out=args.out, workers=args.workers,
                               engine=args.engine, scheduler=args.scheduler,
                               chunk_size=args.chunk_size, dtype=args.dtype, resume=args.resume,
                               progress=not args.no_progress,
                               manifest_format=args.manifest_format, quality=args.quality)
    except ConfigError as exc:
        print(f"ecgcore preprocess: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a worker died (OOM kill, full disk, lost dask worker, ...)
        print(f"ecgcore preprocess: run stopped: {type(exc).__name__}: {exc}. Finished shards "
              f"are kept; rerun the same command with --resume to continue.", file=sys.stderr)
        return 1
    n_fail = summary["n_records_failed"]
    rate = summary["timings"]["records_per_s"]
    print(f"ecgcore preprocess: {summary['n_records_ok']} records -> {summary['n_segments']} "
          f"segments in {summary['n_shards']} shards ({summary['shards_resumed']} resumed)"
          + (f", {rate:.0f} records/s" if rate else "") + f"; {n_fail} failed"
          + (f" (see {os.path.join(args.out, 'errors.jsonl')})" if n_fail else ""),
          file=sys.stderr)
    return 1 if n_fail else 0
