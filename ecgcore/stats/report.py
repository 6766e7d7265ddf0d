"""One call from a predictions table to metrics.json, a tidy CSV and PNG figures.

This is what ``ecgcore evaluate`` calls. The table holds one row per record
(label columns, prediction columns, optionally a patient id, a ``split``
column and subgroup columns). If a split column with validation rows is
present, decision thresholds and risk cut points are chosen on the validation
rows and every reported metric is computed on the test rows; without one,
thresholds must be given in the task spec, otherwise threshold metrics are
reported only under ``oracle_*`` names (chosen and scored on the same data).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os

import numpy as np

from .._atomic import atomic_open
from ._checks import EvaluationError
from .bootstrap import bootstrap_ci
from .calibration import calibration_slope_intercept, expected_calibration_error
from .classification import (Threshold, auroc, average_precision, binary_metrics, brier_score,
                             choose_threshold, f1_score, npv, ppv, sensitivity, specificity)
from .decision import net_benefit, treat_all_net_benefit
from .delong import delong_auc_ci, delong_test
from .regression import bland_altman, mae, mean_error, pearson, pearson_r, r2, rmse, spearman
from .subgroups import subgroup_table
from .survival import incidence_by_group, risk_cut_points

__all__ = ["evaluate_predictions", "CSV_COLUMNS", "json_safe"]

CSV_COLUMNS = ("task", "metric", "value", "ci_low", "ci_high", "n", "subgroup")
_TYPES = ("binary", "regression", "survival")


def _columns(data) -> dict:
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):     # pandas DataFrame
        return {str(c): data[c].to_numpy() for c in data.columns}
    if isinstance(data, dict):
        cols = {str(k): np.asarray(v) for k, v in data.items()}
        lens = {len(v) for v in cols.values()}
        if len(lens) > 1:
            raise EvaluationError(f"columns differ in length: {sorted(lens)}")
        return cols
    raise EvaluationError(f"predictions must be a DataFrame or a dict of columns, got "
                          f"{type(data).__name__}")


def _col(cols, name, task):
    if name not in cols:
        raise EvaluationError(f"task {task!r}: column {name!r} not found; have {sorted(cols)}")
    return cols[name]


def _finite_mask(*arrays):
    m = np.ones(len(arrays[0]), bool)
    for a in arrays:
        if a.dtype.kind in "fc":
            m &= np.isfinite(a)
        elif a.dtype.kind == "O":
            m &= np.array([v is not None and not (isinstance(v, float) and math.isnan(v))
                           for v in a])
    return m


def json_safe(v):
    """``v`` with numpy scalars and arrays as Python values and NaN/inf as None: what strict
    JSON (``allow_nan=False``; jq, JavaScript) accepts."""
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, np.ndarray):
        return json_safe(v.tolist())
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _write_atomic(path, data: bytes):
    with atomic_open(path, "wb") as fh:
        fh.write(data)


class _Rows:
    def __init__(self):
        self.rows = []

    def add(self, task, metric, value, lo=None, hi=None, n=None, subgroup="all"):
        self.rows.append({"task": task, "metric": metric, "value": value,
                          "ci_low": lo, "ci_high": hi, "n": n, "subgroup": subgroup})

    def boot(self, task, metric, res, n, subgroup="all"):
        self.add(task, metric, res.estimate, res.ci_low, res.ci_high, n, subgroup)


def _binary_task(spec, cols, val, test, gid, rows, out, opt, figs):
    name = spec["name"]
    y = _col(cols, spec["y"], name)
    p = _col(cols, spec["p"], name).astype(float)
    keep = _finite_mask(y, p)
    if y.dtype.kind in "fc":
        keep &= np.isfinite(y.astype(float))
    tv, vv = test & keep, val & keep
    yt, pt = y[tv].astype(float), p[tv]
    g = None if gid is None else gid[tv]
    n = int(tv.sum())
    res = {"type": "binary", "n": n, "n_pos": int(np.sum(yt == 1)), "dropped_missing": int((test & ~keep).sum())}
    kw = dict(groups=g, n_boot=opt["n_boot"], seed=opt["seed"], level=opt["level"])
    for mname, fn in (("auroc", auroc), ("auprc", average_precision)):
        r = bootstrap_ci(fn, yt, pt, **kw)
        res[mname] = r.as_dict()
        rows.boot(name, mname, r, n)
    d = delong_auc_ci(yt, pt, level=opt["level"])
    res["auroc_delong"] = d
    rows.add(name, "auroc_delong", d["auc"], d["ci_low"], d["ci_high"], n)
    is_prob = bool(pt.min() >= 0 and pt.max() <= 1)
    if is_prob:
        r = bootstrap_ci(brier_score, yt, pt, **kw)
        res["brier"] = r.as_dict()
        rows.boot(name, "brier", r, n)
        try:
            cal = calibration_slope_intercept(yt, pt)
            cal["ece"] = expected_calibration_error(yt, pt)
        except EvaluationError as exc:
            cal = {"error": str(exc)}
        res["calibration"] = cal
        for k in ("slope", "intercept", "ece"):
            if k in cal:
                rows.add(name, f"calibration_{k}", cal[k], n=n)
        # net benefit at stated threshold probabilities (decision-curve analysis)
        dts = spec.get("decision_thresholds")
        if dts:
            nb = net_benefit(yt, pt, dts)
            ta = treat_all_net_benefit(float(np.mean(yt == 1)), dts)
            res["net_benefit"] = {"threshold": [float(v) for v in dts], "model": nb, "treat_all": ta}
            for v, a, b in zip(dts, nb, ta):
                rows.add(name, f"net_benefit_pt{float(v):g}", a, n=n)
                rows.add(name, f"net_benefit_treat_all_pt{float(v):g}", b, n=n)
    # threshold: validation rows, else given, else oracle only
    prefix = ""
    if spec.get("threshold") is not None:
        thr = Threshold(float(spec["threshold"]), rule="given")
    elif vv.any():
        thr = choose_threshold(y[vv].astype(float), p[vv], spec.get("threshold_rule", "youden"),
                               spec.get("target"))
    else:
        thr = choose_threshold(yt, pt, spec.get("threshold_rule", "youden"), spec.get("target"))
        prefix = "oracle_"
        out["warnings"].append(f"task {name!r}: no validation rows and no given threshold; "
                               "threshold metrics are oracle values chosen on the test rows")
    bm = binary_metrics(yt, pt, thr, oracle=bool(prefix))
    res["threshold"] = {"value": float(thr), "rule": thr.rule, "target": thr.target,
                        "chosen_on": "given" if thr.rule == "given" else
                        ("test (oracle)" if prefix else "validation"), "n_chosen_on": thr.n}
    res["at_threshold"] = bm
    rows.add(name, prefix + "threshold", float(thr), n=thr.n)
    for mname, fn in (("sensitivity", sensitivity), ("specificity", specificity), ("ppv", ppv),
                      ("npv", npv), ("f1", f1_score)):
        r = bootstrap_ci(fn, yt, pt, kwargs={"threshold": float(thr)}, **kw)
        res[prefix + mname] = r.as_dict()
        rows.boot(name, prefix + mname, r, n)
    # paired comparisons with other score columns (DeLong)
    for ref in spec.get("compare_to", ()) or ():
        q = _col(cols, ref, name).astype(float)[tv]
        if not np.all(np.isfinite(q)):
            out["warnings"].append(f"task {name!r}: {ref!r} has missing values; comparison skipped")
            continue
        dt = delong_test(yt, pt, q, level=opt["level"])
        res.setdefault("delong", {})[ref] = dt.as_dict()
        rows.add(name, f"delong_diff_vs_{ref}", dt.diff, dt.ci_low, dt.ci_high, n)
        rows.add(name, f"delong_p_vs_{ref}", dt.p_value, n=n)
    # subgroups
    for sg in opt["subgroups"]:
        lab = _col(cols, sg, name)[tv]
        metrics = {"auroc": auroc, prefix + "sensitivity": functools.partial(sensitivity, threshold=float(thr)),
                   prefix + "specificity": functools.partial(specificity, threshold=float(thr))}
        tab = subgroup_table(metrics, yt, pt, subgroup=lab, groups=g, n_boot=opt["n_boot"],
                             seed=opt["seed"], level=opt["level"], include_all=False)
        for r in tab:
            rows.add(name, r["metric"], r["value"], r["ci_low"], r["ci_high"], r["n"],
                     f"{sg}={r['subgroup']}")
        res.setdefault("subgroups", {})[sg] = tab
    if figs is not None:
        from . import figures as F
        figs[f"roc_{name}.png"] = F.roc_figure(yt, pt, groups=g, seed=opt["seed"], label=name,
                                               auc_ci=(res["auroc"]["ci_low"], res["auroc"]["ci_high"]))
        figs[f"pr_{name}.png"] = F.pr_figure(yt, pt, label=name)
        if is_prob:
            figs[f"calibration_{name}.png"] = F.calibration_figure(yt, pt)
            if 0 < np.sum(yt == 1) < n:
                figs[f"decision_{name}.png"] = F.decision_curve_figure(yt, {name: pt}, title=f"{name}: decision curve")
    return res


def _regression_task(spec, cols, val, test, gid, rows, out, opt, figs):
    name = spec["name"]
    y = _col(cols, spec["y"], name).astype(float)
    p = _col(cols, spec["p"], name).astype(float)
    keep = np.isfinite(y) & np.isfinite(p)
    tv = test & keep
    yt, pt = y[tv], p[tv]
    g = None if gid is None else gid[tv]
    n = int(tv.sum())
    if n < 3:
        raise EvaluationError(f"task {name!r}: fewer than 3 test rows with both values")
    res = {"type": "regression", "n": n, "dropped_missing": int((test & ~keep).sum())}
    kw = dict(groups=g, n_boot=opt["n_boot"], seed=opt["seed"], level=opt["level"])
    for mname, fn in (("mae", mae), ("rmse", rmse), ("mean_error", mean_error), ("r2", r2),
                      ("pearson_r", pearson_r)):
        r = bootstrap_ci(fn, yt, pt, **kw)
        res[mname] = r.as_dict()
        rows.boot(name, mname, r, n)
    pr, pp = pearson(yt, pt)
    sr, sp = spearman(yt, pt)
    res.update(pearson_p=pp, spearman_rho=sr, spearman_p=sp)
    rows.add(name, "pearson_p", pp, n=n)
    rows.add(name, "spearman_rho", sr, n=n)
    rows.add(name, "spearman_p", sp, n=n)
    ba = bland_altman(yt, pt, ci_level=opt["level"])
    res["bland_altman"] = {k: v for k, v in ba.items() if k not in ("mean", "diff")}
    rows.add(name, "ba_bias", ba["bias"], *ba["bias_ci"], n=n)
    rows.add(name, "ba_loa_low", ba["loa_low"], *ba["loa_low_ci"], n=n)
    rows.add(name, "ba_loa_high", ba["loa_high"], *ba["loa_high_ci"], n=n)
    for sg in opt["subgroups"]:
        lab = _col(cols, sg, name)[tv]
        tab = subgroup_table({"mae": mae, "pearson_r": pearson_r}, yt, pt, subgroup=lab, groups=g,
                             n_boot=opt["n_boot"], seed=opt["seed"], level=opt["level"],
                             include_all=False, min_rows=3)
        for r in tab:
            rows.add(name, r["metric"], r["value"], r["ci_low"], r["ci_high"], r["n"],
                     f"{sg}={r['subgroup']}")
        res.setdefault("subgroups", {})[sg] = tab
    if figs is not None:
        from . import figures as F
        figs[f"agreement_{name}.png"] = F.agreement_figure(yt, pt, units=spec.get("units", ""),
                                                           title=name)
    return res


def _survival_task(spec, cols, val, test, gid, rows, out, opt, figs):
    name = spec["name"]
    t = _col(cols, spec["time"], name).astype(float)
    e = _col(cols, spec["event"], name).astype(float)
    p = _col(cols, spec["p"], name).astype(float)
    keep = np.isfinite(t) & np.isfinite(e) & np.isfinite(p)
    tv, vv = test & keep, val & keep
    if spec.get("cuts") is not None:
        cuts, chosen = np.asarray(spec["cuts"], float), "given"
    elif vv.any():
        cuts, chosen = risk_cut_points(p[vv], int(spec.get("n_groups", 3))), "validation quantiles"
    else:
        cuts, chosen = risk_cut_points(p[tv], int(spec.get("n_groups", 3))), "test quantiles"
        out["warnings"].append(f"task {name!r}: no validation rows; risk groups are quantiles of "
                               "the test predictions")
    horizons = spec.get("horizons")
    inc = incidence_by_group(t[tv], e[tv], p[tv], cuts, horizons=horizons, level=opt["level"])
    res = {"type": "survival", "n": int(tv.sum()), "events": int(e[tv].sum()),
           "cuts": cuts.tolist(), "cuts_chosen_on": chosen, "groups": []}
    for grp in inc["groups"]:
        gr = {"label": grp["label"], "n": grp["n"], "events": grp["events"]}
        if "incidence_at" in grp:
            ia = grp["incidence_at"]
            gr["incidence_at"] = {"time": ia["time"], "incidence": ia["incidence"],
                                  "ci_low": ia["ci_low"], "ci_high": ia["ci_high"]}
            for k, h in enumerate(ia["time"]):
                rows.add(name, f"incidence_t{h:g}", ia["incidence"][k], ia["ci_low"][k],
                         ia["ci_high"][k], grp["n"], f"risk={grp['label']}")
        res["groups"].append(gr)
    lr = inc["logrank"]
    if lr is not None:
        res["logrank"] = lr.as_dict()
        rows.add(name, "logrank_chi2", lr.statistic, n=res["n"])
        rows.add(name, "logrank_p", lr.p_value, n=res["n"])
    if figs is not None and any("km" in grp for grp in inc["groups"]):
        from . import figures as F
        figs[f"incidence_{name}.png"] = F.incidence_figure(
            inc, horizon=spec.get("max_time"), time_unit=spec.get("time_unit", "days"), title=name)
    return res


_RUNNERS = {"binary": _binary_task, "regression": _regression_task, "survival": _survival_task}


def evaluate_predictions(data, tasks, groups: str | None = None, out_dir=None, *,
                         split: str = "split", val_label="val", test_label="test",
                         subgroups=(), n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                         figures: bool = True, dpi: int = 150) -> dict:
    """Evaluate prediction columns against labels; write metrics, a tidy CSV and figures.

    Parameters
    ----------
    data : pandas.DataFrame or dict of str -> array_like
        One row per record.
    tasks : list of dict
        Each with ``name`` and ``type``:

        * ``"binary"``: ``y`` (0/1 column), ``p`` (score column); optional
          ``threshold`` (fixed), ``threshold_rule`` (``"youden"``, ``"sensitivity"``,
          ``"specificity"``, ``"f1"``) with ``target``, ``compare_to`` (list of
          score columns for DeLong tests), ``decision_thresholds`` (threshold
          probabilities at which net benefit and treat-all are reported; a
          decision-curve PNG is drawn for probability scores).
        * ``"regression"``: ``y``, ``p``, optional ``units``.
        * ``"survival"``: ``time``, ``event``, ``p`` (predicted risk); optional
          ``cuts`` or ``n_groups`` (quantiles of validation predictions),
          ``horizons``, ``time_unit``, ``max_time``.
    groups : str, optional
        Patient-id column for the cluster bootstrap.
    out_dir : path, optional
        Where ``metrics.json``, ``metrics.csv`` and the PNGs are written (each
        atomically). Nothing is written when None.
    split, val_label, test_label :
        Split column and its labels. Without the column all rows are test rows.
    subgroups : sequence of str
        Columns to stratify by (binary and regression tasks).
    n_boot, seed, level :
        Bootstrap settings (see :func:`ecgcore.stats.bootstrap_ci`).
    figures : bool
        Draw PNG figures (needs matplotlib).

    Returns
    -------
    dict
        The content of ``metrics.json`` plus ``rows`` (the tidy CSV rows) and
        ``files`` (paths written).
    """
    cols = _columns(data)
    if not cols:
        raise EvaluationError("no columns to evaluate")
    nrow = len(next(iter(cols.values())))
    if split in cols:
        s = cols[split].astype(str)
        test, val = s == str(test_label), s == str(val_label)
        if not test.any():
            raise EvaluationError(f"split column {split!r} has no {test_label!r} rows")
    else:
        test, val = np.ones(nrow, bool), np.zeros(nrow, bool)
    gid = None
    if groups is not None:
        gid = _col(cols, groups, "groups")
    if not isinstance(tasks, (list, tuple)) or not tasks:
        raise EvaluationError("tasks must be a non-empty list of task specs")
    opt = {"n_boot": int(n_boot), "seed": seed, "level": float(level), "subgroups": list(subgroups)}
    out = {"n_rows": nrow, "n_test": int(test.sum()), "n_val": int(val.sum()),
           "bootstrap": {"n_boot": int(n_boot), "seed": seed, "level": level,
                         "unit": "patient" if groups else "row", "method": "percentile"},
           "tasks": {}, "warnings": []}
    rows = _Rows()
    figs = {} if figures else None
    names = set()
    for spec in tasks:
        if not isinstance(spec, dict) or "name" not in spec or spec.get("type") not in _TYPES:
            raise EvaluationError(f"bad task spec {spec!r}: needs 'name' and a 'type' in {_TYPES}")
        if spec["name"] in names:
            raise EvaluationError(f"duplicate task name {spec['name']!r}")
        names.add(spec["name"])
        out["tasks"][spec["name"]] = _RUNNERS[spec["type"]](spec, cols, val, test, gid, rows, out,
                                                            opt, figs)
    result = json_safe(out)
    result["rows"] = json_safe(rows.rows)
    result["files"] = []
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        p = os.path.join(out_dir, "metrics.json")
        _write_atomic(p, json.dumps(json_safe(out), indent=2, allow_nan=False).encode())
        result["files"].append(p)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in result["rows"]:
            w.writerow({k: ("" if r[k] is None else r[k]) for k in CSV_COLUMNS})
        p = os.path.join(out_dir, "metrics.csv")
        _write_atomic(p, buf.getvalue().encode())
        result["files"].append(p)
        if figs:
            from .figures import save_figure
            for fname, fig in figs.items():
                result["files"].append(save_figure(fig, os.path.join(out_dir, fname), dpi=dpi))
    return result
