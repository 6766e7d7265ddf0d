"""Imported once by the local engine's forkserver, so that forked workers start warm.

Loads numpy, the kernels, the common readers and the numba cache of the fused
z-score before any worker forks; each worker then costs a fork, not seconds
of imports. Only the pipeline engine imports this module.
"""

from __future__ import annotations

import numpy as np

from . import worker  # noqa: F401
from .. import presets, signal  # noqa: F401
from ..io import wfdb  # noqa: F401  (the most common biobank format)

try:
    from ._fused import zscore_segment
    zscore_segment(np.ones((1, 1, 4), np.float32), 2)  # compiles or loads the numba cache
except Exception:  # pragma: no cover - numba missing or broken: workers use the generic route
    pass
