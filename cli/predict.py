"""``ecgcore predict --checkpoint CKPT INPUT... --out predictions.csv``.

Signal models (a checkpoint trained on a signal preset): reads raw ECG files
in any supported format (``ecgcore.read``), preprocesses each with the preset
stored in the checkpoint, runs the model on every segment and aggregates
segments per record.

Image models (a checkpoint trained on an image dataset, e.g. the
``image_ms_lvef`` config): INPUT may be images (PNG/JPEG/TIFF/BMP), PDFs
(first page) or signal files in any format, which are drawn with
``ecgcore.plot`` as the image dataset was; every input is prepared with the
crop, grid, rearrangement and drawing options stored in the checkpoint
(``ecgcore.ECGClassifier``). The kind of checkpoint is detected.

One CSV row per input (``path``, ``n_segments``, then the task columns);
inputs that fail are named on stderr (exit 1).
"""

from __future__ import annotations

import csv
import sys

from ecgcore._atomic import atomic_open

from ._common import expand_inputs


def add_parser(sub):
    p = sub.add_parser("predict", help="predict raw ECG files, images or PDFs with a trained model",
                       description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="training checkpoint (best.pt), run directory, or model file of an image model")
    p.add_argument("--out", required=True, metavar="predictions.csv")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    return p


def _predict_images(paths, args):
    from ecgcore.models.classifier import ECGClassifier
    clf = ECGClassifier(args.checkpoint, device=args.device)
    return clf.predict_table(paths, batch_size=args.batch_size)


def run(args) -> int:
    from ecgcore.errors import CheckpointError, ConfigError
    from ecgcore.models.classifier import checkpoint_input_kind
    from ecgcore.models.train.predict import predict_files
    paths = expand_inputs(args.inputs)
    if not paths:
        print("ecgcore predict: no input files", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print(f"ecgcore predict: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    try:
        if checkpoint_input_kind(args.checkpoint) == "image":
            rows, failures = _predict_images(paths, args)
        else:
            rows, failures = predict_files(paths, args.checkpoint, device=args.device,
                                           batch_size=args.batch_size)
    except (CheckpointError, ConfigError) as exc:
        print(f"ecgcore predict: {exc}", file=sys.stderr)
        return 2
    keys = list(dict.fromkeys(k for r in rows for k in r)) or ["path"]
    with atomic_open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, restval="")
        w.writeheader()
        w.writerows(rows)
    for p, msg in failures:
        print(f"ecgcore predict: {msg if p in msg else p + ': ' + msg}", file=sys.stderr)
    print(f"ecgcore predict: {len(rows)} records -> {args.out}; {len(failures)} failed", file=sys.stderr)
    return 1 if failures else 0
