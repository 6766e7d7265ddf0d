"""Running-median baseline removal (ECGFounder's official chain, facts/ecgfounder_ccta.md §1.4).

``median_baseline(x, fs, window_s)`` returns ``x - medfilt(x, k)`` per lead, where
``medfilt`` is :func:`scipy.signal.medfilt` on the 1-D lead: the window is centred
and the signal is **zero-padded** at both ends (which pulls the baseline toward 0
near the edges; ECGFounder relies on it, so it is reproduced). The kernel size is
``k = int(window_s * fs)``, made odd by adding one when even: 0.4 s at 500 Hz gives
201, ECGFounder's ``int(0.4 * fs) + 1``.

The running median is a C++ kernel of selection algorithms. Short windows
keep the sorted window in vector registers and update every slot per step with
min/max against the entering and leaving sample (O(k / vector width) per
sample, no searches). Longer windows use Suomela's block sort (J. Suomela,
"Median filtering is equivalent to sorting", arXiv:1406.1717, 2014): each block
is sorted once, two adjacent sorted blocks are merged into ranks, and the
window's median is the (k/2)-th set bit of a rank bit mask, which moves by at
most one set bit per step. On AVX-512 machines float32 windows of 129 to 511
samples (ECGFounder's 201 included) run it with sorting networks (a
60-comparator column network, then bitonic merges) in zmm registers on blocks
of 256 or 512 samples, and find the medians 16 outputs at a time: from the
count of window samples below one base rank (near where the previous median
and its last movement point) and the window membership of the 64 ranks above
it (one byte compare per output), with no step-to-step dependency;
longer windows, float64 (from about 400 samples) and other machines use a
scalar radix-sort version.

Accuracy. Every path returns a sample of the window. All paths but one select
exactly scipy's sample (bit for bit; ``-0.0`` and ``+0.0`` compare equal, as in
scipy). The exception, the fastest path (float32, AVX-512, windows of 129 to 255
samples: ECGFounder's 201 at 500 Hz), sorts 32-bit entries whose keys are the
samples quantised to 23 bits over the lead's range (zero included, for the
padding): it returns the sample of the window whose quantised key equals the
exact median's, within one quantisation step (about ``range * 2**-23``; the
tests allow ``range * 2**-20``) of scipy's result and equal to it unless two
samples that close share the window, far inside the 1e-4-of-range contract for
float32. ``exact=True`` turns it off (about 50% slower there). Leads with
``+/-inf`` or a subnormal range always take an exact path.
A lead containing NaN returns NaN throughout (a median is not
defined with NaN; scipy's result is unspecified there).
"""

from __future__ import annotations

import numpy as np

from ecgcore.errors import PreprocessError
from ecgcore.signal._validate import check_fs, from_rows, to_rows

__all__ = ["median_baseline", "running_median", "median_kernel_size"]


def median_kernel_size(fs, window_s) -> int:
    """Odd kernel size for a window of ``window_s`` seconds at ``fs`` Hz."""
    fs = check_fs(fs)
    try:
        w = float(window_s)
    except (TypeError, ValueError):
        raise PreprocessError(f"window_s must be a number of seconds, got {window_s!r}") from None
    if not np.isfinite(w) or w <= 0:
        raise PreprocessError(f"window_s must be positive, got {window_s!r}")
    k = int(w * fs)
    return max(1, k + 1 if k % 2 == 0 else k)


def running_median(x, kernel_size: int, axis: int = -1, exact: bool = False, out=None) -> np.ndarray:
    """Zero-padded running median: ``scipy.signal.medfilt`` applied to each 1-D lead.

    Parameters
    ----------
    x : array_like
        Signal, any leading shape, float32 or float64 (dtype kept).
    kernel_size : int
        Odd window length in samples.
    axis : int
        Time axis.
    exact : bool
        Bit for bit scipy's result on every path. By default float32 windows of
        129 to 255 samples on AVX-512 machines may return a sample within about
        ``range * 2**-23`` of it instead (module docstring).
    out : ndarray, optional
        Array to write the result into and return (see :func:`median_baseline`).

    Returns
    -------
    ndarray
        The running median, same shape and dtype as ``x`` (``out`` when given).
    """
    from ecgcore._kernels import medfilt as _mf

    k = _check_k(kernel_size)
    rows, lead_shape, axis = to_rows(x, axis)
    if out is not None:
        _mf.running_median(rows, k, False, 0, bool(exact), _out_rows(out, rows, lead_shape, axis))
        return out
    return from_rows(_mf.running_median(rows, k, False, 0, bool(exact)), lead_shape, axis)


def median_baseline(x, fs, window_s: float = 0.4, axis: int = -1, exact: bool = False, out=None) -> np.ndarray:
    """Remove the running-median baseline: ``x - medfilt(x, k)`` per lead.

    Parameters
    ----------
    x : array_like
        Signal, any leading shape, float32 or float64 (dtype kept).
    fs : float
        Sampling frequency, Hz.
    window_s : float
        Median window, seconds (ECGFounder: 0.4).
    axis : int
        Time axis.
    exact : bool
        Subtract exactly scipy's median on every path (see :func:`running_median`).
    out : ndarray, optional
        Array to write the result into and return, instead of a new one: C-contiguous,
        writable, ``x``'s shape, the result's dtype (float32 for float32 input, else
        float64), time axis last. It may be ``x`` itself (in-place baseline removal).
        Saves allocating (and page-faulting) a fresh output; in a long-running
        process the allocator mostly reuses memory, and the gain is then small.

    Returns
    -------
    ndarray
        ``x`` minus its running median, same shape and dtype as ``x`` (``out`` when given).
    """
    from ecgcore._kernels import medfilt as _mf

    k = median_kernel_size(fs, window_s)
    rows, lead_shape, axis = to_rows(x, axis)
    if out is not None:
        _mf.running_median(rows, k, True, 0, bool(exact), _out_rows(out, rows, lead_shape, axis))
        return out
    return from_rows(_mf.running_median(rows, k, True, 0, bool(exact)), lead_shape, axis)


def _out_rows(out, rows: np.ndarray, lead_shape: tuple, axis: int) -> np.ndarray:
    """``out`` as a (rows, samples) view the kernel writes into, or PreprocessError."""
    if not isinstance(out, np.ndarray):
        raise PreprocessError(f"out must be a numpy array, got {type(out).__name__}")
    shape = tuple(lead_shape) + (rows.shape[-1],)
    if axis != len(shape) - 1:
        raise PreprocessError(f"out= needs the time axis last (axis=-1), got axis={axis}")
    if out.shape != shape:
        raise PreprocessError(f"out has shape {out.shape}, the result has shape {shape}")
    if out.dtype != rows.dtype:
        raise PreprocessError(f"out has dtype {out.dtype}, the result has dtype {rows.dtype}")
    if not out.flags.c_contiguous:
        raise PreprocessError("out must be C-contiguous")
    if not out.flags.writeable:
        raise PreprocessError("out is read-only")
    return out.reshape(rows.shape)


def _check_k(kernel_size) -> int:
    if int(kernel_size) != kernel_size or kernel_size < 1 or int(kernel_size) % 2 == 0:
        raise PreprocessError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    return int(kernel_size)
