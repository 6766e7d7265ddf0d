"""``ecgcore study NAME --config CONFIG.yaml --out DIR [--set key=value ...]``: the seed-study analyses
that are not plain training.

NAME is one of:

* ``pwave_baseline``: logistic model of an outcome (AF) on the P-wave indices
  of ``ecgcore measure`` (DL-AtCM's baseline), fitted on the training rows;
* ``af_from_markers``: AF from predicted atrial CMR markers with age and sex,
  compared with the P-wave baseline (and the clinical-only model) by DeLong's
  test on the same test cases;
* ``lvh``: iLVM-to-LVH logistic model with sex-specific thresholds from a
  predictions CSV, with the ECG voltage criteria (Sokolow-Lyon, Cornell voltage,
  Cornell product, from ``ecgcore measure``) as comparators when a measures
  CSV is given;
* ``ccta_cv``: grouped k-fold cross-validation of a training config (best
  epoch on an inner validation split, pooled out-of-fold evaluation).

Inputs are CSVs: predictions (``ecgcore train``/``evaluate``/``predict``),
labels (outcome, ``split`` = train/val/test, patient id, clinical
variables) and measures (``ecgcore measure``). The study config is a YAML
mapping (examples in ``configs/studies/``); relative paths are resolved
against the config file; an unknown key or a missing column exits 2 naming it.
Writes ``DIR/metrics.json`` (the whole result), ``DIR/metrics.csv`` (tidy:
task, metric, value, ci_low, ci_high, n, subgroup), ``DIR/table.csv`` (the
scored per-record table) and PNG figures (ROC, PR, calibration, decision
curves, Bland-Altman).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys

from ecgcore._atomic import atomic_open

STUDIES = ("pwave_baseline", "af_from_markers", "lvh", "ccta_cv")

_PWI = ["p_duration_ms", "pr_interval_ms", "p_amplitude_ii_uv", "p_axis_deg"]
_MARKERS = ["LA_max_pred", "LA_min_pred", "LAEF_pred", "LA_LV_ratio_pred"]
_STR, _LIST, _NUM, _INT, _BOOL, _OPTSTR = "str", "list", "num", "int", "bool", "optstr"

# key -> (kind, default); a default of ... means required
_COMMON = {"study": (_OPTSTR, None), "n_boot": (_INT, 1000), "seed": (_INT, 0), "figures": (_BOOL, True),
           "decision_thresholds": (_LIST, [0.05, 0.1, 0.2, 0.3])}
_TABLES = {"labels": (_STR, ...), "id_col": (_STR, "record_id"), "split_col": (_STR, "split"),
           "patient_col": (_OPTSTR, "patient_id")}
_MEAS = {"measures": (_OPTSTR, None), "measures_id_col": (_STR, "source")}
SCHEMAS = {
    "pwave_baseline": {**_TABLES, **_MEAS, "measures": (_STR, ...), "outcome": (_STR, "AF"),
                       "features": (_LIST, _PWI), "fit_on": (_LIST, ["train"]), "l2": (_NUM, 1e-3),
                       "amplitude_reference": (_STR, "isoelectric")},
    "af_from_markers": {**_TABLES, **_MEAS, "predictions": (_STR, ...), "outcome": (_STR, "AF"),
                        "markers": (_LIST, _MARKERS), "clinical": (_LIST, ["age", "sex"]),
                        "pwave_features": (_LIST, _PWI), "baseline_score": (_OPTSTR, None),
                        "fit_on": (_LIST, ["val"]), "l2": (_NUM, 1e-3),
                        "amplitude_reference": (_STR, "isoelectric")},
    "lvh": {**_TABLES, **_MEAS, "predictions": (_STR, ...), "pred_col": (_STR, "ilvm_pred"),
            "true_col": (_STR, "ilvm"), "sex_col": (_STR, "is_male"), "lvh_col": (_OPTSTR, None),
            "kind": (_STR, "indexed"), "units": (_STR, "g/m²"), "train_prevalence": (_NUM, None),
            "female_add_mv": (_NUM, 0.6)},
    "ccta_cv": {"config": (_STR, ...), "set": (_LIST, []), "folds": (_INT, 5), "subgroup": (_OPTSTR, None),
                "time_col": (_OPTSTR, None), "event_col": (_OPTSTR, None), "risk": (_STR, "max"),
                "n_groups": (_INT, 3), "horizons": (_LIST, None)},
}
_PATH_KEYS = ("labels", "measures", "predictions", "config")


def add_parser(sub):
    p = sub.add_parser("study", help="run a seed-study analysis (P-wave baseline, AF from markers, LVH, "
                                     "CCTA CV)", description=__doc__)
    p.add_argument("name", choices=STUDIES, metavar="NAME", help=" | ".join(STUDIES))
    p.add_argument("--config", required=True, metavar="CONFIG.yaml", help="study config (configs/studies/)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (YAML value), e.g. --set n_boot=200")
    return p


# --------------------------------------------------------------------------- config
def load_study_config(name, path, overrides=()) -> dict:
    """Read, override and validate a study config; paths resolved against the file."""
    from ecgcore._yamlio import load_mapping
    from ecgcore.errors import ConfigError
    from ecgcore.models.train.config import apply_overrides
    if name not in SCHEMAS:
        raise ConfigError(f"unknown study {name!r}; choose one of {', '.join(STUDIES)}")
    raw = load_mapping(path, "study config")
    raw = apply_overrides(raw, overrides)
    if raw.get("study") not in (None, name):     # a config for another study: say so first
        raise ConfigError(f"this config is for study {raw['study']!r}, not {name!r}", path)
    schema = {**_COMMON, **SCHEMAS[name]}
    cfg = {}
    for key, val in raw.items():
        if key not in schema:
            raise ConfigError(f"unknown key {key!r} for study {name!r} (known: {', '.join(sorted(schema))})",
                              path)
        cfg[key] = _check(key, val, schema[key][0], path)
    for key, (kind, default) in schema.items():
        if key not in cfg:
            if default is ...:
                raise ConfigError(f"missing required key {key!r} for study {name!r}", path)
            cfg[key] = list(default) if isinstance(default, list) else default
    cfg["study"] = name
    base = os.path.dirname(os.path.abspath(path))
    for key in _PATH_KEYS:
        v = cfg.get(key)
        if v and not os.path.isabs(v):
            cfg[key] = os.path.join(base, v)
    if cfg["n_boot"] < 1:   # every study reports bootstrap CIs: 0 resamples is not "no CIs"
        raise ConfigError(f"n_boot must be >= 1, got {cfg['n_boot']}", path)
    for v in cfg["decision_thresholds"]:
        if not isinstance(v, (int, float)) or not 0 < v < 1:
            raise ConfigError(f"decision_thresholds: {v!r} is not a probability strictly between 0 and 1",
                              path)
    return cfg


def _check(key, val, kind, path):
    from ecgcore.errors import ConfigError

    def bad(what):
        return ConfigError(f"key {key!r}: expected {what}, got {type(val).__name__} {val!r}", path)
    if kind == _STR:
        if not isinstance(val, str) or not val:
            raise bad("a string")
    elif kind == _OPTSTR:
        if val is not None and not isinstance(val, str):
            raise bad("a string or null")
    elif kind == _LIST:
        if val is not None and not isinstance(val, list):
            raise bad("a list")
    elif kind == _INT:
        if isinstance(val, bool) or not isinstance(val, int):
            raise bad("an integer")
    elif kind == _NUM:
        if val is not None and (isinstance(val, bool) or not isinstance(val, (int, float))):
            raise bad("a number")
        val = None if val is None else float(val)
    elif kind == _BOOL:
        if not isinstance(val, bool):
            raise bad("true or false")
    return val


# --------------------------------------------------------------------------- tables
def _read_csv(path, what, id_col=None):
    import pandas as pd
    from ecgcore.errors import ConfigError
    try:
        df = pd.read_csv(path, dtype={id_col: str} if id_col else None, keep_default_na=True)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} CSV: {exc.strerror or exc}", path) from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise ConfigError(f"not a readable {what} CSV: {exc}", path) from None
    df.columns = [str(c).strip() for c in df.columns]
    if id_col is not None:
        _require(df, [id_col], what, path)
        df[id_col] = df[id_col].astype(str).str.strip()
    return df


def _require(df, cols, what, path, why=""):
    from ecgcore.errors import ConfigError
    for c in cols:
        if c not in df.columns:
            raise ConfigError(f"{what} CSV has no column {c!r}{why} (columns: {', '.join(map(str, df.columns))})",
                              path)


def _record_key(v) -> str:
    """A record id from a path as ``ecgcore measure`` writes it: ``exam_id`` of ``file::exam_id``,
    else the file name without its extension."""
    s = str(v).strip()
    if "::" in s:
        return s.rsplit("::", 1)[1]
    base = os.path.basename(s)
    return base.rsplit(".", 1)[0] if "." in base else base


def _merge(left, right, on, what_right, path_right):
    """Left join on ``on``; a column in both keeps the left value where present, else the right."""
    from ecgcore.errors import ConfigError
    dup = right[on][right[on].duplicated()]
    if len(dup):
        raise ConfigError(f"{what_right} CSV: record {dup.iloc[0]!r} appears more than once", path_right)
    m = left.merge(right, on=on, how="left", suffixes=("", "__r"), indicator=True)
    if not (m["_merge"] == "both").any():
        raise ConfigError(f"{what_right} CSV: no record id matches the labels (column {on!r}; labels ids "
                          f"look like {list(left[on][:3])}, {what_right} ids like {list(right[on][:3])})",
                          path_right)
    for c in [c for c in m.columns if c.endswith("__r")]:
        base = c[:-3]
        m[base] = m[base].where(m[base].notna(), m[c])
        m = m.drop(columns=c)
    return m.drop(columns="_merge")


def _attach_measures(cfg, table, cols):
    """Join the measures CSV (``ecgcore measure`` output) onto the labels by record id."""
    meas = _read_csv(cfg["measures"], "measures")
    _require(meas, [cfg["measures_id_col"]], "measures", cfg["measures"])
    _require(meas, cols, "measures", cfg["measures"])
    raw = meas[cfg["measures_id_col"]].astype(str).str.strip()
    ids = set(table[cfg["id_col"]])
    # measures rows carry file paths by default: match them by file stem (or container exam id)
    meas[cfg["id_col"]] = raw if raw.isin(ids).mean() >= 0.5 else raw.map(_record_key)
    keep = [cfg["id_col"]] + [c for c in cols if c != cfg["id_col"]]
    return _merge(table, meas[keep], cfg["id_col"], "measures", cfg["measures"])


def _base_table(cfg, predictions=False):
    lab = _read_csv(cfg["labels"], "labels", cfg["id_col"])
    need = [cfg["split_col"]] + ([cfg["patient_col"]] if cfg["patient_col"] else [])
    if predictions:
        pred = _read_csv(cfg["predictions"], "predictions", cfg["id_col"])
        lab = _merge(lab, pred, cfg["id_col"], "predictions", cfg["predictions"])
    _require(lab, need, "labels", cfg["labels"])
    lab[cfg["split_col"]] = lab[cfg["split_col"]].astype(str).str.strip().str.lower()
    return lab


# --------------------------------------------------------------------------- studies
def _pwave_features(cfg, table, features):
    """P-wave feature columns from the measures CSV, encoded like ``pwave_feature_table``."""
    from ecgcore.models.studies import pwave_feature_table
    src = ("p_amplitude_ii_onset_uv" if cfg["amplitude_reference"] == "onset" else None)
    cols = [src if (f == "p_amplitude_ii_uv" and src) else f for f in features]
    t = _attach_measures(cfg, table, cols)
    enc = pwave_feature_table(t[cols].copy(), indices=features,
                              amplitude_reference=cfg["amplitude_reference"], ids=list(t[cfg["id_col"]]))
    for f in features:
        t[f] = enc[f].to_numpy()
    return t


def _run_pwave(cfg, out):
    from ecgcore.models.studies import pwave_baseline
    from ecgcore.errors import ConfigError
    if cfg["amplitude_reference"] not in ("isoelectric", "onset"):
        raise ConfigError(f"amplitude_reference must be 'isoelectric' or 'onset', not {cfg['amplitude_reference']!r}")
    t = _base_table(cfg)
    _require(t, [cfg["outcome"]], "labels", cfg["labels"])
    t = _pwave_features(cfg, t, cfg["features"])
    res = pwave_baseline(t, cfg["outcome"], cfg["features"], fit_on=cfg["fit_on"], split_col=cfg["split_col"],
                         groups=cfg["patient_col"], l2=cfg["l2"], n_boot=cfg["n_boot"], seed=cfg["seed"],
                         out_dir=out, figures=cfg["figures"], decision_thresholds=cfg["decision_thresholds"])
    res.pop("risk_model", None)
    table = res.pop("table")
    rows = _coef_rows("pwi", res["model"])
    return res, table, rows, {"pwi": "pwi_prob"}


def _run_af(cfg, out):
    from ecgcore.models.studies import af_from_markers
    t = _base_table(cfg, predictions=True)
    src = cfg["labels"] + " + " + cfg["predictions"]
    _require(t, [cfg["outcome"]] + cfg["markers"] + cfg["clinical"], "labels/predictions", src)
    if cfg["baseline_score"] is not None:
        if cfg["measures"] is not None:
            t = _pwave_features(cfg, t, cfg["pwave_features"])
        _require(t, [cfg["baseline_score"]], "labels/predictions", src, " (baseline_score)")
        baseline = cfg["baseline_score"]
    else:
        from ecgcore.errors import ConfigError
        if cfg["measures"] is None:
            raise ConfigError("af_from_markers needs 'measures' (an 'ecgcore measure' CSV for the P-wave "
                              "baseline) or 'baseline_score' (a score column)")
        t = _pwave_features(cfg, t, cfg["pwave_features"])
        baseline = cfg["pwave_features"]
    res = af_from_markers(t, cfg["outcome"], markers=cfg["markers"], clinical=cfg["clinical"], baseline=baseline,
                          fit_on=cfg["fit_on"], split_col=cfg["split_col"], groups=cfg["patient_col"],
                          l2=cfg["l2"], n_boot=cfg["n_boot"], seed=cfg["seed"], out_dir=out,
                          figures=cfg["figures"], decision_thresholds=cfg["decision_thresholds"])
    table = res.pop("table")
    rows = []
    for name, summ in res["models"].items():
        rows += _coef_rows(name, summ)
    for pair, d in res["delong"].items():
        if isinstance(d, dict):
            rows.append(_row(f"delong_{pair}", "auc_diff", d["diff"], d["ci_low"], d["ci_high"], res["delong"]["n"]))
            rows.append(_row(f"delong_{pair}", "p_value", d["p_value"], n=res["delong"]["n"]))
    scores = {k: f"{k}_prob" for k in ("clinical", "pwi", "markers") if f"{k}_prob" in table.columns}
    return res, table, rows, scores


def _run_lvh(cfg, out):
    import numpy as np
    from ecgcore.delineation.measures import LVH_VOLTAGE, lvh_voltage_criteria
    from ecgcore.errors import ConfigError
    from ecgcore.models.studies import lvh_study
    if cfg["kind"] not in ("indexed", "mass"):
        raise ConfigError(f"kind must be 'indexed' (iLVM, g/m²) or 'mass' (LVM, g), not {cfg['kind']!r}")
    t = _base_table(cfg, predictions=True)
    src = cfg["labels"] + " + " + cfg["predictions"]
    _require(t, [cfg["true_col"], cfg["pred_col"], cfg["sex_col"]], "labels/predictions", src)
    if cfg["lvh_col"]:
        _require(t, [cfg["lvh_col"]], "labels/predictions", src)
    baselines = {}
    if cfg["measures"] is not None:
        vcols = ["sokolow_lyon_mv", "cornell_voltage_mv", "qrs_duration_ms"]
        t = _attach_measures(cfg, t, vcols)
        crit = lvh_voltage_criteria(t, t[cfg["sex_col"]].to_numpy(np.float64),
                                    female_add_mv=cfg["female_add_mv"])
        # continuous comparator scores (LVH when >= the threshold): the measures themselves, with
        # Cornell voltage divided by its sex-specific threshold and the sex-adjusted Cornell product
        t["sokolow_lyon_mv"] = t["sokolow_lyon_mv"].astype(float)
        t["cornell_voltage_ratio"] = crit["cornell_voltage_ratio"]
        t["cornell_product_mvms"] = crit["cornell_product_mvms"]
        for k in ("sokolow_lyon_lvh", "cornell_voltage_lvh", "cornell_product_lvh", "any_voltage_lvh"):
            t[k] = crit[k]
        baselines = {"sokolow_lyon": ("sokolow_lyon_mv", LVH_VOLTAGE["sokolow_lyon_mv"]),
                     # the Cornell voltage criterion is strict (> threshold); a ratio of exactly 1 is
                     # not LVH, so the cut sits just above 1
                     "cornell_voltage": ("cornell_voltage_ratio", float(np.nextafter(1.0, 2.0))),
                     "cornell_product": ("cornell_product_mvms", LVH_VOLTAGE["cornell_product_mvms"])}
    res = lvh_study(t, true_col=cfg["true_col"], pred_col=cfg["pred_col"], sex_col=cfg["sex_col"],
                    lvh_col=cfg["lvh_col"], kind=cfg["kind"], split_col=cfg["split_col"],
                    groups=cfg["patient_col"], train_prevalence=cfg["train_prevalence"], n_boot=cfg["n_boot"],
                    seed=cfg["seed"], out_dir=out, figures=cfg["figures"], units=cfg["units"],
                    baselines=baselines, decision_thresholds=cfg["decision_thresholds"])
    table = res.pop("table")
    rows = [_row("lvh_lr_model", k, v, n=res["lvh_lr"]["n_fit"]) for k, v in res["lvh_lr"].items()
            if k in ("coef_is_male", "coef_mass", "intercept")]
    for b, d in res["delong_vs_baselines"].items():
        if "diff" in d:
            rows.append(_row(f"delong_lvh_lr_vs_{b}", "auc_diff", d["diff"], d["ci_low"], d["ci_high"], d["n"]))
            rows.append(_row(f"delong_lvh_lr_vs_{b}", "p_value", d["p_value"], n=d["n"]))
    res["voltage_criteria"] = {"thresholds": LVH_VOLTAGE, "female_add_mv": cfg["female_add_mv"]} if baselines else None
    return res, table, rows, {"lvh_lr": "lvh_proba_lr"}


def _run_ccta(cfg, out):
    from ecgcore.models.studies import run_cv
    from ecgcore.models.train import load_config
    tcfg = load_config(cfg["config"], cfg["set"])
    if cfg["n_boot"] is not None:
        tcfg["evaluate"]["n_boot"] = cfg["n_boot"]
    res = run_cv(tcfg, out, folds=cfg["folds"], subgroup=cfg["subgroup"], time_col=cfg["time_col"],
                 event_col=cfg["event_col"], risk=cfg["risk"], n_groups=cfg["n_groups"], horizons=cfg["horizons"],
                 n_boot=cfg["n_boot"], figures=cfg["figures"], decision_thresholds=cfg["decision_thresholds"])
    rows = []
    for f in res["folds"]:
        rows.append(_row("cv", "best_epoch", f["best_epoch"], subgroup=f"fold={f['fold']}"))
        rows.append(_row("cv", f"best_{f['monitor']}_inner_val", f["best_value"], subgroup=f"fold={f['fold']}"))
    ev = res.get("evaluation") or {}
    if ev.get("macro_auroc") is not None:
        rows.append(_row("cv", "macro_auroc_oof", ev["macro_auroc"], n=res["n_oof"]))
    return res, None, rows, {}


# --------------------------------------------------------------------------- outputs
def _row(task, metric, value, lo=None, hi=None, n=None, subgroup="all"):
    return {"task": task, "metric": metric, "value": value, "ci_low": lo, "ci_high": hi, "n": n,
            "subgroup": subgroup}


def _coef_rows(model, summary):
    out = []
    for name, c in summary["coefficients"].items():
        se = c.get("se")
        lo, hi = (c["coef"] - 1.96 * se, c["coef"] + 1.96 * se) if se is not None and se == se else (None, None)
        out.append(_row(f"model_{model}", f"coef_{name}", c["coef"], lo, hi, summary.get("n_fit")))
    return out


def _write_outputs(cfg, out, res, table, rows, scores):
    """metrics.json (whole result), metrics.csv (evaluation rows + study rows), table.csv, decision curve."""
    import numpy as np
    from ecgcore.stats.report import CSV_COLUMNS, json_safe
    eval_csv = os.path.join(out, "evaluation", "metrics.csv") if cfg["study"] == "ccta_cv" \
        else os.path.join(out, "metrics.csv")
    ev_rows = []
    if os.path.exists(eval_csv):
        with open(eval_csv, newline="") as f:
            ev_rows = list(csv.DictReader(f))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in ev_rows + json_safe(rows):
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_COLUMNS})
    with atomic_open(os.path.join(out, "metrics.csv"), "w", newline="", encoding="utf-8") as f:
        f.write(buf.getvalue())
    files = ["metrics.json", "metrics.csv"]
    if table is not None:
        with atomic_open(os.path.join(out, "table.csv"), "w", newline="") as f:
            table.to_csv(f, index=False)
        files.append("table.csv")
    # one decision curve with every model of the study, on the same test cases
    if cfg["figures"] and scores and table is not None:
        y_col = {"lvh": "lvh_true"}.get(cfg["study"], cfg.get("outcome"))
        s = table[cfg["split_col"]].astype(str).str.lower().to_numpy()
        ok = s == "test"
        cols = [y_col] + list(scores.values())
        for c in cols:
            ok &= np.isfinite(table[c].to_numpy(np.float64))
        y = table[y_col].to_numpy(np.float64)[ok]
        if ok.sum() >= 3 and 0 < y.sum() < y.size:
            from ecgcore.stats.figures import decision_curve_figure, save_figure
            fig = decision_curve_figure(y, {k: table[c].to_numpy(np.float64)[ok] for k, c in scores.items()},
                                        title=f"{cfg['study']}: decision curves (test, n = {int(ok.sum())})")
            save_figure(fig, os.path.join(out, "decision_curves.png"))
    files += sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs
                    if f.endswith(".png"))
    summary = {"study": cfg["study"], "config": {k: v for k, v in cfg.items()}, "result": res,
               "files": sorted(set(files))}
    with atomic_open(os.path.join(out, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(json_safe(summary), f, indent=2, allow_nan=False, default=str)
    return summary


def run_study(name, config, out, overrides=()) -> dict:
    """Library form of the command: run study ``name`` with a config file; returns the summary."""
    cfg = load_study_config(name, config, overrides)
    os.makedirs(out, exist_ok=True)
    runner = {"pwave_baseline": _run_pwave, "af_from_markers": _run_af, "lvh": _run_lvh,
              "ccta_cv": _run_ccta}[name]
    res, table, rows, scores = runner(cfg, out)
    return _write_outputs(cfg, out, res, table, rows, scores)


def run(args) -> int:
    from ecgcore.errors import ECGError
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        print(f"ecgcore study {args.name}: --out {args.out}: exists and is not a directory", file=sys.stderr)
        return 2
    try:
        summary = run_study(args.name, args.config, args.out, args.overrides)
    except ECGError as exc:          # config, missing column, unusable data: all named in the message
        print(f"ecgcore study {args.name}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:           # the output folder cannot be made or written
        where = exc.filename if exc.filename is not None else args.out
        print(f"ecgcore study {args.name}: cannot write {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"ecgcore study {args.name}: results in {os.path.join(args.out, 'metrics.json')} "
          f"({len(summary['files'])} files)", file=sys.stderr)
    return 0
