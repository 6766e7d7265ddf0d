"""AF from predicted atrial CMR markers with age and sex, compared with the P-wave baseline.

DL-AtCM (facts/dl_atcm.md §7) feeds the four predicted LA indices (LA_max,
LA_min, LAEF, LA_LV_ratio; the AC_CMR model's outputs) into a multivariable
model with age and sex ("sparse" setting) and compares it with clinical-only
and P-wave-index models. Here all models are logistic and fitted on the
**same rows**; all are scored on the same test cases, and the markers model is
compared with the P-wave baseline (and the clinical-only model) by DeLong's
test for paired AUROCs.

Which rows to fit on: the engine's ``predictions.csv`` holds *validation and
test* predictions of the marker model. Its training-split predictions, where
they exist, are in-sample (over-fitted) and would bias the downstream
coefficients, so the default is ``fit_on=("val",)``: the downstream model
learns from marker predictions of ECGs the marker model never trained on.
"""

from __future__ import annotations

import numpy as np

from ecgcore.stats import EvaluationError

from .features import PWAVE_INDICES
from .scoring import evaluate_scores, fit_and_score

__all__ = ["MARKERS", "af_from_markers"]

#: AC_CMR output order (facts/dl_atcm.md §4)
MARKERS = ("LA_max", "LA_min", "LAEF", "LA_LV_ratio")


def af_from_markers(table, outcome: str = "AF", *, markers=None, clinical=("age", "sex"),
                    baseline=PWAVE_INDICES, fit_on=("val",), split_col: str = "split",
                    groups: str | None = None, l2: float = 1e-3, n_boot: int = 2000, seed: int = 0,
                    out_dir=None, figures: bool = False, decision_thresholds=None) -> dict:
    """Fit clinical, P-wave and markers logistic models on ``fit_on`` rows; compare on test rows.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per ECG: predicted markers (default columns ``<marker>_pred``
        as the engine's predictions.csv names them), ``clinical`` columns
        (sex as 0/1), the P-wave index columns (or a precomputed score column,
        see ``baseline``), ``outcome`` and ``split_col``.
    markers : sequence of str, optional
        Predicted-marker columns (default ``[m + "_pred" for m in MARKERS]``).
    baseline : sequence of str or str
        P-wave index columns to fit the baseline on, or the name of a score
        column already fitted elsewhere (e.g. :func:`pwave_baseline`'s
        ``pwi_prob``).

    Returns
    -------
    dict
        ``models`` (coefficient summaries), ``metrics`` (per model:
        ``clinical``, ``pwi``, ``markers``; DeLong of each against ``pwi``),
        ``delong`` (markers vs pwi, markers vs clinical, on the same test
        cases), ``table`` (with ``clinical_prob``, ``pwi_prob``,
        ``markers_prob``).
    """
    from ecgcore import stats
    markers = [m + "_pred" for m in MARKERS] if markers is None else list(markers)
    clinical = list(clinical)
    table = table.copy()
    summaries = {}
    kw = dict(fit_on=fit_on, split_col=split_col, l2=l2)
    if clinical:
        m, table["clinical_prob"] = fit_and_score(table, outcome, clinical, **kw)
        summaries["clinical"] = m.summary()
    if isinstance(baseline, str):
        if baseline not in table.columns:
            raise EvaluationError(f"baseline score column {baseline!r} not in the table")
        table["pwi_prob"] = table[baseline].to_numpy(np.float64)
    else:
        m, table["pwi_prob"] = fit_and_score(table, outcome, list(baseline), **kw)
        summaries["pwi"] = m.summary()
    m, table["markers_prob"] = fit_and_score(table, outcome, markers + clinical, **kw)
    summaries["markers"] = m.summary()
    scores = {"pwi": "pwi_prob", "markers": "markers_prob"}
    if clinical:
        scores = {"clinical": "clinical_prob", **scores}
    metrics = evaluate_scores(table, outcome, scores, reference="pwi", split_col=split_col,
                              groups=groups, n_boot=n_boot, seed=seed, out_dir=out_dir, figures=figures,
                              decision_thresholds=decision_thresholds)
    # the same common test cases evaluate_scores used
    s = table[split_col].astype(str).str.lower().to_numpy()
    ok = s == "test"
    for c in [outcome] + list(scores.values()):
        ok &= np.isfinite(table[c].to_numpy(np.float64))
    y = table[outcome].to_numpy(np.float64)[ok]
    delong = {"n": int(ok.sum())}
    pairs = [("markers", "pwi")] + ([("markers", "clinical"), ("pwi", "clinical")] if clinical else [])
    for a, b in pairs:
        d = stats.delong_test(y, table[scores[a]].to_numpy(np.float64)[ok],
                              table[scores[b]].to_numpy(np.float64)[ok])
        delong[f"{a}_vs_{b}"] = {k: v for k, v in d.as_dict().items() if k != "cov"}
    return {"models": summaries, "metrics": metrics, "delong": delong, "fit_on": list(fit_on),
            "markers": markers, "clinical": clinical, "table": table}
