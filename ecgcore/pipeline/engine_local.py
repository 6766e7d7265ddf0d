"""Local engine: chunks on a process pool (forkserver/spawn start, never plain fork)."""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from .worker import process_chunk, process_chunk_summary

__all__ = ["run_local"]


def _init_worker():
    # Each worker is one core's worth of work: keep BLAS/OpenMP pools from
    # oversubscribing the machine (the kernels parallelise across processes).
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _context(preload=()):
    methods = mp.get_all_start_methods()
    # forkserver: workers fork from a clean server process, so threads of the
    # parent (tqdm, dask) are never duplicated; spawn where it is unavailable.
    ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        # applies when this process starts its forkserver (the first pool it makes)
        ctx.set_forkserver_preload(["ecgcore.pipeline._preload", *preload])
    return ctx


def run_local(tasks, workers: int, on_done, fn=None, preload=()) -> None:
    """Run ``fn`` over ``tasks`` with ``workers`` processes.

    The default ``fn`` is :func:`~.worker.process_chunk_summary`: the chunk's
    counts and rendered manifest rows travel back, the sidecar stays on disk.

    ``workers=1`` runs in this process (no start-up cost, easy debugging).
    At most ``2 * workers`` chunks are in flight, so memory stays bounded by
    workers x chunk size whatever the dataset size. ``on_done(result)`` is
    called in this process as chunks finish. ``fn`` must be a picklable
    module-level function (other chunked jobs, e.g. image datasets, reuse this).
    ``preload`` names more modules for the forkserver to import before it forks
    workers (e.g. ``ecgcore.delineation._preload``, which loads the numba kernels).
    """
    fn = fn or process_chunk_summary
    tasks = list(tasks)
    if workers <= 1 or len(tasks) <= 1:
        if fn is process_chunk_summary or fn is process_chunk:
            # the same warm-up the forkserver gives pool workers (the readers,
            # presets and kernel modules): without it the first chunk pays it,
            # and its CPU time (the sidecar's cpu_s) no longer measures the records
            from . import _preload  # noqa: F401
        for t in tasks:
            on_done(fn(t))
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=_context(preload),
                             initializer=_init_worker) as pool:
        pending = set()
        it = iter(tasks)
        for t in it:
            pending.add(pool.submit(fn, t))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                on_done(fut.result())
                nxt = next(it, None)
                if nxt is not None:
                    pending.add(pool.submit(fn, nxt))
