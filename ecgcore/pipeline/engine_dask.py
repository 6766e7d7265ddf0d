"""Dask engine: one dask.distributed task per chunk; each task reads, processes and
writes its own shard, so the output folder must be visible to every worker."""

from __future__ import annotations

from .worker import process_chunk_summary

__all__ = ["run_dask"]


def run_dask(tasks, scheduler: str | None, workers: int, on_done, fn=None) -> None:
    """Run ``fn`` over chunks on the cluster at ``scheduler`` (e.g. ``tcp://10.0.0.5:8786``).

    The default ``fn`` is :func:`~.worker.process_chunk_summary`. Another
    ``fn`` (e.g. ``ecgcore.cli._tables.process_table_chunk``) must be a
    module-level function the workers can import; ``on_done(result)`` is
    called in this process as chunks finish.

    Without a scheduler address a LocalCluster on 127.0.0.1 with ``workers``
    single-threaded processes is started for the run. At most ``4 x`` the
    cluster's thread count chunks are submitted at a time, which keeps the
    scheduler's memory flat for millions of records.
    """
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:  # pragma: no cover - dask[distributed] is optional
        from ..errors import ConfigError
        raise ConfigError("--engine dask needs dask.distributed (pip install 'dask[distributed]')")
    fn = fn or process_chunk_summary
    cluster = None
    if scheduler:
        client = Client(scheduler, timeout="30s")
    else:
        cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1,
                               host="127.0.0.1", dashboard_address=":0", processes=True,
                               protocol="tcp://")
        client = Client(cluster)
    try:
        nthreads = max(1, sum(client.nthreads().values()))
        tasks = list(tasks)
        window = 4 * nthreads
        first = tasks[:window]
        rest = iter(tasks[window:])
        ac = as_completed(client.map(fn, first, pure=False))
        for fut in ac:
            on_done(fut.result())
            fut.release()
            nxt = next(rest, None)
            if nxt is not None:
                ac.add(client.submit(fn, nxt, pure=False))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
