"""Imported by a forkserver before it forks delineation workers: loads the kernels once.

``ecgcore delineate`` / ``ecgcore measure`` pass this module to the local engine's
forkserver preload (:func:`ecgcore.pipeline.engine_local.run_local`), so every
worker is a fork of a process that already holds the compiled numba kernels,
instead of each worker loading them from numba's cache (about 1 s each) or, on a
cold cache, compiling them at the same time (tens of seconds each).
"""

from __future__ import annotations

try:
    import pandas  # noqa: F401  (the table workers build DataFrames)

    from .waves import warm_kernels

    warm_kernels()
except Exception:  # noqa: BLE001 - a forkserver must not die on its preload: workers then load the kernels themselves
    pass
