"""Exception types raised by ecgcore.

Every error that bad *input* can cause is one of these, and each is a
``ValueError`` so that generic callers can catch it without knowing ecgcore.
Batch code (``read_many``, the pipeline engines) turns them into rows of
``errors.jsonl`` instead of stopping.
"""

from __future__ import annotations

import os

__all__ = ["ECGError", "ReadError", "WriteError", "DigitizeError", "PreprocessError",
           "ConfigError", "CheckpointError", "EvaluationError"]


class ECGError(ValueError):
    """Base class of all ecgcore input errors.

    Parameters
    ----------
    message : str
        What is wrong, in words a user can act on.
    path : str or os.PathLike, optional
        The file concerned; it is prefixed to the message.
    """

    def __init__(self, message: str, path: "str | os.PathLike | None" = None):
        self.path = os.fspath(path) if path is not None else None
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path else message)

    def __reduce__(self):  # keep picklable across process pools
        return (type(self), (self.reason, self.path))


class ReadError(ECGError):
    """A file could not be read: unknown format, truncated, corrupt or hostile."""


class WriteError(ECGError):
    """A record could not be written."""


class DigitizeError(ECGError):
    """An image or PDF could not be turned into a signal."""


class PreprocessError(ECGError):
    """A record cannot be turned into model input (too short, wrong leads, ...)."""


class ConfigError(ECGError):
    """A configuration (preset, training config) is invalid."""


class CheckpointError(ECGError):
    """A checkpoint does not match the architecture or is damaged."""


class EvaluationError(ECGError):
    """Evaluation inputs are unusable (shape, non-binary labels, NaN, one class)."""
