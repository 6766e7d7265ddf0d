"""ecgcore.models: the PyTorch layer (backbones, heads, checkpoint loading).

The only part of ecgcore that needs torch; ``import ecgcore`` never imports it.

Quick start::

    from ecgcore import models
    m = models.create("ecgfm", pretrained="mimic_iv_ecg_physionet_pretrained.pt")
    emb = m(x)                       # x: (B, 12, 2500) float32, preset 'ecgfm'
    clf = models.create("net1d", pretrained="12_lead_ECGFounder.pth")
    logits = clf(x10s)               # (B, 12, 5000), preset 'ecgfounder'
    models.save(clf, "ecgfounder.safetensors")

Modules: :mod:`.registry` (create, list_models, ECGModel), :mod:`.ecgfm`,
:mod:`.net1d`, :mod:`.lvh`, :mod:`.image` (backbones), :mod:`.heads`,
:mod:`.multitask` (uncertainty weighting, PCGrad), :mod:`.explain`
(saliency, Grad-CAM, per-wave aggregation), :mod:`.checkpoint` (loading,
saving).
"""

from __future__ import annotations

from ecgcore.errors import CheckpointError

from .registry import ECGModel, create, list_models, register_model
from .checkpoint import load, read_checkpoint, save
from . import heads, multitask, explain  # noqa: F401

__all__ = ["create", "list_models", "register_model", "ECGModel", "load", "save", "read_checkpoint",
           "CheckpointError", "heads", "multitask", "explain"]
