"""LVH analyses of the LV-mass study (facts/lvh.md §2, §7): thresholds, iLVM-to-LVH model, metrics.

* Sex-specific LVH thresholds (Petersen et al. 2017, UK Biobank CMR
  reference ranges): LVM >= 141 g (male) / >= 93 g (female); iLVM >= 70 g/m²
  (male) / >= 55 g/m² (female). :func:`lvh_from_mass` turns predicted mass
  into the ``lvh_pred_cutoff`` call.
* The iLVM-to-LVH logistic model: features ``[is_male, predicted (i)LVM]``,
  balanced class weights, scikit-learn's default penalty (C = 1 on raw
  features), fitted on **validation**-split predictions as published, never
  on test; ``lvh_proba_lr`` and its prior-adjusted form.
* :func:`lvh_study`: regression evaluation of (i)LVM on test rows (MAE with a
  patient-level bootstrap CI, RMSE, R², Pearson, Spearman, Bland-Altman) and
  LVH classification metrics of the cutoff rule and of the LR probability,
  thresholds chosen on validation rows (the published Youden threshold was
  picked on the evaluated set; bug 11), via ``ecgcore.stats``.
"""

from __future__ import annotations

import numpy as np

from ecgcore.stats import EvaluationError

from .logistic import LogisticRegression, prior_adjust
from .features import encode_column

__all__ = ["LVH_THRESHOLDS", "lvh_threshold", "lvh_from_mass", "LVHLogistic", "lvh_study"]

#: sex-specific LVH thresholds, g (``mass``) and g/m² (``indexed``), lvh if value >= threshold
LVH_THRESHOLDS = {"mass": {"male": 141.0, "female": 93.0},
                  "indexed": {"male": 70.0, "female": 55.0}}


def _male(is_male):
    m = np.asarray(is_male, np.float64).reshape(-1)
    if not np.all(np.isin(m[np.isfinite(m)], (0.0, 1.0))):
        raise EvaluationError("is_male must be 0/1 (1 = male)")
    return m


def lvh_threshold(is_male, kind: str = "indexed") -> np.ndarray:
    """Per-row LVH threshold (NaN where sex is unknown)."""
    if kind not in LVH_THRESHOLDS:
        raise EvaluationError(f"kind must be 'indexed' (iLVM, g/m²) or 'mass' (LVM, g), not {kind!r}")
    m = _male(is_male)
    t = LVH_THRESHOLDS[kind]
    return np.where(m == 1, t["male"], np.where(m == 0, t["female"], np.nan))


def lvh_from_mass(mass, is_male, kind: str = "indexed") -> np.ndarray:
    """1.0 where ``mass >= threshold(sex)``, 0.0 below, NaN where mass or sex is missing."""
    v = np.asarray(mass, np.float64).reshape(-1)
    thr = lvh_threshold(is_male, kind)
    if len(v) != len(thr):
        raise EvaluationError(f"{len(v)} masses but {len(thr)} sexes")
    out = (v >= thr).astype(np.float64)
    out[~(np.isfinite(v) & np.isfinite(thr))] = np.nan
    return out


class LVHLogistic:
    """The iLVM-to-LVH logistic model: ``P(LVH | is_male, predicted mass)``.

    Defaults reproduce the published model (scikit-learn
    ``LogisticRegression(class_weight='balanced')``: L2 with C = 1 on raw
    features); fit it on validation predictions.
    """

    def __init__(self, l2: float = 1.0, class_weight="balanced", standardize: bool = False):
        self.lr = LogisticRegression(l2=l2, class_weight=class_weight, standardize=standardize)

    def fit(self, pred_mass, is_male, lvh):
        X = np.column_stack([_male(is_male), np.asarray(pred_mass, np.float64)])
        y = np.asarray(lvh, np.float64)
        ok = np.all(np.isfinite(X), 1) & np.isfinite(y)
        self.lr.fit(X[ok], y[ok])
        self.n_fit_ = int(ok.sum())
        return self

    def predict_proba(self, pred_mass, is_male):
        X = np.column_stack([_male(is_male), np.asarray(pred_mass, np.float64)])
        out = np.full(len(X), np.nan)
        ok = np.all(np.isfinite(X), 1)
        out[ok] = self.lr.predict_proba(X[ok])
        return out


def lvh_study(table, *, true_col: str = "ilvm_true", pred_col: str = "ilvm_pred", sex_col: str = "is_m",
              lvh_col: str | None = "lvh_true", kind: str = "indexed", split_col: str = "split",
              groups: str | None = None, train_prevalence: float | None = None, n_boot: int = 5000,
              seed: int = 0, out_dir=None, figures: bool = False, units: str = "g/m²",
              baselines=None, decision_thresholds=None) -> dict:
    """Regression and LVH-classification evaluation of predicted (i)LVM.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per record with ``true_col``, ``pred_col``, ``sex_col`` (1 =
        male), ``split_col`` (``val`` and ``test`` rows; ``train`` rows are
        ignored) and optionally ``lvh_col``; without it (or when it is NaN) LVH
        is derived from the true mass with the same sex-specific thresholds.
    train_prevalence : float, optional
        LVH prevalence of the training split for the prior-adjusted columns
        (as published); default: the validation prevalence (reported).
    baselines : dict name -> (column, threshold), optional
        Comparator scores already in ``table`` (e.g. the ECG voltage criteria
        from ``ecgcore.measure``: Sokolow-Lyon in mV with threshold 3.5). Each
        is evaluated as a binary task at its fixed threshold (LVH when score
        >= threshold; AUROC of the continuous score) on the rows where it is
        measurable, and the LR probability is compared with it by DeLong's
        test on the test rows where both exist (``delong_vs_baselines``).
    decision_thresholds : sequence of float, optional
        Threshold probabilities for net benefit of the LR probability.

    Returns
    -------
    dict
        ``metrics`` (``ecgcore.stats.evaluate_predictions``: task ``mass``
        regression, ``lvh_cutoff`` = predicted mass / sex threshold (the
        cutoff rule is this score at the given threshold 1.0), ``lvh_lr`` the LR
        probability at a validation-chosen threshold), ``lvh_lr`` model
        (coefficients), ``table`` with the published result columns
        ``lvh_pred_cutoff``, ``lvh_proba_lr``, ``lvh_proba_prioradj_lr``.
    """
    from ecgcore import stats
    for c in (true_col, pred_col, sex_col, split_col):
        if c not in table.columns:
            raise EvaluationError(f"table has no column {c!r}")
    t = table.copy()
    s = t[split_col].astype(str).str.lower().to_numpy()
    # through the study tables' encoder: text ('train', 'M') is an EvaluationError naming the column,
    # True/False and empty cells are read as 1/0 and NaN
    male = encode_column(t[sex_col].to_numpy(), sex_col)
    truth = encode_column(t[true_col].to_numpy(), true_col)
    pred = encode_column(t[pred_col].to_numpy(), pred_col)
    lvh = lvh_from_mass(truth, male, kind)
    if lvh_col is not None and lvh_col in t.columns:
        given = encode_column(t[lvh_col].to_numpy(), lvh_col)
        lvh = np.where(np.isfinite(given), given, lvh)
    t["lvh_true"] = lvh
    t["lvh_pred_cutoff"] = lvh_from_mass(pred, male, kind)
    t["lvh_score_cutoff"] = pred / lvh_threshold(male, kind)
    val = s == "val"
    if not (val & np.isfinite(lvh)).any():
        raise EvaluationError("no validation rows: the iLVM-to-LVH model is fitted on validation predictions")
    model = LVHLogistic().fit(pred[val], male[val], lvh[val])
    t["lvh_proba_lr"] = model.predict_proba(pred, male)
    prior, prior_from = train_prevalence, "train"
    if prior is None:
        prior, prior_from = float(np.nanmean(lvh[val])), "val"
    t["lvh_proba_prioradj_lr"] = prior_adjust(t["lvh_proba_lr"].to_numpy(np.float64), prior)
    keep = np.isin(s, ("val", "test"))
    data = {split_col: s[keep], "mass_true": truth[keep], "mass_pred": pred[keep], "lvh_true": lvh[keep],
            "lvh_score_cutoff": t["lvh_score_cutoff"].to_numpy(np.float64)[keep],
            "lvh_proba_lr": t["lvh_proba_lr"].to_numpy(np.float64)[keep]}
    if groups is not None:
        data[groups] = t[groups].astype(str).to_numpy()[keep]
    specs = [{"name": "mass", "type": "regression", "y": "mass_true", "p": "mass_pred", "units": units},
             {"name": "lvh_cutoff", "type": "binary", "y": "lvh_true", "p": "lvh_score_cutoff",
              "threshold": 1.0},
             {"name": "lvh_lr", "type": "binary", "y": "lvh_true", "p": "lvh_proba_lr",
              "threshold_rule": "youden", "compare_to": ["lvh_score_cutoff"]}]
    if decision_thresholds:
        specs[-1]["decision_thresholds"] = [float(v) for v in decision_thresholds]
    baselines = dict(baselines or {})
    for bname, (bcol, bthr) in baselines.items():
        if bcol not in t.columns:
            raise EvaluationError(f"baseline {bname!r}: table has no column {bcol!r}")
        if bname in ("mass", "lvh_cutoff", "lvh_lr"):
            raise EvaluationError(f"baseline name {bname!r} is taken by a built-in task")
        data[f"baseline_{bname}"] = t[bcol].to_numpy(np.float64)[keep]
        specs.append({"name": bname, "type": "binary", "y": "lvh_true", "p": f"baseline_{bname}",
                      "threshold": float(bthr)})
    res = stats.evaluate_predictions(data, specs, groups=groups, out_dir=out_dir, split=split_col,
                                     n_boot=n_boot, seed=seed, figures=figures)
    res.pop("rows", None)
    # LR probability vs each comparator on the same test cases (both measurable)
    dl = {}
    test = s[keep] == "test"
    for bname in baselines:
        b = data[f"baseline_{bname}"]
        ok = test & np.isfinite(b) & np.isfinite(data["lvh_proba_lr"]) & np.isfinite(data["lvh_true"])
        y = data["lvh_true"][ok]
        if ok.sum() < 3 or len(np.unique(y)) < 2:
            dl[bname] = {"n": int(ok.sum()), "error": "fewer than 3 common test rows or one class"}
            continue
        d = stats.delong_test(y, data["lvh_proba_lr"][ok], b[ok])
        dl[bname] = {"n": int(ok.sum()), **{k: v for k, v in d.as_dict().items() if k != "cov"}}
    return {"metrics": res, "thresholds": LVH_THRESHOLDS[kind], "kind": kind,
            "delong_vs_baselines": dl,
            "lvh_lr": {"coef_is_male": float(model.lr.coef_[0]), "coef_mass": float(model.lr.coef_[1]),
                       "intercept": model.lr.intercept_, "n_fit": model.n_fit_, "fit_on": "val"},
            "prior": {"value": prior, "from": prior_from}, "table": t}
