"""Logistic regression by Newton-IRLS (numpy), and a table-level risk model with imputation.

The downstream models of the seed studies are small logistic regressions on a
handful of columns (P-wave indices; predicted CMR markers + age + sex;
predicted iLVM + sex). They are fitted here with plain Newton-Raphson
(iteratively reweighted least squares) on the exact penalised log-likelihood,
so no scikit-learn dependency is needed.

* :class:`LogisticRegression` works on arrays: optional L2 penalty (never on
  the intercept), optional internal standardisation of the columns (so the
  penalty does not depend on units), sample weights and
  ``class_weight="balanced"`` (weights ``n / (2 n_c)``, scikit-learn's rule,
  used by the LVH study's iLVM-to-LVH model).
* :class:`MedianImputer` fills NaN with training-row medians and adds one
  missingness indicator per column that had missing values *in the training
  rows* (an absent P wave is informative for AF, so it is kept as a feature);
  other columns are not imputed (their rows get no prediction).
* :class:`RiskModel` = imputer + logistic regression on named DataFrame
  columns; categorical P-wave outputs are encoded by
  :func:`ecgcore.models.studies.features.encode_columns`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

from ecgcore.stats import EvaluationError

__all__ = ["LogisticRegression", "MedianImputer", "RiskModel", "logit", "prior_adjust"]


def logit(p, eps: float = 1e-12):
    """log(p / (1 - p)) with p clipped to [eps, 1 - eps]."""
    p = np.clip(np.asarray(p, np.float64), eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


def prior_adjust(p, prior_from: float, prior_to: float = 0.5):
    """Move probabilities from one class prior to another on the logit scale.

    ``sigmoid(logit(p) - logit(prior_from) + logit(prior_to))``. With the
    default ``prior_to = 0.5`` this is the LVH study's ``*_prioradj`` column
    (``sigmoid(logit(p) - logit(pi_train))``, facts/lvh.md §7).
    """
    if not (0 < prior_from < 1 and 0 < prior_to < 1):
        raise EvaluationError(f"priors must be in (0, 1), got {prior_from}, {prior_to}")
    return expit(logit(p) - math.log(prior_from / (1 - prior_from)) + math.log(prior_to / (1 - prior_to)))


class LogisticRegression:
    """Binary logistic regression fitted by Newton-IRLS.

    Minimises ``sum_i w_i * logloss_i + l2 / 2 * ||beta||^2`` (``beta``
    excludes the intercept), i.e. scikit-learn's ``C = 1 / l2``.

    Parameters
    ----------
    l2 : float
        Ridge penalty (0 = maximum likelihood; with separable data the MLE
        does not exist and :meth:`fit` raises, naming the problem).
    standardize : bool
        Penalise (and solve) on columns scaled to zero mean and unit SD of the
        fitting rows; coefficients are reported in original units.
    class_weight : None or "balanced"
    max_iter, tol : Newton iterations and the convergence tolerance on the
        largest absolute step.

    Attributes (after fit)
    ----------------------
    intercept_, coef_ : float, ndarray (k,) in original units
    se_ : ndarray (k + 1,) standard errors (intercept first) from the inverse
        penalised Hessian (the usual Wald SEs when ``l2 = 0``)
    n_iter_ : int
    """

    def __init__(self, l2: float = 0.0, standardize: bool = True, class_weight=None,
                 max_iter: int = 100, tol: float = 1e-10):
        if l2 < 0:
            raise EvaluationError("l2 must be >= 0")
        if class_weight not in (None, "balanced"):
            raise EvaluationError(f"class_weight must be None or 'balanced', not {class_weight!r}")
        self.l2, self.standardize, self.class_weight = float(l2), bool(standardize), class_weight
        self.max_iter, self.tol = int(max_iter), float(tol)

    def _design(self, X):
        X = np.asarray(X, np.float64)
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2:
            raise EvaluationError(f"X must be 2-D (rows, features), got shape {X.shape}")
        return X

    def fit(self, X, y, sample_weight=None):
        X = self._design(X)
        y = np.asarray(y, np.float64).reshape(-1)
        if len(y) != len(X):
            raise EvaluationError(f"X has {len(X)} rows but y has {len(y)}")
        if not np.all(np.isfinite(X)):
            raise EvaluationError("X has NaN/inf values; impute them first (MedianImputer)")
        if not np.all(np.isin(y, (0.0, 1.0))):
            raise EvaluationError("y must be 0/1 without missing values")
        n1 = y.sum()
        if n1 == 0 or n1 == len(y):
            raise EvaluationError(f"y has one class only ({int(n1)} positives of {len(y)})")
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64).reshape(-1)
        if self.class_weight == "balanced":
            n = len(y)
            w = w * np.where(y == 1, n / (2 * n1), n / (2 * (n - n1)))
        k = X.shape[1]
        if self.standardize:
            mu = X.mean(0)
            sd = X.std(0)
            sd[sd == 0] = 1.0
        else:
            mu, sd = np.zeros(k), np.ones(k)
        Z = np.column_stack([np.ones(len(X)), (X - mu) / sd])
        pen = np.full(k + 1, self.l2)
        pen[0] = 0.0
        # start at the weighted prevalence: one Newton step from there is already close
        pbar = float(np.sum(w * y) / np.sum(w))
        b = np.zeros(k + 1)
        b[0] = math.log(pbar / (1 - pbar))
        converged = False
        for it in range(1, self.max_iter + 1):
            eta = Z @ b
            p = expit(eta)
            g = Z.T @ (w * (p - y)) + pen * b
            H = (Z * (w * p * (1 - p))[:, None]).T @ Z + np.diag(pen)
            try:
                step = np.linalg.solve(H, g)
            except np.linalg.LinAlgError:
                raise EvaluationError("singular Hessian: collinear or constant features "
                                      "(add an l2 penalty or drop a column)") from None
            # halve the step while the objective does not decrease (guards against overshoot)
            f0 = self._objective(Z, y, w, b, pen)
            t = 1.0
            while t > 1e-8 and self._objective(Z, y, w, b - t * step, pen) > f0 + 1e-12 * abs(f0):
                t *= 0.5
            b = b - t * step
            if np.max(np.abs(t * step)) < self.tol * (1 + np.max(np.abs(b))):
                converged = True
                break
        if not converged or not np.all(np.isfinite(b)) or (self.l2 == 0 and np.max(np.abs(b[1:])) > 30):
            raise EvaluationError(
                "logistic regression did not converge: the classes are (quasi-)separable by these "
                "features, so the maximum-likelihood estimate does not exist; use l2 > 0")
        self.n_iter_ = it
        self._b_std, self._mu, self._sd = b, mu, sd
        self.coef_ = b[1:] / sd
        self.intercept_ = float(b[0] - np.sum(b[1:] * mu / sd))
        p = expit(Z @ b)
        H = (Z * (w * p * (1 - p))[:, None]).T @ Z + np.diag(pen)
        cov_std = np.linalg.inv(H)
        # map the covariance to original units: beta_orig = A @ b_std
        A = np.zeros((k + 1, k + 1))
        A[0, 0] = 1.0
        A[0, 1:] = -mu / sd
        A[1:, 1:] = np.diag(1 / sd)
        self.cov_ = A @ cov_std @ A.T
        self.se_ = np.sqrt(np.diag(self.cov_))
        return self

    @staticmethod
    def _objective(Z, y, w, b, pen):
        eta = Z @ b
        # log(1 + e^eta) - y eta, stable for large |eta|
        ll = np.logaddexp(0.0, eta) - y * eta
        return float(np.sum(w * ll) + 0.5 * np.sum(pen * b * b))

    def decision_function(self, X):
        X = self._design(X)
        if not hasattr(self, "coef_"):
            raise EvaluationError("the model is not fitted")
        if X.shape[1] != len(self.coef_):
            raise EvaluationError(f"X has {X.shape[1]} columns, the model was fitted on {len(self.coef_)}")
        return self.intercept_ + X @ self.coef_

    def predict_proba(self, X):
        """P(y = 1) per row (1-D)."""
        return expit(self.decision_function(X))


class MedianImputer:
    """Median imputation fitted on training rows, plus missingness indicators.

    ``fit(X)`` records each column's median over its finite values (0 for a
    column with none) and marks the columns that had any NaN; ``transform(X)``
    returns ``[X with NaN -> median, indicator columns (1 = was missing)]``.
    A NaN in a column that had no missing value in the training rows is left
    NaN (the row then gets no prediction from :class:`RiskModel`).
    The indicator set is fixed at fit time, so train and test matrices have
    the same columns.
    """

    def fit(self, X, names=None):
        X = np.asarray(X, np.float64)
        if X.ndim != 2:
            raise EvaluationError(f"X must be 2-D, got shape {X.shape}")
        self.names = list(names) if names is not None else [f"x{j}" for j in range(X.shape[1])]
        miss = ~np.isfinite(X)
        self.median_ = np.array([np.median(X[~miss[:, j], j]) if (~miss[:, j]).any() else 0.0
                                 for j in range(X.shape[1])])
        self.indicators_ = np.flatnonzero(miss.any(0))
        return self

    @property
    def output_names(self) -> list:
        return self.names + [f"{self.names[j]}_missing" for j in self.indicators_]

    def transform(self, X):
        X = np.array(X, np.float64, copy=True)
        if X.ndim != 2 or X.shape[1] != len(self.median_):
            raise EvaluationError(f"X must have {len(self.median_)} columns, got shape {X.shape}")
        miss = ~np.isfinite(X)
        # only columns that were missing in training rows are imputed: the model learnt what a
        # missing value there means (its indicator); elsewhere NaN stays NaN and the row gets no
        # score, rather than a silently invented median value
        fill = np.zeros_like(miss)
        fill[:, self.indicators_] = miss[:, self.indicators_]
        X[fill] = np.broadcast_to(self.median_, X.shape)[fill]
        return np.column_stack([X, miss[:, self.indicators_].astype(np.float64)])


class RiskModel:
    """Logistic risk model on named table columns with train-fitted imputation.

    Parameters
    ----------
    features : list of str
        Columns of the table (numeric, or categorical P-wave columns that
        :func:`~ecgcore.models.studies.features.encode_columns` knows).
    l2, standardize, class_weight : see :class:`LogisticRegression`.
    impute : bool
        Median imputation + missingness indicators (fitted on the fitting
        rows only). Without it, rows with a missing feature are refused.
    """

    def __init__(self, features, l2: float = 1e-3, standardize: bool = True, class_weight=None,
                 impute: bool = True):
        self.features = list(features)
        if not self.features:
            raise EvaluationError("a risk model needs at least one feature column")
        self.impute = impute
        self.lr = LogisticRegression(l2=l2, standardize=standardize, class_weight=class_weight)

    def _matrix(self, table):
        from .features import encode_columns
        return encode_columns(table, self.features)

    def fit(self, table, y):
        X = self._matrix(table)
        y = np.asarray(y, np.float64)
        keep = np.isfinite(y)
        X, y = X[keep], y[keep]
        if self.impute:
            self.imputer = MedianImputer().fit(X, self.features)
            X = self.imputer.transform(X)
            # an indicator that is constant on the fitting rows carries nothing
            self.names = self.imputer.output_names
        else:
            self.imputer = None
            if not np.all(np.isfinite(X)):
                raise EvaluationError("missing feature values and impute=False")
            self.names = list(self.features)
        self.lr.fit(X, y)
        self.n_fit_ = int(len(y))
        self.prevalence_ = float(y.mean())
        return self

    def predict_proba(self, table):
        X = self._matrix(table)
        if self.imputer is not None:
            X = self.imputer.transform(X)
        out = np.full(len(X), np.nan)
        ok = np.all(np.isfinite(X), axis=1)
        out[ok] = self.lr.predict_proba(X[ok])
        return out

    def summary(self) -> dict:
        """Coefficients, SEs and odds ratios per (encoded) column, in original units."""
        rows = {"(intercept)": {"coef": self.lr.intercept_, "se": float(self.lr.se_[0])}}
        for j, name in enumerate(self.names):
            c, se = float(self.lr.coef_[j]), float(self.lr.se_[j + 1])
            rows[name] = {"coef": c, "se": se, "odds_ratio": math.exp(c) if abs(c) < 700 else math.inf,
                          "z": c / se if se > 0 else math.nan}
        return {"n_fit": self.n_fit_, "prevalence_fit": self.prevalence_, "l2": self.lr.l2,
                "class_weight": self.lr.class_weight, "coefficients": rows}
