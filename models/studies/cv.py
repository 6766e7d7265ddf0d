"""Grouped k-fold cross-validation with the training engine, pooled out-of-fold evaluation (CCTA).

:func:`run_cv` trains fold k of a config with ``data.split.method: kfold``:
the engine holds fold k out as the *test* fold and splits the other
patients into train and an inner, patient-grouped **validation** split, on
which the best epoch and the decision thresholds are chosen. The held-out
fold is never looked at during training (the published CCTA code selected the
epoch on the reported fold; facts/ecgfounder_ccta.md §3, bug 1). The test-fold
predictions of every fold are pooled into ``oof_predictions.csv`` (each
record exactly once) and evaluated with ``ecgcore.stats``:

* AUROC/AUPRC per task with patient-level bootstrap CIs, thresholds chosen on
  the pooled inner-validation predictions, macro-AUROC;
* the same metrics in a subgroup given by a boolean labels column (e.g. the
  normal-ECG subgroup);
* risk stratification: tertiles of the predicted risk chosen on the
  validation predictions, Kaplan-Meier cumulative incidence per tertile and a
  log-rank test (real KM, not the crude proportions the CCTA notebook
  labelled as KM; bug 6).
"""

from __future__ import annotations

import copy
import csv
import json
import os

import numpy as np

from ecgcore._atomic import atomic_open
from ecgcore.errors import ConfigError
from ecgcore.stats import EvaluationError

__all__ = ["run_cv", "evaluate_cv", "read_predictions"]


def read_predictions(path):
    """An engine ``predictions.csv`` as a pandas DataFrame (empty cells -> NaN)."""
    import pandas as pd
    try:
        return pd.read_csv(path, dtype={"record_id": str, "patient_id": str, "split": str})
    except OSError as exc:
        raise ConfigError(f"cannot read predictions: {exc.strerror or exc}", str(path)) from None


def run_cv(config: dict, out_dir, folds: int = 5, *, progress: bool = False, evaluate: bool = True,
           subgroup: str | None = None, time_col: str | None = None, event_col: str | None = None,
           risk: str = "max", n_groups: int = 3, horizons=None, n_boot: int | None = None,
           figures: bool = False, decision_thresholds=None) -> dict:
    """Train every fold of a validated config and evaluate the pooled out-of-fold predictions.

    Parameters
    ----------
    config : dict
        A validated config (:func:`ecgcore.models.train.load_config`); its
        ``data.split`` is forced to ``kfold`` with ``folds`` folds (seed,
        stratification and ``val_fraction`` are kept).
    out_dir : path
        ``fold_k/`` run directories, ``oof_predictions.csv``,
        ``val_predictions.csv``, ``cv_metrics.json`` and, with ``evaluate``,
        ``evaluation/`` (metrics.json, metrics.csv, figures).
    subgroup, time_col, event_col, risk, n_groups, horizons, n_boot, figures :
        See :func:`evaluate_cv`.

    Returns
    -------
    dict
        Per-fold summaries (best epoch chosen on the inner validation split,
        split sizes), ``n_oof`` and, with ``evaluate``, the evaluation.
    """
    from ecgcore.models.train import train
    import pandas as pd
    if folds < 2:
        raise ConfigError(f"folds: need at least 2, got {folds}")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    oof, val, per_fold = [], [], []
    for k in range(folds):
        cfg = copy.deepcopy(config)
        cfg["data"]["split"].update({"method": "kfold", "folds": int(folds), "fold": k})
        cfg["name"] = f"{config['name']}_fold{k}"
        # the config is already validated; only validated fields change here (validate() is not
        # re-run: it refuses the None defaults it filled in itself, e.g. tasks[].column)
        run = os.path.join(out_dir, f"fold_{k}")
        m = train(cfg, run, progress=progress)
        pred = read_predictions(os.path.join(run, "predictions.csv"))
        pred.insert(0, "fold", k)
        oof.append(pred[pred["split"] == "test"])
        val.append(pred[pred["split"] == "val"])
        per_fold.append({"fold": k, "best_epoch": m["best_epoch"], "best_value": m["best_value"],
                         "monitor": m["monitor"], "selected_on": "inner validation split",
                         "splits": m["splits"], "thresholds": m["thresholds"],
                         "test": m.get("test"), "run": run})
    oof = pd.concat(oof, ignore_index=True)
    val = pd.concat(val, ignore_index=True)
    dup = oof["record_id"][oof["record_id"].duplicated()]
    if len(dup):
        raise EvaluationError(f"record {dup.iloc[0]!r} is in more than one test fold")
    pf = oof.groupby("patient_id")["fold"].nunique()
    if (pf > 1).any():
        raise EvaluationError(f"patient {pf[pf > 1].index[0]!r} is in more than one test fold")
    for name, frame in (("oof_predictions.csv", oof), ("val_predictions.csv", val)):
        with atomic_open(os.path.join(out_dir, name), "w", newline="") as f:
            frame.to_csv(f, index=False)
    result = {"folds": per_fold, "n_oof": int(len(oof)), "n_val_rows": int(len(val))}
    if evaluate:
        tasks = [t for t in config["tasks"] if t["type"] in ("binary", "regression")]
        labels = config["data"]["labels"]
        result["evaluation"] = evaluate_cv(
            oof, val, tasks, labels_csv=labels, id_col=config["data"]["id_col"], subgroup=subgroup,
            time_col=time_col, event_col=event_col, risk=risk, n_groups=n_groups, horizons=horizons,
            n_boot=config["evaluate"]["n_boot"] if n_boot is None else n_boot, seed=config["seed"],
            out_dir=os.path.join(out_dir, "evaluation"), figures=figures,
            decision_thresholds=decision_thresholds)
    from ecgcore.stats.report import json_safe
    with atomic_open(os.path.join(out_dir, "cv_metrics.json"), "w") as f:   # NaN as null: strict JSON
        json.dump(json_safe(result), f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o),
                  allow_nan=False)
    return result


def _label_columns(path, id_col, columns) -> dict:
    """record id -> {column: raw string} for the requested columns of a labels CSV."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            for c in [id_col] + list(columns):
                if c not in fields:
                    raise ConfigError(f"labels CSV has no column {c!r} (columns: {', '.join(fields)})", path)
            return {(r[id_col] or "").strip(): {c: (r[c] or "").strip() for c in columns} for r in reader}
    except OSError as exc:
        raise ConfigError(f"cannot read labels: {exc.strerror or exc}", path) from None


def _boolish(v: str) -> str:
    low = v.strip().lower()
    if low in ("1", "1.0", "true", "yes", "y", "t"):
        return "True"
    if low in ("0", "0.0", "false", "no", "n", "f"):
        return "False"
    return "" if low in ("", "nan", "na", "none") else v


def _num(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        return float("nan")


def evaluate_cv(oof, val, tasks, *, labels_csv=None, id_col: str = "record_id", subgroup=None,
                time_col=None, event_col=None, risk: str = "max", n_groups: int = 3, horizons=None,
                n_boot: int = 1000, seed: int = 0, out_dir=None, figures: bool = False,
                decision_thresholds=None) -> dict:
    """Evaluate pooled out-of-fold predictions (test rows) with thresholds from inner-validation rows.

    Parameters
    ----------
    oof, val : pandas.DataFrame
        Engine predictions (``record_id``, ``patient_id``, ``<task>_true``,
        ``<task>_pred``) of the held-out folds and of the inner validation
        splits (a record may appear in several folds' validation splits).
    tasks : list of task dicts (``name``, ``type``)
    labels_csv : path, optional
        Needed for ``subgroup`` / ``time_col`` / ``event_col``.
    subgroup : str, optional
        A boolean labels column (e.g. ``normal_ecg``): every binary metric is
        also reported within it (``subgroups`` tables, rows
        ``subgroup=<col>=True``) and the macro-AUROC inside it.
    time_col, event_col : str, optional
        Follow-up time and event (0/1) for risk stratification.
    risk : "max" or a task name
        The risk score stratified: the largest predicted probability over the
        binary tasks (any vessel), or one task's probability.
    n_groups : int
        Risk groups: quantiles of the **validation** risk (tertiles by default).
    decision_thresholds : sequence of float, optional
        Threshold probabilities at which the net benefit of each binary task
        is reported (decision-curve analysis; the CCTA analysis used 0.15
        for RCA/LAD/LCx and 0.01 for LM).
    """
    import pandas as pd
    from ecgcore import stats
    t = pd.concat([oof.assign(split="test"), val.assign(split="val")], ignore_index=True)
    extra = [c for c in (subgroup, time_col, event_col) if c]
    if extra:
        if labels_csv is None:
            raise ConfigError("a labels CSV is needed for subgroup / time / event columns")
        lab = _label_columns(labels_csv, id_col, extra)
        ids = t["record_id"].astype(str).str.strip()
        for c in extra:
            raw = [lab.get(r, {}).get(c, "") for r in ids]
            if c == subgroup:
                t[c] = [_boolish(v) for v in raw]
            elif c == event_col:   # 0/1 or True/False, yes/no, as ecgcore evaluate reads events
                t[c] = [{"True": 1.0, "False": 0.0}.get(_boolish(v), _num(v)) for v in raw]
            else:
                t[c] = [_num(v) for v in raw]
        for c in (time_col, event_col):
            if c and not np.isfinite(np.asarray(t[c], np.float64)).any():
                raise EvaluationError(f"labels column {c!r} has no numeric value for any evaluated record "
                                      f"(events must be 0/1, true/false or yes/no)")
    binary = [x for x in tasks if x["type"] == "binary"]
    specs = []
    for x in tasks:
        n = x["name"]
        spec = {"name": n, "type": x["type"], "y": f"{n}_true", "p": f"{n}_pred"}
        if x["type"] == "binary":
            spec["threshold_rule"] = x.get("threshold_rule", "youden")
            if x.get("threshold_target") is not None:
                spec["target"] = x["threshold_target"]
            if decision_thresholds:
                spec["decision_thresholds"] = [float(v) for v in decision_thresholds]
        specs.append(spec)
    if time_col and event_col:
        if risk == "max":
            if not binary:
                raise ConfigError("risk 'max' needs binary tasks")
            t["risk_score"] = t[[f"{x['name']}_pred" for x in binary]].max(axis=1, skipna=False)
        else:
            if f"{risk}_pred" not in t.columns:
                raise ConfigError(f"risk: no task named {risk!r}")
            t["risk_score"] = t[f"{risk}_pred"]
        specs.append({"name": "risk_stratification", "type": "survival", "time": time_col,
                      "event": event_col, "p": "risk_score", "n_groups": int(n_groups),
                      "horizons": horizons})
    data = {c: t[c].to_numpy() for c in t.columns}
    res = stats.evaluate_predictions(data, specs, groups="patient_id", out_dir=out_dir, split="split",
                                     subgroups=[subgroup] if subgroup else [], n_boot=n_boot, seed=seed,
                                     figures=figures)
    res.pop("rows", None)
    test = t[t["split"] == "test"]
    res["macro_auroc"] = _macro_auroc(test, binary)
    if subgroup:
        sub = test[test[subgroup] == "True"]
        res["subgroup"] = {"column": subgroup, "n": int(len(sub)), "macro_auroc": _macro_auroc(sub, binary)}
    return res


def _macro_auroc(t, binary) -> float | None:
    """Mean AUROC over the tasks with both classes present (the CCTA selection metric)."""
    from ecgcore import stats
    v = []
    for x in binary:
        y = t[f"{x['name']}_true"].to_numpy(np.float64)
        p = t[f"{x['name']}_pred"].to_numpy(np.float64)
        ok = np.isfinite(y) & np.isfinite(p)
        if len(np.unique(y[ok])) == 2:
            v.append(stats.auroc(y[ok], p[ok]))
    return float(np.mean(v)) if v else None
