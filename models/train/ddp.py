"""Distributed data parallel helpers (``torchrun --nproc_per_node=N -m ecgcore train ...``).

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`setup` initialises the process group with NCCL on
CUDA and gloo on CPU. Only rank 0 logs and writes checkpoints; validation
predictions are sharded and gathered so every rank sees the same metrics and
takes the same early-stopping decision.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["setup", "teardown", "is_distributed", "rank", "world_size", "is_main", "barrier",
           "gather_objects", "broadcast_object", "all_reduce_grads"]


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    return rank() == 0


def setup(device: str):
    """Initialise the process group when launched by torchrun; returns the device to use."""
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    if ws <= 1 or (dist.is_available() and dist.is_initialized()):
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return f"cuda:{local}"
    dist.init_process_group("gloo")
    return device


def teardown():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier():
    if is_distributed():
        dist.barrier()


def gather_objects(obj) -> list:
    """All ranks' ``obj`` in rank order (``[obj]`` when not distributed)."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_grads(params):
    """Average ``.grad`` over ranks (used where gradients are written by hand, e.g. PCGrad)."""
    if not is_distributed():
        return
    ws = world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= ws
