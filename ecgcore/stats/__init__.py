"""Evaluation statistics: metrics, patient-level bootstrap CIs, DeLong, survival, figures.

Plain functions over arrays (numpy and scipy only; matplotlib is imported
inside the figure functions, pandas only when a DataFrame is asked for).

Typical use::

    from ecgcore import stats
    thr = stats.choose_threshold(y_val, p_val, "youden")      # on validation data
    m = stats.binary_metrics(y_test, p_test, thr)              # applied to test data
    ci = stats.bootstrap_ci(stats.auroc, y_test, p_test, groups=patient_id, seed=0)
    stats.delong_test(y_test, p_model, p_baseline).p_value
    stats.decision_curve(y_test, p_test)["net_benefit"]       # vs treat-all / treat-none
    stats.evaluate_predictions(df, tasks=[...], groups="patient_id", out_dir="eval/")
"""

from __future__ import annotations

from ._checks import EvaluationError
from .bootstrap import BootstrapResult, bootstrap_ci, cluster_weights
from .calibration import calibration_curve, calibration_slope_intercept, expected_calibration_error
from .classification import (THRESHOLD_RULES, Threshold, auprc, auroc, average_precision,
                             binary_metrics, brier_score, choose_threshold, confusion_counts,
                             f1_score, npv, ppv, pr_curve, roc_curve, sensitivity, specificity,
                             threshold_sweep)
from .decision import decision_curve, net_benefit, treat_all_net_benefit
from .delong import DeLongTest, delong_auc_ci, delong_components, delong_test
from .regression import (bland_altman, mae, mean_error, pearson, pearson_r, r2,
                         regression_metrics, rmse, spearman, spearman_rho)
from .subgroups import subgroup_table, to_frame
from .survival import (KaplanMeier, LogRankTest, incidence_by_group, kaplan_meier, logrank_test,
                       number_at_risk, risk_cut_points, risk_groups)
from .report import evaluate_predictions

__all__ = [
    "EvaluationError", "BootstrapResult", "bootstrap_ci", "cluster_weights",
    "calibration_curve", "calibration_slope_intercept", "expected_calibration_error",
    "THRESHOLD_RULES", "Threshold", "auprc", "auroc", "average_precision", "binary_metrics",
    "brier_score", "choose_threshold", "confusion_counts", "f1_score", "npv", "ppv", "pr_curve",
    "roc_curve", "sensitivity", "specificity", "threshold_sweep",
    "decision_curve", "net_benefit", "treat_all_net_benefit",
    "DeLongTest", "delong_auc_ci", "delong_components", "delong_test",
    "bland_altman", "mae", "mean_error", "pearson", "pearson_r", "r2", "regression_metrics",
    "rmse", "spearman", "spearman_rho",
    "subgroup_table", "to_frame",
    "KaplanMeier", "LogRankTest", "incidence_by_group", "kaplan_meier", "logrank_test",
    "number_at_risk", "risk_cut_points", "risk_groups",
    "evaluate_predictions", "figures",
]


def __getattr__(name):
    if name == "figures":             # matplotlib-dependent; imported on first use
        import importlib
        return importlib.import_module("ecgcore.stats.figures")
    raise AttributeError(f"module 'ecgcore.stats' has no attribute {name!r}")
