"""Input validation shared by the statistics functions.

Every public function validates here and then runs plain vectorised numpy,
so bad input fails early with an :class:`EvaluationError` naming the problem
instead of a bare IndexError or a silent NaN.
"""

from __future__ import annotations

import numpy as np

from ..errors import EvaluationError

__all__ = ["EvaluationError", "as_binary", "as_scores", "as_float", "check_same_length"]


def as_float(x, name: str, *, allow_nan: bool = False) -> np.ndarray:
    """1-D float64 copy-free view of ``x``; raises on wrong shape or non-finite values."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"{name} must be numeric: {exc}") from None
    if a.ndim != 1:
        a = a.reshape(-1) if a.ndim == 2 and 1 in a.shape else a
    if a.ndim != 1:
        raise EvaluationError(f"{name} must be 1-D, got shape {a.shape}")
    if not allow_nan and not np.all(np.isfinite(a)):
        bad = int(np.count_nonzero(~np.isfinite(a)))
        raise EvaluationError(f"{name} has {bad} NaN/inf values; drop or mask them first")
    return a


def as_binary(y, name: str = "y_true") -> np.ndarray:
    """Labels as a 1-D bool array; accepts {0, 1}, {False, True} or {-1, 1}."""
    a = np.asarray(y)
    if a.dtype == bool:
        out = a
    else:
        f = as_float(a, name)
        vals = np.unique(f)
        if np.all(np.isin(vals, (0.0, 1.0))):
            out = f == 1.0
        elif np.all(np.isin(vals, (-1.0, 1.0))):
            out = f == 1.0
        else:
            raise EvaluationError(
                f"{name} must be binary (0/1), found values {vals[:5].tolist()}"
                + (" ..." if vals.size > 5 else ""))
    out = out.reshape(-1) if out.ndim == 2 and 1 in out.shape else out
    if out.ndim != 1:
        raise EvaluationError(f"{name} must be 1-D, got shape {out.shape}")
    return out


def as_scores(p, name: str = "y_score") -> np.ndarray:
    """Scores (probabilities, logits or any monotone risk) as finite float64."""
    return as_float(p, name)


def check_same_length(**arrays) -> int:
    """All arrays have the same length (returned); the message names them."""
    lens = {k: len(v) for k, v in arrays.items() if v is not None}
    if len(set(lens.values())) > 1:
        raise EvaluationError("length mismatch: " + ", ".join(f"{k}={n}" for k, n in lens.items()))
    n = next(iter(lens.values()))
    if n == 0:
        raise EvaluationError("empty input: " + ", ".join(lens))
    return n


def require_both_classes(y: np.ndarray, what: str) -> None:
    n1 = int(np.count_nonzero(y))
    if n1 == 0 or n1 == y.size:
        raise EvaluationError(f"{what} is undefined with only one class present "
                              f"({n1} positives of {y.size})")
