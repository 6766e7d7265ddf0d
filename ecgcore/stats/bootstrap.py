"""Patient-level (cluster) bootstrap confidence intervals.

Records of one patient are correlated, so resampling records understates the
variance. :func:`bootstrap_ci` resamples *patients* with replacement and keeps
all rows of a sampled patient together (Field & Welsh 2007). A resample is
represented by integer row weights (how often each row's patient was drawn),
which lets metrics with a batched twin (``metric_fn.batched``, every metric in
:mod:`ecgcore.stats`) evaluate a block of resamples as one matrix operation;
any other callable is evaluated on the repeated rows, giving the same numbers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr, ndtri

from ._checks import EvaluationError

__all__ = ["bootstrap_ci", "BootstrapResult", "cluster_weights"]

_BLOCK_ELEMENTS = 4_000_000       # resamples x rows per block: bounds memory at ~32 MB


@dataclass
class BootstrapResult:
    """A point estimate with its bootstrap confidence interval.

    Attributes
    ----------
    estimate : float or ndarray
        The metric on the original data.
    ci_low, ci_high : float or ndarray
        Interval ends (NaN when too few resamples were valid).
    se : float or ndarray
        Standard deviation of the valid replicates.
    n_boot, n_valid : int
        Resamples drawn and resamples with a finite metric (one-class resamples
        make AUROC undefined and are skipped, as in the published analyses).
    n_clusters : int
        Patients (or rows when no groups were given).
    method : str
        ``"percentile"`` or ``"bca"``.
    level : float
    replicates : ndarray
        The bootstrap distribution, shape (n_boot,) or (n_boot, k).
    """
    estimate: object
    ci_low: object
    ci_high: object
    se: object
    n_boot: int
    n_valid: int
    n_clusters: int
    method: str
    level: float
    replicates: np.ndarray = field(repr=False)

    def as_dict(self) -> dict:
        f = (lambda v: v.tolist() if isinstance(v, np.ndarray) else float(v))
        return {"value": f(self.estimate), "ci_low": f(self.ci_low), "ci_high": f(self.ci_high),
                "se": f(self.se), "n_boot": self.n_boot, "n_valid": self.n_valid,
                "n_clusters": self.n_clusters, "method": self.method, "level": self.level}


def _cluster_index(groups, n):
    if groups is None:
        return np.arange(n), n
    g = np.asarray(groups)
    if g.ndim != 1 or g.size != n:
        raise EvaluationError(f"groups must be 1-D with one id per row ({n}), got shape {g.shape}")
    _, inv = np.unique(g, return_inverse=True)
    return inv.reshape(-1), int(inv.max()) + 1


def cluster_weights(rng, n_resamples: int, cluster_of_row: np.ndarray, n_clusters: int):
    """Row weights of ``n_resamples`` cluster-bootstrap resamples, shape (B, n_rows).

    Each resample draws ``n_clusters`` clusters with replacement; a row's weight
    is how many times its cluster was drawn.
    """
    idx = rng.integers(0, n_clusters, size=(n_resamples, n_clusters))
    flat = idx + (np.arange(n_resamples) * n_clusters)[:, None]
    counts = np.bincount(flat.ravel(), minlength=n_resamples * n_clusters)
    return counts.reshape(n_resamples, n_clusters)[:, cluster_of_row].astype(np.float64)


def _resolve(metric_fn, kwargs):
    """(callable, batched twin or None, kwargs) seeing through functools.partial."""
    kw = dict(kwargs or {})
    fn = metric_fn
    if isinstance(fn, functools.partial):
        if fn.args:
            return metric_fn, None, kw
        kw = {**fn.keywords, **kw}
        fn = fn.func
    return fn, getattr(fn, "batched", None), kw


def _evaluate(fn, batched, kw, arrays, W):
    if batched is not None:
        return np.asarray(batched(*arrays, W, **kw), dtype=np.float64)
    rows = np.arange(W.shape[1])
    out = [np.asarray(fn(*(a[np.repeat(rows, w.astype(np.int64))] for a in arrays), **kw),
                      dtype=np.float64) for w in W]
    return np.stack(out)


def _safe(fn, batched, kw, arrays, W):
    """Replicates; a resample on which a metric raises (e.g. one class) becomes NaN."""
    if batched is not None:
        return _evaluate(fn, batched, kw, arrays, W)
    rows = np.arange(W.shape[1])
    out = []
    for w in W:
        try:
            v = fn(*(a[np.repeat(rows, w.astype(np.int64))] for a in arrays), **kw)
        except (ValueError, ZeroDivisionError, FloatingPointError):
            v = np.nan
        out.append(np.asarray(v, dtype=np.float64))
    try:
        return np.stack(out)
    except ValueError:   # a NaN scalar among vector results
        k = max(o.size for o in out)
        return np.stack([o if o.size == k else np.full(k, np.nan) for o in out])


def _blocks(n_total, n_rows):
    step = max(1, _BLOCK_ELEMENTS // max(n_rows, 1))
    for a in range(0, n_total, step):
        yield a, min(step, n_total - a)


def bootstrap_ci(metric_fn, *arrays, groups=None, n_boot: int = 2000, seed=0,
                 level: float = 0.95, method: str = "percentile", kwargs: dict | None = None,
                 min_valid: float = 0.5) -> BootstrapResult:
    """Confidence interval of ``metric_fn(*arrays)`` by (cluster) bootstrap.

    Parameters
    ----------
    metric_fn : callable
        ``metric_fn(*arrays, **kwargs) -> float or 1-D array``. It must not depend
        on row order. Metrics of :mod:`ecgcore.stats` (and ``functools.partial``
        of them) run batched and fast; other callables are looped.
    *arrays : array_like
        Row-aligned arrays (e.g. ``y_true, y_score``).
    groups : array_like, optional
        Patient id of each row. Patients are resampled with all their rows. Without
        it, rows are resampled independently.
    n_boot : int
        Resamples (at least 1000 for a 95% interval; facts sheets note published
        code with 10).
    seed : int or numpy.random.Generator
        Seed; the result is deterministic for a given seed and data.
    level : float
        Confidence level.
    method : {"percentile", "bca"}
        Percentile interval, or bias-corrected and accelerated (acceleration from
        a leave-one-cluster-out jackknife).
    kwargs : dict, optional
        Extra keyword arguments for ``metric_fn`` (e.g. ``{"threshold": t}``).
    min_valid : float
        If fewer than this fraction of resamples give a finite metric, the
        interval is NaN rather than a misleading one.

    Returns
    -------
    BootstrapResult

    References
    ----------
    .. [1] Efron B, Tibshirani RJ. An Introduction to the Bootstrap. Chapman & Hall,
       1993 (chapters 13-14: percentile and BCa intervals).
    .. [2] Field CA, Welsh AH. Bootstrapping clustered data. J R Stat Soc B
       2007;69:369-390.
    """
    if not arrays:
        raise EvaluationError("bootstrap_ci needs at least one data array")
    arrays = tuple(np.asarray(a) for a in arrays)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise EvaluationError("bootstrap_ci arrays differ in length: "
                              + ", ".join(str(len(a)) for a in arrays))
    if n == 0:
        raise EvaluationError("bootstrap_ci got empty arrays")
    if method not in ("percentile", "bca"):
        raise EvaluationError(f"unknown bootstrap method {method!r}; use 'percentile' or 'bca'")
    if not (0 < level < 1):
        raise EvaluationError(f"level must be in (0, 1), got {level}")
    n_boot = int(n_boot)
    if n_boot < 1:
        raise EvaluationError(f"n_boot must be positive, got {n_boot}")
    cluster, n_clusters = _cluster_index(groups, n)
    fn, batched, kw = _resolve(metric_fn, kwargs)
    estimate = np.asarray(fn(*arrays, **kw), dtype=np.float64)   # validates the inputs
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    reps = []
    for _, b in _blocks(n_boot, n):
        W = cluster_weights(rng, b, cluster, n_clusters)
        reps.append(_safe(fn, batched, kw, arrays, W))
    reps = np.concatenate(reps, axis=0)
    if reps.ndim == 1 and estimate.ndim == 1:
        reps = reps[:, None]
    finite = np.isfinite(reps) if reps.ndim == 1 else np.all(np.isfinite(reps), axis=1)
    n_valid = int(finite.sum())
    valid = reps[finite]
    alpha = 1 - level
    shape = estimate.shape
    if n_valid < max(2, min_valid * n_boot):
        nan = np.full(shape, np.nan)
        lo = hi = se = nan
    elif method == "percentile":
        lo, hi = np.quantile(valid, [alpha / 2, 1 - alpha / 2], axis=0)
        se = valid.std(axis=0, ddof=1)
    else:
        lo, hi = _bca(fn, batched, kw, arrays, cluster, n_clusters, estimate, valid, alpha)
        se = valid.std(axis=0, ddof=1)
    cast = (lambda v: float(v)) if estimate.ndim == 0 else (lambda v: np.asarray(v, float))
    return BootstrapResult(cast(estimate), cast(lo), cast(hi), cast(se), n_boot, n_valid,
                           n_clusters, method, level, reps)


def _bca(fn, batched, kw, arrays, cluster, n_clusters, estimate, valid, alpha):
    """BCa ends; acceleration from the leave-one-cluster-out jackknife."""
    n = cluster.size
    jack = []
    for a, b in _blocks(n_clusters, n):
        W = np.ones((b, n))
        # row r of this block drops cluster a + r
        drop = cluster[None, :] == (a + np.arange(b))[:, None]
        W[drop] = 0.0
        jack.append(_safe(fn, batched, kw, arrays, W))
    jack = np.concatenate(jack, axis=0)
    if jack.ndim == 1 and estimate.ndim == 1:
        jack = jack[:, None]
    jack = jack[np.all(np.isfinite(jack.reshape(len(jack), -1)), axis=1)]
    d = jack.mean(axis=0) - jack
    num = np.sum(d ** 3, axis=0)
    den = 6.0 * np.sum(d ** 2, axis=0) ** 1.5
    acc = np.divide(num, den, out=np.zeros_like(np.asarray(num, float)), where=den > 0)
    B = valid.shape[0]
    frac = (np.sum(valid < estimate, axis=0) + 0.5 * np.sum(valid == estimate, axis=0)) / B
    z0 = ndtri(np.clip(frac, 1.0 / (2 * B), 1 - 1.0 / (2 * B)))
    ends = []
    for q in (alpha / 2, 1 - alpha / 2):
        zq = ndtri(q)
        adj = ndtr(z0 + (z0 + zq) / (1 - acc * (z0 + zq)))
        if np.ndim(adj) == 0:
            ends.append(np.quantile(valid, float(adj), axis=0))
        else:
            ends.append(np.array([np.quantile(valid[:, k], adj[k]) for k in range(adj.size)]))
    return ends[0], ends[1]
