"""Imported once by the local engine's forkserver, so that forked workers start warm.

Loads numpy, the kernels (the fused z-score + segment one included: C++, no
numba) and the common readers before any worker forks; each worker then costs
a fork, not seconds of imports. Only the pipeline engine imports this module.
"""

from __future__ import annotations

import numpy as np  # noqa: F401

from . import worker  # noqa: F401
from .. import presets, signal  # noqa: F401
from ..io import wfdb  # noqa: F401  (the most common biobank format)
from ..signal import normalize  # noqa: F401  (zscore_segments, the ecgfm presets' last step)
from .._kernels import norm  # noqa: F401
