"""ecgcore: 12-lead ECG files to clean signals, fiducials and model-ready arrays.

The public face. Heavy parts (the simulator, kernels, delineation, plotting,
digitisation, the torch model layer) are imported on first use, so that
``import ecgcore`` stays fast, imports no torch and compiles no numba code.
"""

from __future__ import annotations

import importlib

from ._version import __version__
from .errors import (ECGError, ReadError, WriteError, DigitizeError, PreprocessError,
                     ConfigError, CheckpointError, EvaluationError)
from .record import Record, STANDARD_12, STANDARD_8, normalize_lead
from .io import read, read_many, sniff, write

__all__ = [
    "__version__", "Record", "STANDARD_12", "STANDARD_8", "normalize_lead",
    "read", "read_many", "sniff", "write", "simulate",
    "preprocess", "presets", "signal",
    "detect_qrs", "delineate", "median_beats", "measure",
    "plot", "digitize", "ECGClassifier",
    "ECGError", "ReadError", "WriteError", "DigitizeError", "PreprocessError", "ConfigError",
    "CheckpointError", "EvaluationError",
]

# public name -> (module, attribute); resolved on first access (PEP 562)
_LAZY = {
    "simulate": ("ecgcore.synthetic", "simulate"),
    "preprocess": ("ecgcore.presets", "preprocess"),
    "detect_qrs": ("ecgcore.delineation", "detect_qrs"),
    "delineate": ("ecgcore.delineation", "delineate"),
    "median_beats": ("ecgcore.delineation", "median_beats"),
    "measure": ("ecgcore.delineation", "measure"),
    "measure_many": ("ecgcore.delineation", "measure_many"),
    "plot": ("ecgcore.plotting", "plot"),
    "digitize": ("ecgcore.digitization", "digitize"),
    "ECGClassifier": ("ecgcore.models.classifier", "ECGClassifier"),
}
_SUBMODULES = {"signal", "presets", "pipeline", "data", "io", "models", "cli", "record", "errors",
               "stats", "delineation", "digitization", "plotting", "synthetic"}


def __getattr__(name):
    if name in _LAZY:
        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"ecgcore.{name}")
    raise AttributeError(f"module 'ecgcore' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
