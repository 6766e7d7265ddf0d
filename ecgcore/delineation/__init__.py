"""QRS detection, 12-lead wave delineation, median beats and measurements.

Importing this package compiles (or loads cached) numba kernels; ``import ecgcore``
does not import it (the public names resolve lazily).
"""

from .qrs import detect_qrs
from .delineation import Delineation, MARKS, BEAT_CLASSES
from .waves import delineate

__all__ = ["detect_qrs", "delineate", "Delineation", "MARKS", "BEAT_CLASSES",
           "median_beats", "measure", "measure_many", "lvh_voltage_criteria", "LVH_VOLTAGE"]


def __getattr__(name):
    if name == "median_beats":
        from .median import median_beats
        return median_beats
    if name in ("measure", "measure_many", "lvh_voltage_criteria", "LVH_VOLTAGE"):
        from . import measures as _m
        return getattr(_m, name)
    raise AttributeError(f"module 'ecgcore.delineation' has no attribute {name!r}")
