"""Learning-rate schedules: per-step warm-up + cosine, per-epoch cosine/step, plateau halving.

:func:`build_scheduler` returns ``(scheduler, interval)`` where interval is
``"step"`` (called after every optimiser step), ``"epoch"`` (after every
epoch) or ``"plateau"`` (after every epoch with the monitored value).
"""

from __future__ import annotations

import math

import torch

from ecgcore.errors import ConfigError

__all__ = ["warmup_cosine_factor", "build_scheduler"]


def warmup_cosine_factor(step: int, total: int, warmup: int, floor: float = 0.0) -> float:
    """Multiplier of the base LR at optimiser step ``step`` (0-based).

    Linear warm-up from 0 over ``warmup`` steps, then a cosine from 1 down to
    ``floor``: ``floor + (1 - floor) * 0.5 * (1 + cos(pi * (step - W) / (total - W)))``.
    With ``floor = 0.01`` and ``warmup = int(0.1 * total)`` this is the CCTA
    study's LambdaLR (facts/ecgfounder_ccta.md §2.5).
    """
    if warmup > 0 and step < warmup:
        return step / warmup
    span = max(total - warmup, 1)
    t = min(max(step - warmup, 0), span) / span
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(optimizer, spec: dict, *, steps_per_epoch: int, epochs: int, mode: str = "min"):
    kind = spec["type"]
    if kind == "none":
        return None, None
    if kind == "plateau":
        m = spec["mode"] if spec["mode"] != "auto" else mode
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=m, factor=spec["factor"], patience=spec["patience"],
            min_lr=spec["min_lr"]), "plateau"
    if kind == "warmup_cosine":
        total = max(steps_per_epoch * epochs, 1)
        warm = int(spec["warmup_frac"] * total)
        floor = float(spec["floor"])
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine_factor(s, total, warm, floor)), "step"
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1),
                                                          eta_min=spec["min_lr"]), "epoch"
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=spec["step_size"],
                                               gamma=spec["gamma"]), "epoch"
    raise ConfigError(f"scheduler.type: unknown schedule {kind!r}")
