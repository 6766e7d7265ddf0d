"""ecgcore.models.train: the training engine behind ``ecgcore train / evaluate / predict``.

Modules: :mod:`.config` (YAML schema and validation), :mod:`.data` (dataset +
labels join, patient-grouped splits, scaling, augmentation), :mod:`.engine`
(the training loop), :mod:`.schedules`, :mod:`.checkpointing`, :mod:`.ddp`,
:mod:`.predict` (inference with a training checkpoint).

Quick start::

    from ecgcore.models.train import load_config, train
    cfg = load_config("configs/smoke.yaml", overrides=["train.epochs=3"])
    metrics = train(cfg, "runs/smoke")
"""

from __future__ import annotations

from .config import apply_overrides, load_config, validate
from .engine import Trainer, train
from .predict import load_for_inference, predict_files, predict_records

__all__ = ["load_config", "validate", "apply_overrides", "train", "Trainer", "load_for_inference",
           "predict_files", "predict_records"]
