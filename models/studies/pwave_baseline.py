"""The P-wave-index baseline of the atrial-cardiopathy study (DL-AtCM, facts/dl_atcm.md §7, §9).

A logistic model of the outcome (prior or incident AF) on the P-wave indices
from ``ecgcore.measure`` (:data:`~.features.PWAVE_INDICES` by default),
with median imputation and missingness indicators fitted on the training
rows only, evaluated on the test rows (AUROC/AUPRC with patient-level
bootstrap CIs; sensitivity/specificity at a threshold chosen on the
validation rows).

Example::

    from ecgcore.models.studies import pwave_feature_table, pwave_baseline
    feats = pwave_feature_table(paths, ids=record_ids)          # ecgcore.measure on every record
    table = feats.merge(labels, left_on="id", right_on="record_id")   # + AF, split, patient_id
    res = pwave_baseline(table, outcome="AF", groups="patient_id", out_dir="eval/pwi")
    res["metrics"]["tasks"]["pwi"]["auroc"]                      # value, ci_low, ci_high
"""

from __future__ import annotations

from .features import PWAVE_INDICES
from .scoring import evaluate_scores, fit_and_score

__all__ = ["pwave_baseline"]


def pwave_baseline(table, outcome: str = "AF", indices=PWAVE_INDICES, *, fit_on=("train",),
                   split_col: str = "split", groups: str | None = None, l2: float = 1e-3,
                   score_col: str = "pwi_prob", n_boot: int = 2000, seed: int = 0, out_dir=None,
                   figures: bool = False, decision_thresholds=None) -> dict:
    """Fit the P-wave-index logistic model on ``fit_on`` rows and evaluate it on test rows.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per record with the index columns (see
        :func:`~.features.pwave_feature_table`), ``outcome`` (0/1, NaN =
        unknown) and ``split_col``. The table gains the column ``score_col``
        (predicted probability for every row).
    indices : sequence of str
        Feature columns.
    l2 : float
        Small ridge penalty on standardised columns (keeps the fit defined
        when a missingness indicator nearly separates the classes, e.g. no P
        wave in AF).

    Returns
    -------
    dict
        ``model`` (coefficients, SEs, odds ratios per standardised unit
        reported in original units), ``metrics`` (test-set evaluation),
        ``table`` (the input with ``score_col``).
    """
    model, p = fit_and_score(table, outcome, list(indices), fit_on=fit_on, split_col=split_col, l2=l2)
    table = table.copy()
    table[score_col] = p
    metrics = evaluate_scores(table, outcome, {"pwi": score_col}, split_col=split_col, groups=groups,
                              n_boot=n_boot, seed=seed, out_dir=out_dir, figures=figures,
                              decision_thresholds=decision_thresholds)
    return {"model": model.summary(), "features": list(indices), "fit_on": list(fit_on),
            "metrics": metrics, "table": table, "risk_model": model}
