"""``ecgcore predict --checkpoint CKPT INPUT... --out predictions.csv``.

Reads raw ECG files in any supported format (``ecgcore.read``), preprocesses
each with the preset stored in the checkpoint, runs the model on every
segment and aggregates segments per record. One CSV row per input; inputs
that fail are named on stderr (exit 1).
"""

from __future__ import annotations

import csv
import sys

from ._common import expand_inputs


def add_parser(sub):
    p = sub.add_parser("predict", help="predict raw ECG files with a trained model", description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--checkpoint", required=True, metavar="CKPT")
    p.add_argument("--out", required=True, metavar="predictions.csv")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    return p


def run(args) -> int:
    from ecgcore.errors import CheckpointError, ConfigError
    from ecgcore.models.train.predict import predict_files
    paths = expand_inputs(args.inputs)
    if not paths:
        print("ecgcore predict: no input files", file=sys.stderr)
        return 2
    try:
        rows, failures = predict_files(paths, args.checkpoint, device=args.device, batch_size=args.batch_size)
    except (CheckpointError, ConfigError) as exc:
        print(f"ecgcore predict: {exc}", file=sys.stderr)
        return 2
    keys = list(dict.fromkeys(k for r in rows for k in r)) or ["path"]
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, restval="")
        w.writeheader()
        w.writerows(rows)
    for p, msg in failures:
        print(f"ecgcore predict: {msg if p in msg else p + ': ' + msg}", file=sys.stderr)
    print(f"ecgcore predict: {len(rows)} records -> {args.out}; {len(failures)} failed", file=sys.stderr)
    return 1 if failures else 0
