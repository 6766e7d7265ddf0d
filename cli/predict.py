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

Models that fuse clinical variables (the LVH models with age, sex, ...; the
scar/LVEF image model) take them from ``--clinical CSV``: one row per record,
the checkpoint's clinical columns, the record named in ``--id-col`` by its id
as ``ecgcore preprocess`` gives it (or its file name without the suffix).
Empty cells are imputed as in training; an input without a row fails.

One CSV row per input (``path``, ``n_segments``, then the task columns);
an input that fails does not stop the run: it is named on stderr and in
``OUT.errors.jsonl`` beside the CSV (one ``{"path", "message"}`` line per
failed input; empty when none failed), and the exit status is 1.
"""

from __future__ import annotations

import csv
import json
import os
import sys

from ecgcore._atomic import atomic_open, temporary_name

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
    p.add_argument("--clinical", metavar="CSV", default=None,
                   help="clinical variables of models that fuse them: one row per record, the "
                        "checkpoint's columns, read as training reads its labels (empty = imputed)")
    p.add_argument("--id-col", default="record_id",
                   help="column of --clinical naming the record: its id as 'ecgcore preprocess' "
                        "names it, or the file name without its suffix (default record_id)")
    return p


def _predict_images(paths, args):
    from ecgcore.models.classifier import ECGClassifier
    from ecgcore.models.train.predict import clinical_rows
    clf = ECGClassifier(args.checkpoint, device=args.device)
    table, failures = None, []
    if args.clinical is not None and clf.n_clinical:
        values, missing = clinical_rows(paths, args.clinical, clf.clinical_cols, args.id_col)
        table = {p: dict(zip(clf.clinical_cols, v)) for p, v in values.items()}
        failures = list(missing.items())
        paths = [p for p in paths if p not in missing]
    elif args.clinical is not None:
        table = {}    # predict_table names the mismatch
    rows, failed = clf.predict_table(paths, batch_size=args.batch_size, clinical=table)
    return rows, failures + failed


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
    # the output is checked before the (long) predictions, not after them
    bad = _unwritable(args.out)
    if bad:
        print(f"ecgcore predict: --out {args.out}: {bad}", file=sys.stderr)
        return 2
    try:
        if checkpoint_input_kind(args.checkpoint) == "image":
            rows, failures = _predict_images(paths, args)
        else:
            rows, failures = predict_files(paths, args.checkpoint, device=args.device,
                                           batch_size=args.batch_size, clinical=args.clinical,
                                           id_col=args.id_col)
    except (CheckpointError, ConfigError) as exc:
        print(f"ecgcore predict: {exc}", file=sys.stderr)
        return 2
    keys = list(dict.fromkeys(k for r in rows for k in r)) or ["path"]
    try:
        with atomic_open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys, restval="")
            w.writeheader()
            w.writerows(rows)
    except OSError as exc:   # e.g. the disk filled up while predicting
        print(f"ecgcore predict: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    err_path = errors_path(args.out)
    try:   # rewritten on every run: a rerun never shows the failures of an earlier one
        with atomic_open(err_path, "w") as f:
            for p, msg in failures:
                f.write(json.dumps({"path": p, "message": msg}) + "\n")
    except OSError as exc:
        print(f"ecgcore predict: cannot write {err_path}: {exc.strerror or exc}", file=sys.stderr)
    for p, msg in failures:
        print(f"ecgcore predict: {msg if p in msg else p + ': ' + msg}", file=sys.stderr)
    print(f"ecgcore predict: {len(rows)} records -> {args.out}; {len(failures)} failed"
          + (f" (listed in {err_path})" if failures else ""), file=sys.stderr)
    return 1 if failures else 0


def errors_path(out: str) -> str:
    """``predictions.csv`` -> ``predictions.errors.jsonl``: named after the CSV, so two runs writing
    into one folder keep their own lists."""
    stem, ext = os.path.splitext(out)
    return (stem if ext.lower() == ".csv" else out) + ".errors.jsonl"


def _unwritable(out: str) -> str | None:
    """Why ``out`` cannot be written as a file (its folder is made when missing), or None."""
    if os.path.isdir(out):
        return "is a directory (name the CSV file to write)"
    folder = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        return f"cannot create its folder {folder}: {exc.strerror or exc}"
    probe = temporary_name(os.path.abspath(out))
    try:   # the only sure test (root, read-only mounts, /proc): write there
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as exc:
        return f"cannot write in {folder}: {exc.strerror or exc}"
    return None
