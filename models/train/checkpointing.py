"""Training checkpoints: ``best.pt`` and ``last.pt`` with everything a resume or a prediction needs.

A checkpoint is a dict saved with ``torch.save`` that loads with
``torch.load(weights_only=True)``: only tensors, numbers, strings, lists and
dicts (numpy RNG state is stored as lists). It carries the validated config,
the model's rebuild spec, the preprocessing preset, target standardisation,
clinical scaling, label/task names and validation thresholds, plus, for
``last.pt``, the optimiser, scheduler, loss-weighting and every RNG state
(python, numpy, torch, CUDA, the DataLoader generator) and the epoch counters,
so ``--resume`` continues bit-for-bit where the hardware allows.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from ecgcore._atomic import atomic_path
from ecgcore.errors import CheckpointError

__all__ = ["capture_rng", "restore_rng", "save_checkpoint", "load_checkpoint", "FORMAT"]

FORMAT = "ecgcore-train/1"


def capture_rng(generator: torch.Generator | None = None) -> dict:
    st = np.random.get_state()
    out = {
        "python": _to_lists(random.getstate()),
        "numpy": {"kind": st[0], "key": st[1].tolist(), "pos": int(st[2]), "has_gauss": int(st[3]),
                  "cached": float(st[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        out["loader"] = generator.get_state()
    return out


def _to_lists(obj):
    if isinstance(obj, tuple):
        return [_to_lists(v) for v in obj]
    return obj


def _to_tuples(obj):
    if isinstance(obj, list):
        return tuple(_to_tuples(v) for v in obj)
    return obj


def restore_rng(state: dict, generator: torch.Generator | None = None) -> None:
    random.setstate(_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["key"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "loader" in state:
        generator.set_state(state["loader"])


def save_checkpoint(path: str, payload: dict) -> None:
    """Write atomically (temporary file then rename): a kill never leaves a half-written checkpoint."""
    payload = dict(payload, format=FORMAT)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a training checkpoint with ``weights_only=True``; CheckpointError when it is not one."""
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in ("best.pt", os.path.join("checkpoints", "best.pt")):
            if os.path.isfile(os.path.join(path, name)):
                path = os.path.join(path, name)
                break
    if not os.path.isfile(path):
        raise CheckpointError("no such checkpoint file", path)
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError ... for bad files
        raise CheckpointError(f"not a readable training checkpoint ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        run_dir = os.path.dirname(os.path.abspath(path))
        hint = (f"; this looks like the model-only export of the run {run_dir}: pass the run folder "
                f"or {os.path.join(run_dir, 'checkpoints', 'best.pt')}"
                if os.path.isfile(os.path.join(run_dir, "checkpoints", "best.pt")) else "")
        raise CheckpointError(f"not an ecgcore training checkpoint (expected format {FORMAT!r}; "
                              f"model-only files load with ecgcore.models.load){hint}", path)
    return ck
