"""``ecgcore evaluate --checkpoint CKPT --data DATASET [--labels CSV] [--subgroup COL] [--time COL --event COL] [--split test|val] [--figures] [--out DIR]``.

Predicts every record of a preprocessed dataset with a training checkpoint
(segments aggregated per record), joins the labels and writes
``metrics.json``, a tidy ``metrics.csv``, ``predictions.csv`` and figures
through ``ecgcore.stats.evaluate_predictions``. Binary tasks are scored at
the threshold chosen on the validation split during training. The dataset
must have been preprocessed with the checkpoint's preset. ``--subgroup COL``
(repeatable; default: the config's ``evaluate.subgroups``) reports every
metric within each value of a labels-CSV column (e.g. a boolean
``normal_ecg``); ``--figures`` / ``--no-figures`` override the config's
``evaluate.figures`` (ROC, PR, calibration, decision-curve and Bland-Altman
PNGs; per classification task, saliency overlays on the ECG of the
``--saliency-records`` top-scoring records and the mean waveforms of the
predicted high- vs low-risk groups). A multiclass task with 2 classes is
scored as binary (probability of class 1); with more classes its
probabilities are written to predictions.csv and it is listed as not scored.
``--time COL --event COL`` (follow-up time and event 0/1 in the labels CSV)
add, per binary task, Kaplan-Meier cumulative incidence by predicted-risk
group (split at the threshold chosen on validation) with a log-rank test and,
with figures, the incidence curves; rows with an event but no time are
dropped, not counted as non-events.

Held-out records only: a training checkpoint stores the record ids of its
train/validation/test splits. When the dataset holds any of them, each row is
marked ``train``, ``val``, ``test`` or ``other`` (not in any split, e.g. records
added later) and only the ``evaluate.split`` records of the config (``test`` by
default, ``--split val`` for the validation records) plus the ``other`` ones
are scored; training records never are. The saliency overlays and mean
waveforms are drawn from the scored records only, predictions.csv has a
``split`` column for every row and metrics.json says what was scored
(``scored``). A dataset with none of the checkpoint's records (an external
cohort) is scored whole. A record is the checkpoint's by its id and its signal
(the checkpoint keeps a CRC-32 of each split record's first segment): an
external cohort that numbers its records like the training data is scored
whole too, and ``scored`` counts such ``n_id_collisions``.
"""

from __future__ import annotations

import csv
import json
import os
import sys

from ecgcore._atomic import atomic_open

from ._common import os_error_line


def add_parser(sub):
    p = sub.add_parser("evaluate", help="evaluate a trained model on a dataset", description=__doc__)
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="best.pt / last.pt or a run directory")
    p.add_argument("--data", required=True, metavar="DATASET", help="a dataset from 'ecgcore preprocess'")
    p.add_argument("--labels", default=None, metavar="CSV",
                   help="labels CSV (default: the one in the checkpoint's config)")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default: eval-DATASET "
                   "in the checkpoint's run directory, or beside a checkpoint file outside one)")
    p.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (default: from the config)")
    p.add_argument("--subgroup", action="append", default=None, metavar="COL",
                   help="labels-CSV column to stratify metrics by (repeatable)")
    fig = p.add_mutually_exclusive_group()
    fig.add_argument("--figures", dest="figures", action="store_true", default=None,
                     help="write PNG figures (default: the config's evaluate.figures)")
    fig.add_argument("--no-figures", dest="figures", action="store_false", default=None)
    p.add_argument("--saliency-records", type=int, default=3, metavar="K",
                   help="saliency overlays of the K top-scoring records per classification task "
                        "(with figures; 0 = none; default 3)")
    p.add_argument("--saliency-method", default="gradient", choices=("gradient", "integrated_gradients"),
                   help="input gradient (DL-AtCM) or integrated gradients (default gradient)")
    p.add_argument("--time", dest="time_col", default=None, metavar="COL",
                   help="labels-CSV column of follow-up time (with --event): Kaplan-Meier incidence by "
                        "predicted-risk group (split at the validation threshold) and a log-rank test")
    p.add_argument("--event", dest="event_col", default=None, metavar="COL",
                   help="labels-CSV column of the event indicator 0/1 (with --time)")
    p.add_argument("--split", default=None, choices=("test", "val"),
                   help="on the training dataset, score these held-out records (default: the config's "
                        "evaluate.split, test); records in no split are always scored, training records never")
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
                     subgroups=None, saliency_records: int = 3, saliency_method: str = "gradient",
                     time_col=None, event_col=None, split=None):
    """Library form of the command; returns the metrics dict.

    ``split`` (``"test"`` or ``"val"``; default the config's ``evaluate.split``)
    selects the held-out records scored when the dataset holds records of the
    checkpoint's splits (see the module docstring).
    """
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
        from ecgcore.models.train.images import is_image_preset
        # image datasets come from 'ecgcore images' (the drawing options are the checkpoint's), signal
        # datasets from 'ecgcore preprocess'
        redo = ("build the image dataset with 'ecgcore images' as for training" if is_image_preset(ck["preset"])
                else f"re-run 'ecgcore preprocess ... --preset {ck['preset'].get('name')}'")
        raise ConfigError(f"the dataset was preprocessed with preset {have!r} but this checkpoint expects "
                          f"preset {ck['preset'].get('name')!r}: {redo}", data)
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
    want = split or cfg["evaluate"]["split"]
    if want not in ("test", "val"):
        raise ConfigError(f"--split must be 'test' or 'val', not {want!r}")
    role, scored, scope = _split_roles(ck, ids, want, rows.fingerprint)
    if role is not None:
        data_cols["split"] = role
    if not scored.any():
        raise ConfigError(f"none of the {len(ids)} records of this dataset is in the checkpoint's "
                          f"{want!r} split or outside its splits: there is nothing held out to score "
                          f"(records per split: {scope['records_by_split']})", data)
    tasks = []
    thresholds = ck.get("thresholds") or {}
    not_scored = {}
    for j, t in enumerate(cfg["tasks"]):
        y = np.array([table[r][0][j] if r in table else np.nan for r in ids], dtype=np.float64)
        if t["type"] == "multiclass":
            probs = np.asarray(pred[t["name"]], np.float64).reshape(len(ids), -1)
            if probs.shape[1] != 2:
                data_cols[f"{t['name']}_true"] = y
                for k in range(probs.shape[1]):
                    data_cols[f"{t['name']}_p{k}"] = probs[:, k]
                not_scored[t["name"]] = f"multiclass with {probs.shape[1]} classes (probabilities written)"
                continue
            # 2 classes: binary in metrics and figures, the score is P(class 1)
            bad = np.isfinite(y) & ~np.isin(y, (0.0, 1.0))
            if bad.any():
                raise ConfigError(f"task {t['name']!r}: a 2-class task needs labels 0/1, found "
                                  f"{np.unique(y[bad])[:3].tolist()}", labels)
            pred[t["name"]] = probs[:, 1]
        data_cols[f"{t['name']}_true"] = y
        data_cols[f"{t['name']}_pred"] = pred[t["name"]]
        spec = {"name": t["name"], "type": "binary" if t["type"] == "multiclass" else t["type"],
                "y": f"{t['name']}_true", "p": f"{t['name']}_pred"}
        if spec["type"] == "binary" and t["name"] in thresholds:
            spec["threshold"] = thresholds[t["name"]]
        if np.isfinite(y[scored]).sum() >= 3:
            tasks.append(spec)
    if out is None:
        out = default_out(checkpoint, data)
    os.makedirs(out, exist_ok=True)
    with atomic_open(os.path.join(out, "predictions.csv"), "w", newline="") as f:
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
    if time_col or event_col:   # risk stratification: one survival task per scored binary task
        if not (time_col and event_col and labels):
            raise ConfigError("--time and --event go together and need a labels CSV (--labels)")
        te = read_record_labels(labels, cfg["data"]["id_col"], [time_col, event_col])
        for key, k in (("_time", 0), ("_event", 1)):
            data_cols[key] = np.array([te[r][0][k] if r in te else np.nan for r in ids], np.float64)
        for spec in [s for s in tasks if s["type"] == "binary"]:
            # groups split at the threshold chosen on validation in training; else test tertiles (warned)
            tasks.append({"name": f"{spec['name']}_risk_groups", "type": "survival", "time": "_time",
                          "event": "_event", "p": spec["p"],
                          **({"cuts": [spec["threshold"]]} if "threshold" in spec else {})})
    if figures is None:
        figures = bool(cfg["evaluate"]["figures"])
    if not tasks:
        result = {"n_records": len(ids), "scored": scope, "dataset": os.path.abspath(data),
                  "note": ("no labels: predictions only" if not table else
                           "no task has 3 labelled records among the scored ones: predictions only")}
        with atomic_open(os.path.join(out, "metrics.json"), "w") as f:
            json.dump(result, f, indent=1)
        return result
    # rows handed to the statistics: the scored ones as "test"; when the test records are scored, the
    # validation records come along as "val" (validation quantiles for risk groups without a stored
    # threshold); training records never
    ev_role = np.full(len(ids), "", dtype=object)
    if role is not None and want == "test":
        ev_role[role == "val"] = "val"
    ev_role[scored] = "test"
    mask = ev_role != ""
    sub = {k: v[mask] for k, v in data_cols.items() if k != "split"}
    sub["_eval_split"] = ev_role[mask]
    result = stats.evaluate_predictions(sub, tasks, groups="patient_id", out_dir=out,
                                        split="_eval_split", val_label="val", test_label="test",
                                        n_boot=n_boot if n_boot is not None else cfg["evaluate"]["n_boot"],
                                        seed=cfg["seed"], figures=figures, subgroups=subgroups)
    result.pop("rows", None)
    result["scored"] = scope
    if not_scored:
        result["not_scored"] = not_scored
    if figures:
        extra = _signal_figures(model, ck, rows, ids, data_cols, tasks, result, out, clin, device,
                                saliency_records, saliency_method, cfg["seed"], scored)
        result["signal_figures"] = extra
    result["dataset"] = os.path.abspath(data)
    _update_metrics_json(os.path.join(out, "metrics.json"),
                         {k: result[k] for k in ("scored", "not_scored", "signal_figures", "dataset")
                          if k in result})
    return result


def default_out(checkpoint, data) -> str:
    """``RUN/eval-DATASET``: in the run directory of a checkpoint (a run directory, or a file in its
    ``checkpoints/`` folder), else beside the checkpoint file. When that folder holds the evaluation
    of another dataset of the same name (``/a/ds`` after ``/b/ds``), ``eval-DATASET-2``, ``-3`` ...:
    one evaluation never overwrites another's files."""
    ck = os.path.abspath(checkpoint)
    if os.path.isdir(ck):
        run = ck
    else:
        run = os.path.dirname(ck)
        if os.path.basename(run) == "checkpoints":
            run = os.path.dirname(run)
    data = os.path.normpath(os.path.abspath(data))
    base = os.path.join(run, "eval-" + os.path.basename(data))
    out, k = base, 1
    while True:
        try:
            with open(os.path.join(out, "metrics.json")) as f:
                other = json.load(f).get("dataset")
        except (OSError, ValueError, AttributeError):
            return out          # a new folder, or one without a readable evaluation: ours
        if other in (None, data):
            return out          # the same dataset (or an evaluation from before datasets were noted)
        k += 1
        out = f"{base}-{k}"


def _split_roles(ck, ids, want, fingerprint=None):
    """Each dataset row's split in the checkpoint (train/val/test, 'other' when in none), which rows
    are scored, and the ``scored`` entry of metrics.json.

    Without split membership in the checkpoint (older files) every row is scored and ``role`` is
    None; when no dataset record is in any split (an external dataset) every row is 'other' and
    scored. A record whose id is in a split but whose signal is not the one trained on (checkpoints
    store each split record's ``fingerprint``: an external cohort numbering its records alike) is
    'other' too.
    """
    import numpy as np
    splits = ck.get("splits") or {}
    split_of = {str(r): k for k, v in splits.items() for r in v}
    n = len(ids)
    if not splits:
        return None, np.ones(n, bool), {"split": "all", "n_records": n, "n_scored": n,
                                        "records_by_split": {"unknown": n},
                                        "reason": "the checkpoint stores no split membership"}
    role = np.asarray([split_of.get(str(r), "other") for r in ids], dtype=object)
    fps = ck.get("split_fingerprints")
    n_alike = 0
    if fps and fingerprint is not None:
        for i, r in enumerate(ids):
            if role[i] != "other" and fps.get(str(r)) != fingerprint(r):
                role[i] = "other"
                n_alike += 1
    alike = (f"; {n_alike} record(s) share an id with a training-run record but not its signal "
             f"(another cohort), scored as external") if n_alike else ""
    if (role == "other").all():
        return role, np.ones(n, bool), {
            "split": "all", "n_records": n, "n_scored": n, "records_by_split": {"other": n},
            "n_id_collisions": n_alike,
            "reason": "no record of this dataset is in the checkpoint's splits (an external dataset)"
                      + alike}
    scored = (role == want) | (role == "other")
    by = {k: int((role == k).sum()) for k in ("train", "val", "test", "other")}
    return role, scored, {
        "split": want, "n_records": n, "n_scored": int(scored.sum()), "records_by_split": by,
        "n_id_collisions": n_alike,
        "reason": f"records of the checkpoint's {want!r} split and records in none of its splits are "
                  f"scored; training records never"
                  + ("" if want == "val" else ", validation records only feed validation-based choices")
                  + alike}


def _update_metrics_json(path, extra):
    from ecgcore.stats.report import json_safe
    with open(path) as f:
        m = json.load(f)
    m.update(extra)
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(json_safe(m), f, indent=2, allow_nan=False)


def _preset_fs(preset) -> float:
    fs = (preset.get("input_contract") or {}).get("fs")
    if not fs:
        for step in preset.get("steps") or ():
            if step.get("op") == "resample":
                fs = step.get("fs")
    return float(fs or 500.0)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))[:60]


def _record_beat(seg, fs):
    """One aligned beat per record: the segment itself when it is already a beat (median-beat
    presets), else the median beat of the segment (R at 0.25 s of a 0.9-s window, as the CCTA
    waveform analysis cut its beats)."""
    import numpy as np
    from ecgcore.delineation.median import median_beats
    if seg.shape[-1] <= int(1.2 * fs):
        return np.asarray(seg, np.float64)
    mb = median_beats(np.asarray(seg, np.float64), fs=fs, length=int(round(0.9 * fs)),
                      before=int(round(0.25 * fs)))
    return mb.signal if mb.meta.get("n_beats", 0) > 0 else None


def _signal_figures(model, ck, rows, ids, data_cols, tasks, result, out, clin, device, k_top, method, seed,
                    scored=None):
    """Saliency overlays of the top-scoring records and high- vs low-risk mean waveforms, per
    classification task, drawn from the ``scored`` rows only (all rows when None). Returns a dict
    of what was drawn (and why not, where nothing was)."""
    import numpy as np
    import torch
    from ecgcore.models.explain import task_saliency
    from ecgcore.models.train.images import is_image_preset
    from ecgcore.stats.figures import mean_waveforms, saliency_figure, save_figure
    preset = ck["preset"]
    info = {}
    binary = [t for t in tasks if t["type"] == "binary"]
    if not binary:
        return info
    if is_image_preset(preset):
        return {t["name"]: {"skipped": "image preset: no waveform to draw on"} for t in binary}
    fs = _preset_fs(preset)
    leads = list(preset.get("leads") or [])
    units = (preset.get("input_contract") or {}).get("units", "")
    C = None
    if ck.get("clinical_cols"):
        from ecgcore.models.train.data import ClinicalScaler
        C = ClinicalScaler.from_state(ck["clinical_scaler"]).transform(np.asarray(clin, np.float64))
    cache = {}

    def segs(i):
        if i not in cache:
            cache[i] = np.asarray(rows.segments(ids[i]), np.float32)
        return cache[i]
    rng = np.random.default_rng(seed)
    for t in binary:
        name = t["name"]
        p = np.asarray(data_cols[t["p"]], np.float64)
        entry = {"saliency": [], "method": method}
        ok = np.flatnonzero(np.isfinite(p) & (True if scored is None else np.asarray(scored, bool)))
        top = ok[np.argsort(-p[ok], kind="stable")][:max(0, int(k_top))]
        for rank, i in enumerate(top):
            x = segs(i)
            if x.ndim != 3:
                entry["saliency_skipped"] = f"segments of shape {x.shape} are not (leads, samples)"
                break
            # the segment the model scores highest: the one that drove the record's prediction
            xt = torch.from_numpy(x).to(device)
            kw = {}
            if C is not None:
                kw["clinical"] = torch.from_numpy(np.repeat(C[i:i + 1], len(x), 0)).float().to(device)
            from ecgcore.models.explain import _TaskScore
            with torch.no_grad():
                sc = _TaskScore(model, ck["config"]["tasks"], name).eval()(xt, **kw).float().cpu().numpy()
            j = int(np.argmax(sc))
            sal = task_saliency(model, xt[j:j + 1], ck["config"]["tasks"], name, method=method,
                                **({"clinical": kw["clinical"][j:j + 1]} if kw else {}))
            sal = sal[0].detach().float().cpu().numpy()
            lab = leads if len(leads) == x.shape[1] else [str(k) for k in range(x.shape[1])]
            fname = f"saliency_{_safe(name)}_{rank + 1}_{_safe(ids[i])}.png"
            fig = saliency_figure(x[j], sal, fs, lab, units=units,
                                  title=f"{name}: {ids[i]} (rank {rank + 1}, p = {p[i]:.3f}, segment {j}); "
                                        f"{method.replace('_', ' ')} saliency")
            save_figure(fig, os.path.join(out, fname))
            entry["saliency"].append({"record_id": ids[i], "score": float(p[i]), "segment": j, "file": fname})
        # predicted-risk groups at the reported decision threshold
        thr = ((result.get("tasks") or {}).get(name) or {}).get("threshold") or {}
        cut = thr.get("value")
        if cut is None:
            entry["mean_waveforms_skipped"] = "no decision threshold"
            info[name] = entry
            continue
        hi_idx, lo_idx = ok[p[ok] >= cut], ok[p[ok] < cut]
        cap = 200          # enough for a stable mean; bounded time on big cohorts
        groups = []
        for idx in (hi_idx, lo_idx):
            idx = rng.choice(idx, cap, replace=False) if len(idx) > cap else idx
            beats = [b for b in (_record_beat(segs(i)[0], fs) for i in idx) if b is not None]
            groups.append(np.stack(beats) if beats else None)
        if groups[0] is None or groups[1] is None:
            entry["mean_waveforms_skipped"] = (f"a risk group has no usable beat (high: {len(hi_idx)} "
                                               f"records, low: {len(lo_idx)})")
        else:
            lab = leads if len(leads) == groups[0].shape[1] else [str(k) for k in range(groups[0].shape[1])]
            fname = f"mean_waveforms_{_safe(name)}.png"
            fig = mean_waveforms(groups[0], groups[1], fs, lab, sd_scale=0.5, units=units or "a.u.",
                                 labels=(f"high risk (p >= {cut:.3g})", f"low risk (p < {cut:.3g})"),
                                 title=f"{name}: mean \u00b1 0.5 SD beat by predicted risk "
                                       f"(threshold {cut:.3g}, chosen on {thr.get('chosen_on')})")
            save_figure(fig, os.path.join(out, fname))
            entry["mean_waveforms"] = {"file": fname, "threshold": cut, "chosen_on": thr.get("chosen_on"),
                                       "n_high": int(groups[0].shape[0]), "n_low": int(groups[1].shape[0])}
        info[name] = entry
    cache.clear()
    return info


def run(args) -> int:
    from ecgcore.errors import CheckpointError, ConfigError, EvaluationError, PreprocessError
    bad = None
    if args.n_boot is not None and args.n_boot < 1:
        bad = f"--n-boot must be >= 1, got {args.n_boot}"
    elif args.saliency_records < 0:
        bad = f"--saliency-records must be >= 0, got {args.saliency_records}"
    elif args.out is not None and os.path.exists(args.out) and not os.path.isdir(args.out):
        bad = f"--out {args.out}: exists and is not a directory"
    if bad:
        print(f"ecgcore evaluate: {bad}", file=sys.stderr)
        return 2
    out = args.out or default_out(args.checkpoint, args.data)
    try:
        res = evaluate_dataset(args.checkpoint, args.data, args.labels, out, args.n_boot,
                               args.figures, args.device, subgroups=args.subgroup,
                               saliency_records=args.saliency_records, saliency_method=args.saliency_method,
                               time_col=args.time_col, event_col=args.event_col, split=args.split)
    except (ConfigError, CheckpointError, PreprocessError, EvaluationError) as exc:
        print(f"ecgcore evaluate: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:   # an input that vanished, or an output folder that cannot be written
        print(f"ecgcore evaluate: {os_error_line(exc, out)}", file=sys.stderr)
        return 1
    scope = res.get("scored") or {}
    n_all = scope.get("n_records", res.get("n_records"))
    n_scored = scope.get("n_scored", res.get("n_test", n_all))
    what = (f"{n_scored} of {n_all} records scored ({scope.get('split', 'all')} split and records in no split)"
            if n_scored != n_all else f"{n_all} records evaluated")
    if res.get("note"):
        what += f"; {res['note']}"
    print(f"ecgcore evaluate: {what} -> {os.path.join(out, 'metrics.json')}", file=sys.stderr)
    return 0
