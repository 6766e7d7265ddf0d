"""``ecgcore evaluate --checkpoint CKPT --data DATASET [--labels CSV] [--subgroup COL] [--figures] [--out DIR]``.

Predicts every record of a preprocessed dataset with a training checkpoint
(segments aggregated per record), joins the labels and writes
``metrics.json``, a tidy ``metrics.csv``, ``predictions.csv`` and figures
through ``ecgcore.stats.evaluate_predictions``. Binary tasks are scored at
the threshold chosen on the validation split during training. The dataset
must have been preprocessed with the checkpoint's preset. ``--subgroup COL``
(repeatable; default: the config's ``evaluate.subgroups``) reports every
metric within each value of a labels-CSV column (e.g. a boolean
``normal_ecg``); ``--figures`` / ``--no-figures`` override the config's
``evaluate.figures`` (ROC, PR, calibration, Bland-Altman PNGs).
"""

from __future__ import annotations

import csv
import json
import os
import sys


def add_parser(sub):
    p = sub.add_parser("evaluate", help="evaluate a trained model on a dataset", description=__doc__)
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="best.pt / last.pt or a run directory")
    p.add_argument("--data", required=True, metavar="DATASET", help="a dataset from 'ecgcore preprocess'")
    p.add_argument("--labels", default=None, metavar="CSV",
                   help="labels CSV (default: the one in the checkpoint's config)")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default: DATASET-eval "
                   "next to the checkpoint)")
    p.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (default: from the config)")
    p.add_argument("--subgroup", action="append", default=None, metavar="COL",
                   help="labels-CSV column to stratify metrics by (repeatable)")
    fig = p.add_mutually_exclusive_group()
    fig.add_argument("--figures", dest="figures", action="store_true", default=None,
                     help="write PNG figures (default: the config's evaluate.figures)")
    fig.add_argument("--no-figures", dest="figures", action="store_false", default=None)
    p.add_argument("--device", default="cpu")
    return p


def _subgroup_columns(path, id_col, columns) -> dict:
    """record id -> {column: raw string} (subgroup labels need not be numeric)."""
    from ecgcore.errors import ConfigError
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            for c in columns:
                if c not in fields:
                    raise ConfigError(f"--subgroup {c!r}: no such column in the labels CSV "
                                      f"(columns: {', '.join(fields)})", path)
            return {(r[id_col] or "").strip(): {c: (r[c] or "").strip() for c in columns} for r in reader}
    except OSError as exc:
        raise ConfigError(f"cannot read labels: {exc.strerror or exc}", path) from None


def evaluate_dataset(checkpoint, data, labels=None, out=None, n_boot=None, figures=None, device="cpu",
                     subgroups=None):
    """Library form of the command; returns the metrics dict."""
    import numpy as np
    from ecgcore.errors import ConfigError
    from ecgcore.models.train.data import ECGDatasetRows, read_record_labels
    from ecgcore.models.train.predict import load_for_inference, predict_records
    from ecgcore import stats

    model, ck = load_for_inference(checkpoint, device)
    cfg = ck["config"]
    rows = ECGDatasetRows(data)
    have = (rows.preset or {}).get("name")
    if have != ck["preset"].get("name"):
        raise ConfigError(f"the dataset was preprocessed with preset {have!r} but this checkpoint expects "
                          f"preset {ck['preset'].get('name')!r}: re-run 'ecgcore preprocess ... --preset "
                          f"{ck['preset'].get('name')}'", data)
    labels = labels or cfg["data"]["labels"]
    cols = ck["label_columns"]
    table = read_record_labels(labels, cfg["data"]["id_col"], cols + list(ck["clinical_cols"]),
                               cfg["data"]["patient_col"]) if labels else {}
    ids = rows.record_ids
    clin = None
    if ck["clinical_cols"]:
        clin = np.array([table.get(r, ([np.nan] * (len(cols) + len(ck["clinical_cols"])), None))[0][len(cols):]
                         for r in ids], dtype=np.float64)
    pred = predict_records(model, ck, [rows.segments(r) for r in ids], clinical=clin, device=device,
                           batch_size=cfg["data"]["eval_batch_size"])
    data_cols = {"record_id": np.asarray(ids, dtype=object)}
    data_cols["patient_id"] = np.asarray([(table.get(r) or (None, None))[1] or r for r in ids], dtype=object)
    tasks = []
    thresholds = ck.get("thresholds") or {}
    for j, t in enumerate(cfg["tasks"]):
        y = np.array([table[r][0][j] if r in table else np.nan for r in ids], dtype=np.float64)
        if t["type"] == "multiclass":
            continue
        data_cols[f"{t['name']}_true"] = y
        data_cols[f"{t['name']}_pred"] = pred[t["name"]]
        spec = {"name": t["name"], "type": t["type"], "y": f"{t['name']}_true", "p": f"{t['name']}_pred"}
        if t["type"] == "binary" and t["name"] in thresholds:
            spec["threshold"] = thresholds[t["name"]]
        if np.isfinite(y).sum() >= 3:
            tasks.append(spec)
    if out is None:
        base = os.path.dirname(os.path.abspath(checkpoint if not os.path.isdir(checkpoint)
                                               else os.path.join(checkpoint, "checkpoints", "x")))
        out = os.path.join(os.path.dirname(base), "eval-" + os.path.basename(os.path.normpath(data)))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "predictions.csv"), "w", newline="") as f:
        w = csv.writer(f)
        keys = list(data_cols)
        w.writerow(keys)
        for i in range(len(ids)):
            w.writerow(["" if (isinstance(data_cols[k][i], float) and not np.isfinite(data_cols[k][i]))
                        else data_cols[k][i] for k in keys])
    subgroups = list(cfg["evaluate"]["subgroups"] if subgroups is None else subgroups)
    if subgroups:
        if not labels:
            raise ConfigError("--subgroup needs a labels CSV (--labels)")
        sg = _subgroup_columns(labels, cfg["data"]["id_col"], subgroups)
        for c in subgroups:
            data_cols[c] = np.asarray([sg.get(r, {}).get(c, "") or "missing" for r in ids], dtype=object)
    if figures is None:
        figures = bool(cfg["evaluate"]["figures"])
    if not tasks:
        result = {"n_records": len(ids), "note": "no labelled records: predictions only"}
        with open(os.path.join(out, "metrics.json"), "w") as f:
            json.dump(result, f, indent=1)
        return result
    mask = np.ones(len(ids), bool)
    result = stats.evaluate_predictions({k: v[mask] for k, v in data_cols.items()}, tasks,
                                        groups="patient_id", out_dir=out,
                                        n_boot=n_boot if n_boot is not None else cfg["evaluate"]["n_boot"],
                                        seed=cfg["seed"], figures=figures, subgroups=subgroups)
    result.pop("rows", None)
    return result


def run(args) -> int:
    from ecgcore.errors import CheckpointError, ConfigError, PreprocessError
    try:
        res = evaluate_dataset(args.checkpoint, args.data, args.labels, args.out, args.n_boot,
                               args.figures, args.device, subgroups=args.subgroup)
    except (ConfigError, CheckpointError, PreprocessError) as exc:
        print(f"ecgcore evaluate: {exc}", file=sys.stderr)
        return 2
    print(f"ecgcore evaluate: {res.get('n_test', res.get('n_records'))} records evaluated", file=sys.stderr)
    return 0
