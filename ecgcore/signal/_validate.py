"""Input checks shared by the signal wrappers.

Every public function in :mod:`ecgcore.signal` funnels its array through
:func:`to_rows`: the time axis is moved last, all leading axes are flattened into
independent rows, and the result is a C-contiguous float32 or float64 block that
the compiled kernels can trust. :func:`from_rows` undoes it.
"""

from __future__ import annotations

import numpy as np

from ecgcore.errors import PreprocessError

__all__ = ["to_rows", "from_rows", "check_fs", "as_float"]


def as_float(x, name: str = "x") -> np.ndarray:
    """Return ``x`` as a float32 or float64 array (other real dtypes become float64)."""
    a = np.asarray(x)
    if a.dtype == np.float32 or a.dtype == np.float64:
        return a
    if a.dtype.kind in "biuf":
        return a.astype(np.float64)
    raise PreprocessError(f"{name} must be a real numeric array, got dtype {a.dtype}")


def to_rows(x, axis: int = -1, name: str = "x"):
    """Move ``axis`` last and flatten the rest.

    Returns
    -------
    rows : ndarray, shape (n_rows, n_samples), C-contiguous float32/float64
    lead_shape : tuple
        The shape of the leading (non-time) axes after moving the time axis last.
    axis : int
        ``axis`` normalised to a non-negative index.
    """
    a = as_float(x, name)
    if a.ndim == 0:
        raise PreprocessError(f"{name} must have at least one axis (time), got a scalar")
    if not isinstance(axis, (int, np.integer)) or not -a.ndim <= axis < a.ndim:
        raise PreprocessError(f"axis={axis!r} is out of range for {name} with {a.ndim} dimension(s)")
    axis = int(axis) % a.ndim
    if axis == a.ndim - 1:
        # time already last (the usual case): skip moveaxis, which costs more
        # than the reshape on a single record
        rows = np.ascontiguousarray(a.reshape(-1, a.shape[-1])) if a.ndim != 2 else np.ascontiguousarray(a)
        return rows, a.shape[:-1], axis
    moved = np.moveaxis(a, axis, -1)
    lead_shape = moved.shape[:-1]
    rows = np.ascontiguousarray(moved.reshape(-1, moved.shape[-1]))
    return rows, lead_shape, axis


def from_rows(y: np.ndarray, lead_shape: tuple, axis: int) -> np.ndarray:
    """Inverse of :func:`to_rows` for an output with possibly another number of samples."""
    out = y.reshape(tuple(lead_shape) + (y.shape[-1],))
    return out if axis == out.ndim - 1 else np.moveaxis(out, -1, axis)


def check_fs(fs, name: str = "fs") -> float:
    """A finite, positive sampling frequency in Hz."""
    try:
        f = float(fs)
    except (TypeError, ValueError):
        raise PreprocessError(f"{name} must be a number (Hz), got {fs!r}") from None
    if not np.isfinite(f) or f <= 0:
        raise PreprocessError(f"{name} must be a positive finite frequency in Hz, got {fs!r}")
    return f


class _LazyScipySignal:
    """``scipy.signal``, imported on first use.

    Filter and resampler *design* needs scipy; running a preset that only
    resamples linearly and standardises (ecgfm) does not, and importing scipy
    costs ~1.5 s of CPU in every fresh worker process.
    """

    def __getattr__(self, name):
        import scipy.signal
        return getattr(scipy.signal, name)


scipy_signal = _LazyScipySignal()
