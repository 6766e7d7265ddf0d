"""ecgcore.models.studies: the downstream analyses of the four seed studies.

* :mod:`.logistic` - Newton-IRLS logistic regression, median imputation with
  missingness indicators, a table-level :class:`RiskModel`;
* :mod:`.features` - the P-wave-index feature table from ``ecgcore.measure``;
* :mod:`.pwave_baseline` - DL-AtCM's P-wave-index baseline (train fit, test
  evaluation with bootstrap CIs);
* :mod:`.af_from_markers` - AF from predicted CMR markers + age + sex,
  compared with the P-wave baseline by DeLong on the same test cases;
* :mod:`.lvh_analysis` - sex-specific LVH thresholds, the iLVM-to-LVH
  logistic model, iLVM regression and LVH classification metrics;
* :mod:`.cv` - grouped k-fold CV with the engine (best epoch on an inner
  validation split), pooled out-of-fold evaluation, normal-ECG subgroup, risk
  tertiles with Kaplan-Meier incidence and log-rank (CCTA).

Statistics come from :mod:`ecgcore.stats`; nothing here re-implements them.
"""

from __future__ import annotations

# eager imports (numpy/scipy/ecgcore.stats only; torch is imported inside run_cv): two functions
# share their module's name, so a lazy __getattr__ would hand back the module after its import
from .logistic import LogisticRegression, MedianImputer, RiskModel, logit, prior_adjust
from .features import PWAVE_EXTENDED, PWAVE_INDICES, encode_columns, pwave_feature_table
from .scoring import evaluate_scores, fit_and_score
from .pwave_baseline import pwave_baseline
from .af_from_markers import MARKERS, af_from_markers
from .lvh_analysis import LVH_THRESHOLDS, LVHLogistic, lvh_from_mass, lvh_study, lvh_threshold
from .cv import evaluate_cv, read_predictions, run_cv

__all__ = ["LogisticRegression", "MedianImputer", "RiskModel", "logit", "prior_adjust",
           "PWAVE_INDICES", "PWAVE_EXTENDED", "encode_columns", "pwave_feature_table",
           "evaluate_scores", "fit_and_score", "pwave_baseline", "MARKERS", "af_from_markers",
           "LVH_THRESHOLDS", "LVHLogistic", "lvh_from_mass", "lvh_study", "lvh_threshold",
           "evaluate_cv", "read_predictions", "run_cv"]
